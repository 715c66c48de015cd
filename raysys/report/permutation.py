"""Person-level permutation tests with the epoch choice inside: is there any name signal, and is
there name signal beyond gender (and generation)?

Null of "any name signal": a face's predictions say nothing about its name. Then names can be
dealt to val's people at random (each person keeps their images and every epoch's
predictions; each name keeps its number of people) without changing the distribution of any
statistic. Null of "beyond the stratum": predictions depend on a person's name only through
its stratum (gender, or gender x generation); names are then dealt at random among the people
of each stratum. A model that reads gender alone keeps its score under that shuffle, one that
knows names loses it.

The statistic is what a run reports: the best epoch's score on val, the max over the usable
epochs (and over trials, for a sweep: stack their predictions as more epochs). Every
permutation picks its own luckiest epoch as the run did, so selection cannot pass for signal.
p = (1 + #{permuted >= observed}) / (1 + permutations), with its Monte Carlo SE. A person's
images all count under the person's name (the most common among them).
"""

from __future__ import annotations

import numpy as np

from raysys.keyed_random import derived_seed
from raysys.report.intervals import cluster_names

N_PERMUTATIONS = 10_000
ALPHA = 0.05
PERMUTATION_STREAM = 4  # derived_seed stream
CHUNK_CELLS = 4_000_000  # permutations x people x epochs counted at once


class PersonPermutation:
    """The selected score of fixed per-epoch predictions under names dealt to people."""

    def __init__(self, preds_by_epoch: np.ndarray, labels: np.ndarray, clusters: np.ndarray,
                 balanced: bool):
        _, inv = np.unique(clusters, return_inverse=True)
        self.k = int(max(labels.max(), preds_by_epoch.max())) + 2
        # an image an epoch did not score (-1) is a miss: a name no person has
        preds_by_epoch = np.where(preds_by_epoch < 0, self.k - 1, preds_by_epoch)
        self.name = cluster_names(inv, labels)
        self.c, self.e, self.balanced = len(self.name), len(preds_by_epoch), balanced
        self.images = np.bincount(inv, minlength=self.c).astype(float)
        # how many of each person's images every epoch predicts as each name, sparse: only the
        # (person, name) pairs some epoch predicts
        key = (inv[None, :] * self.k + preds_by_epoch).ravel()
        self.pairs, pair = np.unique(key, return_inverse=True)
        epoch = np.repeat(np.arange(self.e), len(labels))
        self.counts = np.bincount(pair * self.e + epoch, minlength=len(self.pairs) * self.e
                                  ).reshape(len(self.pairs), self.e).astype(float)

    def scores(self, names: np.ndarray) -> np.ndarray:
        """(b, epochs): each epoch's accuracy with person i under names[:, i]."""
        b = len(names)
        q = np.arange(self.c)[None, :] * self.k + names
        at = np.minimum(np.searchsorted(self.pairs, q), len(self.pairs) - 1)
        hits = self.counts[at] * (self.pairs[at] == q)[..., None]  # (b, c, e)
        if not self.balanced:
            return hits.sum(axis=1) / self.images.sum()
        group = (np.arange(b)[:, None] * self.k + names).ravel()
        per_name = np.stack([np.bincount(group, hits[..., j].ravel(), minlength=b * self.k)
                             for j in range(self.e)], axis=1).reshape(b, self.k, self.e)
        n = np.bincount(group, np.tile(self.images, b), minlength=b * self.k).reshape(b, self.k)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(n[..., None] > 0, per_name / n[..., None], np.nan)
        return np.nanmean(recall, axis=1)

    def test(self, strata: np.ndarray | None = None, permutations: int = N_PERMUTATIONS,
             seed: int = 0) -> dict:
        """The observed max over epochs against `permutations` dealings of names to people,
        within each stratum of `strata` (per name id; None: one stratum)."""
        observed = float(self.scores(self.name[None, :]).max())
        codes = np.zeros(self.k, np.int64) if strata is None else \
            np.unique(np.asarray(strata), return_inverse=True)[1]
        stratum = codes[self.name].astype(float)
        base = np.argsort(stratum, kind="stable")
        rng = np.random.default_rng(derived_seed(seed, PERMUTATION_STREAM))
        chunk = max(1, CHUNK_CELLS // max(self.c * self.e, 1))
        null = []
        for first in range(0, permutations, chunk):
            b = min(chunk, permutations - first)
            # names shuffled within each stratum: sort people by stratum + a uniform draw
            order = np.argsort(stratum[None, :] + rng.random((b, self.c)) * 0.5, axis=1)
            names = np.empty((b, self.c), np.int64)
            np.put_along_axis(names, order, self.name[base][None, :], axis=1)
            null.append(self.scores(names).max(axis=1))
        null = np.concatenate(null)
        p = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
        mc_se = float(np.sqrt(p * (1 - p) / permutations))
        return {"observed": observed, "p": p, "mc_se": mc_se, "permutations": permutations,
                "null_mean": float(null.mean()),
                "null_95": float(np.quantile(null, 0.95)),
                "shown": bool(p + 2 * mc_se < ALPHA), "epochs": self.e, "people": self.c}
