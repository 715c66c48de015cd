"""Within-stratum accuracy selection-free (issue 27, item 2): the training loop saves every
epoch's argmax within the true name's stratum, and the report cross-fits it like the model's
own predictions, so "beyond the gender floor" on val reads no selected epoch."""

import numpy as np

from raysys.config import Config
from raysys.report.build import within_free
from raysys.report.controls import stratum_floor
from raysys.report.demographics import codes, name_demographics, strata
from raysys.report.intervals import ClusterBootstrap, halves

NAMES = ["mary", "patricia", "jennifer", "linda", "elizabeth", "barbara",
         "james", "john", "robert", "michael", "william", "david"]
EPOCHS = 12


def _val(rng, hit_rate: float):
    """12 names x 12 people x 4 images. Every epoch a person's within-gender guess is their own
    persistent name guess from their gender, or (hit_rate) the truth for an image."""
    person = np.repeat(np.arange(144), 4)
    labels = person // 12
    st = strata(name_demographics(NAMES), "gender")
    same = [np.flatnonzero(st == st[n]) for n in range(12)]
    guess = np.array([rng.choice(same[p // 12]) for p in range(144)])
    within = np.empty((EPOCHS, len(labels)), np.int64)
    for e in range(EPOCHS):
        noise = rng.random(len(labels)) < 0.3  # some guesses move between epochs
        random = np.array([rng.choice(same[y]) for y in labels])
        within[e] = np.where(noise, random, guess[person])
        hit = rng.random(len(labels)) < hit_rate
        within[e, hit] = labels[hit]
    return person, labels, st, within


def _free(person, labels, st, within, saved_codes=None):
    boot = ClusterBootstrap(person, labels, n_boot=1000, seed=0)
    floor = stratum_floor(labels, st, np.arange(12, 0, -1) * 10)
    epochs = (within, np.ones(EPOCHS, bool), "all",
              {"gender": (codes(st) if saved_codes is None else saved_codes, within)})
    on = np.ones(len(labels), bool)
    return within_free(Config(), epochs, "gender", st, on, labels, halves(person, labels, 0),
                       boot, floor)


def test_a_model_that_reads_only_gender_is_not_above_the_floor_selection_free():
    """Its within-gender guesses carry no name: the best of 12 epochs on val scores above the
    floor by selection alone; cross-fitted, the paired interval does not say "above"."""
    rng = np.random.default_rng(1)
    person, labels, st, within = _val(rng, hit_rate=0.0)
    best_epoch = max(np.mean([(w == labels)[labels == n].mean() for n in range(12)])
                     for w in within)
    got = _free(person, labels, st, within)
    d = got["vs_floor"]["balanced_acc"]
    assert d.verdict() != "above", d
    assert got["balanced_acc"].estimate < best_epoch  # the selected epoch's optimism is gone
    assert d.lo < 0 < d.hi


def test_name_signal_within_gender_is_above_the_floor_selection_free():
    rng = np.random.default_rng(2)
    person, labels, st, within = _val(rng, hit_rate=0.3)
    got = _free(person, labels, st, within)
    assert got["vs_floor"]["balanced_acc"].verdict() == "above"
    assert got["balanced_acc"].estimate > 0.35  # 0.3 hits + a sixth of the rest


def test_within_free_says_why_it_is_missing():
    rng = np.random.default_rng(3)
    person, labels, st, within = _val(rng, hit_rate=0.0)
    other = codes(st)[::-1].copy()  # strata the report would not use
    assert "differ" in _free(person, labels, st, within, saved_codes=other)["missing"]
    epochs = (within, np.ones(EPOCHS, bool), "all", {})
    got = within_free(Config(), epochs, "gender", st, np.ones(len(labels), bool), labels,
                      halves(person, labels, 0), ClusterBootstrap(person, labels, n_boot=100),
                      np.zeros(len(labels), np.int64))
    assert "predates" in got["missing"]
