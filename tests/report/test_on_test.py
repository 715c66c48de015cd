"""The held-out test split in the report (issue 27, item 1): the chosen model scored once, and
the primary endpoint, within-gender balanced accuracy minus the gender floor, read there."""

import numpy as np
import pandas as pd
import pytest

from raysys.config import Config, apply_overrides
from raysys.report.build import PRIMARY, on_test
from raysys.report.summary import criteria_rows, held_out_lines
from raysys.train.rundir import npy_bytes
from tests.report.helpers import entry

# test is person-disjoint on a group split; Config()'s default split is by image
GROUP = apply_overrides(Config(), {"data": {"split_by": "group", "group_by": "parent"}})
FEMALE = ["mary", "patricia", "jennifer", "linda", "elizabeth", "barbara"]
MALE = ["james", "john", "robert", "michael", "william", "david"]


def _run(tmp_path, logits: np.ndarray, labels: np.ndarray, person: np.ndarray):
    run = tmp_path / "run"
    run.mkdir()
    arrays = {"test_logits": logits.astype(np.float16), "test_true_labels": labels,
              "test_predictions": logits.argmax(axis=1), "test_rows": np.arange(len(labels))}
    for name, a in arrays.items():
        (run / f"{name}.npy").write_bytes(npy_bytes(a))
    names = FEMALE + MALE
    table = pd.DataFrame({"name": names, "train_count": np.arange(len(names), 0, -1) * 10})
    group_of = {int(r): f"p{int(p)}" for r, p in enumerate(person)}
    return str(run), table, group_of


def _test_set(rng, people_per_name=12, images=5):
    person = np.repeat(np.arange(12 * people_per_name), images)
    labels = person // people_per_name
    gender = (np.arange(12) >= 6).astype(int)  # names 0-5 female, 6-11 male
    logits = rng.standard_normal((len(labels), 12)).astype(np.float32) + 4 * (
        gender[None, :] == gender[labels][:, None])
    return person, labels, logits


def test_the_primary_endpoint_finds_name_signal_beyond_gender(tmp_path):
    rng = np.random.default_rng(0)
    person, labels, logits = _test_set(rng)
    hit = rng.random(len(labels)) < 0.4  # the true name on top for 40% of the images
    logits[hit, labels[hit]] += 10
    got = on_test(GROUP, *_run(tmp_path, logits, labels, person))
    pr = got["primary"]
    assert pr["endpoint"] == PRIMARY and pr["images"] == len(labels)
    assert pr["floor"] == pytest.approx(2 / 12)  # one name per gender right, of 12
    assert pr["within"] > 0.4 and pr["verdict"] == "above" and pr["beyond"]["shown"]
    assert got["signal"]["shown"] and got["people"] == 144 and got["names"] == 12
    assert 0 < pr["power"]["mde"] < pr["difference"].estimate
    lines = "\n".join(held_out_lines(got))
    assert "**Primary endpoint: within-gender balanced accuracy - gender floor, on test**" in lines
    assert "**above** the floor" in lines and "name signal beyond gender **shown**" in lines
    rows = criteria_rows(12, entry(k=12), False, inf={"test": got})
    row = next(r for r in rows if r[0].startswith("name signal beyond gender"))
    assert row[3] is True


def test_a_model_that_reads_only_gender_scores_the_floor_on_test(tmp_path):
    """Logits that carry gender and nothing else: within a gender every name scores the same
    (the argmax is the first), so within-gender balanced accuracy is the floor exactly."""
    rng = np.random.default_rng(1)
    person, labels, _ = _test_set(rng)
    gender = (np.arange(12) >= 6).astype(int)
    logits = 4.0 * (gender[None, :] == gender[labels][:, None]) + np.zeros((len(labels), 12))
    got = on_test(GROUP, *_run(tmp_path, logits, labels, person))
    pr = got["primary"]
    assert pr["difference"].estimate == pytest.approx(0.0)
    assert pr["verdict"] == "level with" and not pr["beyond"]["shown"]
    rows = criteria_rows(12, entry(k=12), False, inf={"test": got})
    assert next(r for r in rows if r[0].startswith("name signal beyond gender"))[3] is False
    assert "not shown" in "\n".join(held_out_lines(got))


def test_without_a_test_split_the_report_says_so(tmp_path):
    (tmp_path / "run").mkdir()
    assert on_test(Config(), str(tmp_path / "run"), pd.DataFrame(), {}) is None
    assert "No test split (data.test_fraction = 0)" in "\n".join(held_out_lines(None))
    rows = criteria_rows(12, entry(k=12), False, inf={"test": None})
    assert not any(r[0].startswith("name signal beyond gender") for r in rows)


def test_on_a_per_image_split_the_primary_endpoint_gives_no_verdict(tmp_path):
    """Split by image, test holds train's people: recognising them lifts the endpoint (the LFW
    per-image study's +0.29), so the summary warns and the criterion is not met or failed."""
    from raysys.sweep.report import test_text

    rng = np.random.default_rng(0)
    person, labels, logits = _test_set(rng)
    hit = rng.random(len(labels)) < 0.4
    logits[hit, labels[hit]] += 10
    got = on_test(Config(), *_run(tmp_path, logits, labels, person))
    assert got["person_disjoint"] is False and got["primary"]["verdict"] == "above"
    assert "**Warning: test shares people with train**" in "\n".join(held_out_lines(got))
    rows = criteria_rows(12, entry(k=12), False, inf={"test": got})
    row = next(r for r in rows if r[0].startswith("name signal beyond gender"))
    assert row[3] is None and "person recognition counts" in row[1]
    d = got["primary"]["difference"]
    w = {"test_primary": d.estimate, "test_primary_lo": d.lo, "test_primary_hi": d.hi,
         "test_primary_mc": d.mc_se, "test_primary_p": 0.0001, "test_primary_shown": True}
    assert "**above**" in test_text(w)
    assert "no verdict" in test_text(w | {"test_person_disjoint": False})
