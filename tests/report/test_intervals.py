"""Person-level intervals and the selection-free estimate: the bootstrap's coverage on clustered
data, paired differences, and a run of pure noise that only selection lifts above chance."""

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from raysys.report.intervals import (
    ClusterBootstrap,
    accuracy,
    clusters_of,
    cross_fitted,
    halves,
)


def _clustered(rng, people=80, k=5, p_person=0.4):
    """Images cluster by person: each person has 1-40 images and their own accuracy, drawn
    around 0.4 (so images of one person are far from independent)."""
    sizes = rng.integers(1, 41, people)
    person = np.repeat(np.arange(people), sizes)
    labels = rng.integers(0, k, people)[person]
    skill = rng.beta(2, 3, people)[person]
    preds = np.where(rng.random(len(person)) < skill, labels, (labels + 1) % k)
    return person, labels, preds


def test_cluster_bootstrap_covers_close_to_95_percent():
    """200 simulated val sets of clustered images: the person-level intervals of top-1 and of
    balanced accuracy hold the truth (estimated by one very large draw; person skill does not
    depend on the name, so both share it) about 95% of the time; an image-level interval on the
    same data covers far less."""
    rng = np.random.default_rng(0)
    big = _clustered(rng, people=20000)
    truth = float((big[2] == big[1]).mean())
    hits = {"people": 0, "people, balanced": 0, "images": 0}
    for i in range(200):
        person, labels, preds = _clustered(rng)
        boot = ClusterBootstrap(person, labels, n_boot=400, seed=i)
        for key, iv in (("people", boot.interval(preds, False)),
                        ("people, balanced", boot.interval(preds, True)),
                        ("images", ClusterBootstrap(np.arange(len(labels)), labels, n_boot=400,
                                                    seed=i).interval(preds, False))):
            hits[key] += iv.lo <= truth <= iv.hi
    assert 0.90 <= hits["people"] / 200 <= 0.99, hits
    assert 0.90 <= hits["people, balanced"] / 200 <= 0.99, hits
    assert hits["images"] / 200 < 0.8, hits


def test_balanced_draws_match_sklearn_and_paired_differences_carry_both_errors():
    rng = np.random.default_rng(1)
    person, labels, preds = _clustered(rng)
    boot = ClusterBootstrap(person, labels, n_boot=300, seed=0)
    assert accuracy(labels, preds, True) == pytest.approx(balanced_accuracy_score(labels, preds))
    iv = boot.interval(preds, True)
    assert iv.lo < iv.estimate < iv.hi
    assert boot.paired(preds, preds, True).lo == boot.paired(preds, preds, True).hi == 0.0
    worse = np.where(rng.random(len(preds)) < 0.5, preds, (labels + 2) % 5)
    d = boot.paired(preds, worse, False)
    assert d.estimate > 0 and d.verdict() == "above"
    assert boot.paired(worse, preds, False).verdict() == "below"


def test_people_without_an_id_are_their_own_cluster_and_halves_split_people():
    clusters = clusters_of(np.array([1, 2, 3, 4]), {1: "ann", 2: "ann", 3: float("nan")})
    assert list(clusters) == ["person:ann", "person:ann", "row:3", "row:4"]
    person = np.repeat(np.arange(50), 3)
    side = halves(person, seed=0)
    assert abs(side.mean() - 0.5) < 0.05
    assert all(len(set(side[person == p])) == 1 for p in range(50))  # a person on one side


def test_pure_noise_is_above_chance_selected_on_val_and_at_chance_selection_free():
    """50 epochs of random predictions: picking the best epoch on val and reporting it on val
    lands above chance; the cross-fitted estimate stays at chance, within its interval (which
    redoes the epoch choice in every resample)."""
    rng = np.random.default_rng(0)
    k, people, epochs = 10, 400, 50
    person = np.repeat(np.arange(people), 3)
    labels = rng.integers(0, k, people)[person]
    preds = rng.integers(0, k, (epochs, len(person)))
    per_epoch = [accuracy(labels, p, True) for p in preds]
    best = int(np.argmax(per_epoch))
    boot = ClusterBootstrap(person, labels, n_boot=300, seed=0)
    selected = boot.interval(preds[best], True)  # the best epoch, reported on the same val
    side = halves(person, seed=0)
    cf = cross_fitted(preds, labels, np.ones(epochs, bool), side, balanced=True)
    point = {m: accuracy(labels, cf["preds"], m == "balanced_acc")
             for m in ("top1", "balanced_acc")}
    free = boot.cross_fitted(preds, np.ones(epochs, bool), side, True, point)
    assert selected.lo > 1 / k  # selection alone: "significantly" above chance
    for m in ("top1", "balanced_acc"):
        assert free[m].lo <= 1 / k <= free[m].hi, (m, free[m])
    assert free["balanced_acc"].estimate < selected.estimate
    assert cf["epochs"][0] != cf["epochs"][1]  # each half picked its own luckiest epoch


def test_cross_fitting_skips_unusable_epochs_takes_the_later_tie_and_needs_two_halves():
    labels = np.zeros(6, int)
    preds = np.array([[0] * 6, [0] * 6, [9] * 6])
    side = np.array([0, 1, 0, 1, 0, 1])
    cf = cross_fitted(preds, labels, np.array([True, True, False]), side, False)
    assert cf["epochs"] == (1, 1) and (cf["preds"] == 0).all()
    assert cross_fitted(preds, labels, np.zeros(3, bool), side, False) is None
    assert cross_fitted(preds, labels, np.ones(3, bool), np.zeros(6, int), False) is None


def test_a_learning_run_keeps_its_signal_selection_free():
    """Accuracy that rises over epochs (a run that learns): the cross-fitted estimate picks
    late epochs on both halves and its interval sits well above chance."""
    rng = np.random.default_rng(2)
    person = np.repeat(np.arange(300), 2)
    labels = rng.integers(0, 5, 300)[person]
    skill = np.linspace(0.1, 0.6, 20)
    preds = np.stack([np.where(rng.random(len(person)) < s, labels, (labels + 1) % 5)
                      for s in skill])
    side = halves(person, seed=1)
    cf = cross_fitted(preds, labels, np.ones(20, bool), side, balanced=False)
    point = {m: accuracy(labels, cf["preds"], m == "balanced_acc")
             for m in ("top1", "balanced_acc")}
    free = ClusterBootstrap(person, labels, n_boot=200, seed=0).cross_fitted(
        preds, np.ones(20, bool), side, False, point)
    assert min(cf["epochs"]) >= 15 and free["top1"].lo > 0.5
