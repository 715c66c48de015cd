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
LOOKUP_CELLS = 50_000_000  # people x names of the dense (person, name) table
CHUNK_CELLS = 4_000_000  # permutations x people (x names, balanced) held at once


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
        # (person, name) -> its pair, or -1: a table where it fits (500 names x 10k people:
        # 20 MB), else a binary search per lookup
        self.table = None
        if self.c * self.k <= LOOKUP_CELLS:
            self.table = np.full(self.c * self.k, -1, np.int64)
            self.table[self.pairs] = np.arange(len(self.pairs))

    def scores(self, names: np.ndarray) -> np.ndarray:
        """(b, epochs): each epoch's accuracy with person i under names[:, i]. Only the people
        some epoch predicted their dealt name for contribute hits (few of them: a person's
        predictions name few names), so those alone are gathered."""
        b = len(names)
        q = np.arange(self.c)[None, :] * self.k + names
        if self.table is not None:
            at = self.table[q]
            rows, cols = np.nonzero(at >= 0)
        else:
            at = np.minimum(np.searchsorted(self.pairs, q), len(self.pairs) - 1)
            rows, cols = np.nonzero(self.pairs[at] == q)
        hits = self.counts[at[rows, cols]]  # (found, e)
        if not self.balanced:
            return np.stack([np.bincount(rows, hits[:, j], minlength=b)
                             for j in range(self.e)], axis=1) / self.images.sum()
        # balanced: each hit weighs 1 / (its name's images x the names present), summed
        n = np.bincount((np.arange(b)[:, None] * self.k + names).ravel(),
                        np.tile(self.images, b), minlength=b * self.k).reshape(b, self.k)
        weight = 1.0 / (n[rows, names[rows, cols]] * (n > 0).sum(axis=1)[rows])
        return np.stack([np.bincount(rows, hits[:, j] * weight, minlength=b)
                         for j in range(self.e)], axis=1)

    def test(self, strata: np.ndarray | None = None, permutations: int = N_PERMUTATIONS,
             seed: int = 0) -> dict:
        """The observed max over epochs against `permutations` dealings of names to people,
        within each stratum of `strata` (per name id; None: one stratum)."""
        observed = float(self.scores(self.name[None, :]).max())
        codes = np.zeros(self.k, np.int64) if strata is None else \
            np.unique(np.asarray(strata), return_inverse=True)[1]
        blocks = [np.flatnonzero(codes[self.name] == s) for s in np.unique(codes[self.name])]
        rng = np.random.default_rng(derived_seed(seed, PERMUTATION_STREAM))
        chunk = max(1, CHUNK_CELLS // max(self.c, self.k))
        null = []
        for first in range(0, permutations, chunk):
            b = min(chunk, permutations - first)
            names = np.empty((b, self.c), np.int64)
            for people in blocks:  # names shuffled among the people of each stratum
                names[:, people] = rng.permuted(np.tile(self.name[people], (b, 1)), axis=1)
            null.append(self.scores(names).max(axis=1))
        null = np.concatenate(null)
        p = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
        mc_se = float(np.sqrt(p * (1 - p) / permutations))
        return {"observed": observed, "p": p, "mc_se": mc_se, "permutations": permutations,
                "null_mean": float(null.mean()),
                "null_95": float(np.quantile(null, 0.95)),
                "shown": bool(p + 2 * mc_se < ALPHA), "epochs": self.e, "people": self.c}
