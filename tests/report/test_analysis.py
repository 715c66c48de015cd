"""The report's analyses on hand-computed inputs: ECE, frequency bands, leakage, the balanced
subset and the tau choice."""

import numpy as np
import pytest

from raysys.report import analysis


def test_ece_on_a_hand_computed_example():
    conf = np.array([0.95, 0.95, 0.15, 0.45, 0.55])
    correct = np.array([1, 0, 0, 1, 1])
    value, table = analysis.ece(conf, correct, bins=10)
    # bins: (0.9,1]: acc .5 conf .95 (2 of 5); (0.1,0.2]: acc 0 conf .15; (0.4,0.5]: acc 1 conf
    # .45; (0.5,0.6]: acc 1 conf .55.
    expected = 2 / 5 * 0.45 + 1 / 5 * 0.15 + 1 / 5 * 0.55 + 1 / 5 * 0.45
    assert value == pytest.approx(expected)
    assert sum(b["n"] for b in table) == 5 and len(table) == 10
    assert analysis.ece(np.array([1.0, 1.0]), np.array([1, 1]))[0] == 0.0


def test_bands_leakage_subset_and_tau_choice():
    counts = np.array([2000.0, 300, 50])
    assert analysis.frequency_bands(counts) == pytest.approx((1000 * 2000 / 4768,
                                                              200 * 2000 / 4768))
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 0, 1, 0, 0, 0])
    bands = {r["band"]: r for r in analysis.band_accuracy(labels, preds, counts)}
    assert bands["Many"]["accuracy"] == 1.0 and bands["Medium"]["accuracy"] == 0.5
    assert bands["Few"]["accuracy"] == 0.0 and bands["Few"]["names"] == 1
    leak = analysis.identity_leakage(np.array(["p1", "p1", "p2", "p3", "p4", "p4"]),
                                     {"p1", "p3"}, labels, preds)
    assert leak["seen"]["images"] == 3 and leak["seen"]["top1"] == 2 / 3
    assert leak["unseen"]["images"] == 3
    sub = analysis.balanced_subset(np.repeat([0, 1, 2], [10, 3, 5]),
                                   np.repeat([0, 1, 2], [10, 3, 5]))
    assert sub["per_name"] == 3 and sub["images"] == 9 and sub["top1"] == 1.0
    entry = {"val/top1": 0.5, "val/balanced_acc": 0.3, "val/rel_pred_cv": 0.9,
             "posthoc_tau0.5/top1": 0.45, "posthoc_tau0.5/balanced_acc": 0.35,
             "posthoc_tau0.5/rel_pred_cv": 0.25, "posthoc_tau1.0/top1": 0.40,
             "posthoc_tau1.0/balanced_acc": 0.38, "posthoc_tau1.0/rel_pred_cv": 0.1}
    choice = analysis.tau_tradeoff(entry)
    assert [r["tau"] for r in choice.rows] == [0.0, 0.5, 1.0] and choice.best["tau"] == 0.5


# --- exact behaviour, pinned so that a changed constant or boundary fails (benchmarks/MUTATION.md)

@pytest.mark.filterwarnings("error")  # an empty bin is nan, not a "mean of empty slice"
def test_ece_bins_are_right_closed_with_zero_in_the_first():
    edges = np.linspace(0, 1, 16)
    conf = np.array([0.0, edges[1], edges[1] + 1e-9, edges[14], 1.0, 0.5])
    correct = np.array([0, 1, 1, 0, 1, 1])
    value, table = analysis.ece(conf, correct)  # 15 bins by default
    assert len(table) == 15 and [b["n"] for b in table][:2] == [2, 1]
    assert table[14]["n"] == 1 and table[13]["n"] == 1 and table[7]["n"] == 1
    assert [(b["lo"], b["hi"]) for b in table] == [(edges[i], edges[i + 1]) for i in range(15)]
    first = table[0]
    assert first["accuracy"] == 0.5 and first["confidence"] == pytest.approx(edges[1] / 2)
    assert set(first) == {"lo", "hi", "n", "accuracy", "confidence"}
    empty = table[3]
    assert empty["n"] == 0 and np.isnan(empty["accuracy"]) and np.isnan(empty["confidence"])
    want = sum(b["n"] / 6 * abs(b["accuracy"] - b["confidence"]) for b in table if b["n"])
    assert value == pytest.approx(want)
    # integer inputs average as floats, not truncated
    assert analysis.ece([1], [True], bins=2)[1][1]["confidence"] == 1.0
    assert analysis.ece(np.array([0, 1]), np.array([0, 1]), bins=2)[0] == 0.0


@pytest.mark.filterwarnings("error")
def test_bands_boundaries_keys_and_the_per_name_mean():
    counts = np.array([4768.0, 1000, 200, 199])  # the production scale: bands 1000 and 200
    assert analysis.frequency_bands(counts) == (1000, 200)
    assert analysis.frequency_bands(np.array([10_000.0])) == (1000, 200)  # never above
    labels = np.array([0, 0, 0, 1, 2, 2])
    preds = np.array([0, 0, 0, 0, 2, 0])
    rows = analysis.band_accuracy(labels, preds, counts)
    assert [r["band"] for r in rows] == ["Many", "Medium", "Few"]
    assert rows[0] == {"band": "Many", "train images per name": "> 1000", "names": 1,
                       "names in val": 1, "val images": 3, "accuracy": 1.0}
    # exactly 1000 and exactly 200 are Medium; names 1 (0/1) and 2 (1/2): mean 0.25, while
    # pooling the images would give 1/3
    assert rows[1] == {"band": "Medium", "train images per name": "200-1000", "names": 2,
                       "names in val": 2, "val images": 3, "accuracy": 0.25}
    few = rows[2]
    assert few["names"] == 1 and few["names in val"] == 0 and few["val images"] == 0
    assert np.isnan(few["accuracy"])


@pytest.mark.filterwarnings("error")
def test_balanced_subset_draws_per_name_without_replacement_with_its_seed():
    labels = np.repeat([0, 1], [60, 55])
    preds = np.random.default_rng(5).integers(0, 2, 115)
    sub = analysis.balanced_subset(labels, preds)
    assert sub["per_name"] == 50 and sub["images"] == 100  # capped at 50 a name
    assert sub == analysis.balanced_subset(labels, preds, seed=0)  # the default seed is 0
    assert sub != analysis.balanced_subset(labels, preds, seed=1)
    assert set(sub) == {"per_name", "images", "top1", "balanced_acc"}
    # Without replacement: with exactly `per` images of a name, every one is drawn once.
    exact = analysis.balanced_subset(np.repeat([0, 1], 3), np.array([0, 0, 0, 1, 1, 0]))
    assert exact["top1"] == pytest.approx(5 / 6)
    assert exact["balanced_acc"] == pytest.approx((1 + 2 / 3) / 2)
    # drawn from each name's own images: a name always right and one always wrong
    third = analysis.balanced_subset(np.repeat([0, 1, 2], [10, 4, 6]), np.zeros(20, int))
    assert third["top1"] == pytest.approx(1 / 3) and third["balanced_acc"] == pytest.approx(1 / 3)
    none = analysis.balanced_subset(np.zeros(0, int), np.zeros(0, int))
    assert none["per_name"] == 0 and none["images"] == 0
    assert np.isnan(none["top1"]) and np.isnan(none["balanced_acc"])


@pytest.mark.filterwarnings("error")
def test_identity_leakage_splits_seen_from_unseen_people():
    labels = np.array([0, 1, 1, 0])
    preds = np.array([0, 1, 0, 1])
    leak = analysis.identity_leakage(np.array(["a", "b", "c", "d"]), {"a", "b"}, labels, preds,
                                     majority=0)
    assert leak == {"ungrouped": 0,
                    "seen": {"images": 2, "top1": 1.0, "majority_top1": 0.5},
                    "unseen": {"images": 2, "top1": 0.0, "majority_top1": 0.5}}
    only_seen = analysis.identity_leakage(np.array(["a"]), {"a"}, labels[:1], preds[:1])
    assert only_seen["unseen"]["images"] == 0 and np.isnan(only_seen["unseen"]["top1"])
    none = analysis.identity_leakage(np.array([]), {"a"}, np.zeros(0, int), np.zeros(0, int))
    assert none["seen"]["images"] == none["unseen"]["images"] == 0


def test_tau_choice_needs_a_cv_strictly_under_the_target():
    entry = {"val/top1": 0.5, "val/balanced_acc": 0.3, "val/rel_pred_cv": 0.30,
             "posthoc_tau0.5/top1": 0.45, "posthoc_tau0.5/balanced_acc": 0.35,
             "posthoc_tau0.5/rel_pred_cv": 0.31}
    choice = analysis.tau_tradeoff(entry)
    assert choice.best is None  # 0.30 does not meet "< 0.30"
    assert choice.rows == [
        {"tau": 0.0, "top1": 0.5, "balanced_acc": 0.3, "rel_pred_cv": 0.30},
        {"tau": 0.5, "top1": 0.45, "balanced_acc": 0.35, "rel_pred_cv": 0.31}]
    assert analysis.tau_tradeoff(entry, target=0.305).best["tau"] == 0.0


def test_balanced_subset_is_the_seeded_draw_from_each_names_own_images():
    """The subset is reproducible: per name, in label order, `per` of that name's images drawn
    without replacement from one seeded generator (how the earlier CLIP/CNN numbers were
    measured). Checked against that recipe written out."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, 200)
    preds = np.where(rng.random(200) < 0.6, labels, rng.integers(0, 5, 200))
    draw = np.random.default_rng(7)
    per = int(np.bincount(labels).min())
    pick = np.concatenate([draw.choice(np.flatnonzero(labels == c), per, replace=False)
                           for c in range(5)])
    got = analysis.balanced_subset(labels, preds, seed=7)
    assert got["per_name"] == per and got["images"] == 5 * per
    assert got["top1"] == float((preds[pick] == labels[pick]).mean())


def test_leakage_is_read_within_names_a_constant_guess_and_equal_recall_show_nothing():
    """The review's cases: "always george" scores more on seen people's images than on unseen
    ones with no recognition at all, and (issue 27) a model with the same per-name recall for
    seen and unseen people read on the per-image split's name mix showed +0.054 "beyond".
    Within names both are level; a model that knows its train people is above."""
    from raysys.report.intervals import ClusterBootstrap
    from raysys.report.summary import leakage_verdict

    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])  # seen people are mostly george (0)
    groups = np.array(["g1", "g1", "g2", "m1", "g3", "m2", "m3", "m4"])
    const = np.zeros(8, int)
    leak = analysis.identity_leakage(groups, {"g1", "g2", "m1"}, labels, const, majority=0)
    gap = leak["seen"]["top1"] - leak["unseen"]["top1"]
    assert gap == pytest.approx(3 / 4 - 1 / 4)
    seen = np.isin(groups, ["g1", "g2", "m1"])
    boot = ClusterBootstrap(groups, labels, n_boot=500, seed=0)
    within = analysis.within_name_gap(boot, seen, const)
    assert within.estimate == 0.0 and within.verdict() == "level with"
    assert leakage_verdict(gap, gap, within)[1].endswith("no recognition of seen people shown.")

    rng = np.random.default_rng(0)
    people, k = 400, 8
    person = np.repeat(np.arange(people), 5)
    name = rng.integers(0, k, people)
    labels = name[person]
    seen = (rng.random(people) < np.where(name < 2, 0.9, 0.1))[person]  # mixes differ
    recall = np.linspace(0.1, 0.8, k)[labels]  # names differ, seen or not
    equal = np.where(rng.random(len(labels)) < recall, labels, (labels + 1) % k)
    boot = ClusterBootstrap(person, labels, n_boot=1000, seed=1)
    raw = (equal == labels)[seen].mean() - (equal == labels)[~seen].mean()
    level = analysis.within_name_gap(boot, seen, equal)
    assert raw < -0.2 and level.lo < 0 < level.hi  # the raw gap is all name mix
    knows = np.where(seen & (rng.random(len(labels)) < 0.5), labels, equal)
    assert analysis.within_name_gap(boot, seen, knows).verdict() == "above"
    assert analysis.within_name_gap(boot, np.zeros(len(labels), bool), knows) is None
    # the last name with no seen image: the seen/unseen columns still pair up
    last = seen & (labels != k - 1)
    assert analysis.within_name_gap(boot, last, knows).verdict() == "above"
def test_val_images_without_a_person_are_neither_seen_nor_unseen():
    """Some train images lack a group too: an ungrouped val image must not match them."""
    labels, preds = np.zeros(4, int), np.zeros(4, int)
    groups = np.array(["a", None, float("nan"), "b"], dtype=object)
    leak = analysis.identity_leakage(groups, {"a", None, float("nan")}, labels, preds)
    assert leak["ungrouped"] == 2
    assert leak["seen"]["images"] == 1 and leak["unseen"]["images"] == 1


def test_confusion_rows_sum_to_one_with_the_other_names():
    labels = np.array([0, 0, 0, 1, 1, 2])  # name 2 is outside the top 2
    preds = np.array([0, 1, 5, 1, 2, 0])
    cm = analysis.confusion_with_other(labels, preds, top=2)
    np.testing.assert_allclose(cm, [[1 / 3, 1 / 3, 1 / 3], [0, 1 / 2, 1 / 2]])
    np.testing.assert_allclose(cm.sum(axis=1), 1)


def test_people_per_name_counts_people_and_warns_when_they_are_too_few():
    from raysys.report.analysis import people_per_name

    names = ["al", "bo", "cy"]
    label = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    split = np.array(["train", "train", "val", "val", "train", "val", "val", "train"])
    person = np.array(["p1", "p2", "p3", "p4", "p5", "p6", "p6", "p7"], dtype=object)
    d = people_per_name(label, split, person, names)
    assert d["train_people"] == [2, 1, 1] and d["val_people"] == [2, 1, 0]
    assert d["train_images"] == [2, 1, 1] and d["val_images"] == [2, 2, 0]
    assert d["single_train_person"] == ["bo", "cy"] and d["single_train_person_images"] == 2
    assert d["names_in_val"] == 2 and d["few_val_people"] == 2
    assert len(d["warnings"]) == 1 and "2 of 2 names in val" in d["warnings"][0]
    # Identity = the name's folder: every name one person, whatever the split.
    folder = np.array([f"p{lab}" for lab in label], dtype=object)
    (w,) = people_per_name(label, split, folder, names)["warnings"]
    assert w.startswith("every name is a single person")
    # Enough people everywhere: no warning.
    many = np.arange(len(label)).astype(str).astype(object)
    label6, split6 = np.repeat([0, 1], 8), np.tile(["train"] * 4 + ["val"] * 4, 2)
    assert people_per_name(label6, split6, np.arange(16).astype(object), ["a", "b"])[
        "warnings"] == []
    assert people_per_name(label, split, many, names)["few_val_people"] == 2
    assert "test_people" not in d
    # a test split is counted beside the others
    with_test = np.where(person == "p7", "test", split)
    t = people_per_name(label, with_test, person, names)
    assert t["test_people"] == [0, 0, 1] and t["test_images"] == [0, 0, 1]
    assert t["train_people"] == [2, 1, 0]
