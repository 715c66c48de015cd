"""Demographic controls: how much of a model's score gender and generation alone would give, and
how much name signal is left beyond them.

A stratum is a set of names sharing a (name-implied) gender, or gender x generation
(demographics.strata). Per image, with its true name's stratum S:

- **stratum floor**: the best a classifier can score when it knows each face's stratum and
  nothing else. In top-1, always the most frequent train name of S; in balanced accuracy that
  scores recall 1 on one name per stratum, so strata/K over the names present in val (when
  each stratum's largest train name is among them).
- **within-stratum accuracy**: the model's argmax restricted to the names of S. A model that
  read only the stratum would score the stratum floor here and no more, so what it scores above
  is name signal beyond gender (and generation): the headline for the team's question.
- **primary endpoint** (on the held-out test split): within-gender balanced accuracy minus the
  gender floor. Any predictor that reads gender alone spreads each gender's recall over its
  names, so its balanced accuracy is the floor's; only name signal beyond gender lifts it.
- **error analysis**: among wrong predictions, how often the predicted name shares the truth's
  gender, and how far apart their median birth years are, each against the same figure with
  the predictions permuted among the errors (same predicted names, no link to the truth).
"""

from __future__ import annotations

import numpy as np

from raysys.report.intervals import N_BOOT, ClusterBootstrap, accuracy
from raysys.report.permutation import N_PERMUTATIONS, PersonPermutation


def stratum_floor(labels: np.ndarray, name_strata: np.ndarray, train_counts: np.ndarray
                  ) -> np.ndarray:
    """Per image, the most frequent train name of its true name's stratum among the names
    present in the scored images (`labels`): a guess of a name with no scored image can
    never hit, so a floor that made it would be too low to read a model against."""
    present = np.zeros(len(name_strata), bool)
    present[np.unique(labels)] = True
    top = {}
    for s in np.unique(name_strata[labels]):
        names = np.flatnonzero((name_strata == s) & present)
        top[s] = int(names[np.argmax(train_counts[names])])  # the first on a tie, as argmax
    return np.array([top[name_strata[y]] for y in labels], np.int64)


def within_stratum(logits: np.ndarray, labels: np.ndarray, name_strata: np.ndarray,
                   preds: np.ndarray | None = None, present: np.ndarray | None = None
                   ) -> np.ndarray:
    """Per image, the argmax of its logits over the names of its true name's stratum that are
    present in the scored images (`present`, a mask over names; by default the names of
    `labels`, as the floor's candidates). Where the model's own prediction (`preds`, from fp32
    logits) is already such a name it is the answer: the saved logits are fp16, whose rounding
    could flip a near-tie."""
    if present is None:
        present = np.zeros(len(name_strata), bool)
        present[np.unique(labels)] = True
    out = np.empty(len(labels), np.int64)
    for s in np.unique(name_strata[labels]):
        names = np.flatnonzero((name_strata == s) & present)
        rows = np.flatnonzero(name_strata[labels] == s)
        scores = logits[np.ix_(rows, names)].astype(np.float32)
        out[rows] = names[np.argmax(scores, axis=1)]
    if preds is not None:
        own = (name_strata[preds] == name_strata[labels]) & present[preds]
        out = np.where(own, preds, out)
    return out


def primary_endpoint(logits: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                     clusters: np.ndarray, gender: np.ndarray, train_counts: np.ndarray,
                     seed: int = 0, n_boot: int = N_BOOT,
                     permutations: int = N_PERMUTATIONS) -> dict:
    """Within-gender balanced accuracy minus the gender floor (`gender`: a stratum per name),
    on images scored once (test): the paired person-level interval (its "above" is the
    verdict), the resampling SD of the difference (for the power), and the permutation test
    with names dealt among each gender's people."""
    within = within_stratum(logits, labels, gender, preds=preds)
    floor = stratum_floor(labels, gender, train_counts)
    boot = ClusterBootstrap(clusters, labels, n_boot=n_boot, seed=seed)
    a, b = boot.draws([within == labels, floor == labels], True)
    difference = boot.difference(accuracy(labels, within, True), a, within == labels, floor,
                                 True, b)
    return {"within": accuracy(labels, within, True), "floor": accuracy(labels, floor, True),
            "difference": difference, "verdict": difference.verdict(),
            "sd": float(np.nanstd(a - b)),
            "beyond": PersonPermutation(within[None], labels, clusters, True).test(
                strata=gender, permutations=permutations, seed=seed)}


def within_chance(labels: np.ndarray, name_strata: np.ndarray) -> dict[str, float]:
    """A uniform guess among the true stratum's names: top-1 mean 1/|S(y)| over images,
    balanced the same over the names present."""
    size = {s: int((name_strata == s).sum()) for s in np.unique(name_strata)}
    inv = np.array([1.0 / size[name_strata[y]] for y in labels])
    present = np.unique(labels)
    return {"top1": float(inv.mean()) if len(inv) else float("nan"),
            "balanced_acc": float(np.mean([1.0 / size[name_strata[c]] for c in present]))
            if len(present) else float("nan")}


def error_analysis(labels: np.ndarray, preds: np.ndarray, clusters: np.ndarray,
                   gender: np.ndarray, birth_year: np.ndarray, seed: int = 0,
                   permutations: int = 1000) -> dict:
    """Among wrong predictions whose two names both have demographics: the share with the
    truth's gender and the mean |difference of median birth years|, each with the permutation
    baseline's mean and 95% range. The baseline deals the true names of the people behind
    these errors at random among those people (`clusters`: a person's errors keep their
    predicted names and move together, as errors that persist per person do) and scores only
    the pairs that stay errors (a permuted pair that hits the truth would count as same
    gender, 0 years apart)."""
    known = gender != "unknown"
    wrong = (preds != labels) & known[labels] & known[preds]
    y, p = labels[wrong], preds[wrong]
    out = {"errors": int((preds != labels).sum()), "with_demographics": int(wrong.sum())}
    _, person = np.unique(clusters[wrong], return_inverse=True)
    if len(y) < 2 or person.max() < 1:
        return out
    truth = np.zeros(person.max() + 1, np.int64)
    truth[person] = y  # a person is under one name
    code = np.unique(gender, return_inverse=True)[1]  # integer codes: fast comparisons

    def stats(true: np.ndarray) -> tuple[float, float]:
        keep = p != true
        if not keep.any():
            return float("nan"), float("nan")
        return (float(np.mean(code[p][keep] == code[true][keep])),
                float(np.mean(np.abs(birth_year[p][keep] - birth_year[true][keep]))))

    rng = np.random.default_rng(seed)
    base = np.array([stats(rng.permutation(truth)[person]) for _ in range(permutations)])
    base = base[np.isfinite(base).all(axis=1)]
    same, gap = stats(y)
    out |= {"people": int(person.max() + 1),
            "same_gender": same, "same_gender_chance": float(base[:, 0].mean()),
            "same_gender_chance_range": [float(v) for v in np.percentile(base[:, 0],
                                                                          [2.5, 97.5])],
            "year_gap": gap, "year_gap_chance": float(base[:, 1].mean()),
            "year_gap_chance_range": [float(v) for v in np.percentile(base[:, 1],
                                                                      [2.5, 97.5])]}
    return out
