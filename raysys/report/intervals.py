"""Intervals that match the data's structure, and an estimate free of the best epoch's selection.

- **Cluster bootstrap.** Val images cluster by person (LFW: 26.7 images per person, size
  -weighted), so resampling images pretends to far more independent draws than there are. Whole
  people are resampled instead (images with no person id are their own cluster), within each
  name, so every name present in val stays present in every resample (a name with one val
  person would otherwise drop out of a third of them). Paired intervals resample the same
  people for the model and a floor, so the difference's interval carries both errors and their
  correlation.
- **Cross-fitting.** The best epoch is chosen on val; reporting it on val is optimistic (a run
  that learned nothing lands above chance by picking its luckiest epoch). Val's people are split
  into two seeded halves; each half is scored with the epoch chosen on the other. Its interval
  repeats the choice inside every resample, so the selection's own noise is in it.

Top-1 and balanced accuracy share one computation: per resample, hits and images per (cluster,
class) are summed, and the score is the mean over classes of hits/images, with every image in
one class for top-1 and each image in its name's class for balanced accuracy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from raysys.keyed_random import derived_seed

LEVEL = 0.95
BOOTSTRAP_STREAM, HALVES_STREAM = 1, 2  # derived_seed streams: independent of each other


def clusters_of(rows: np.ndarray, group_of: dict) -> np.ndarray:
    """Per val row its person id, or a cluster of its own where it has none."""
    out = []
    for r in rows:
        g = group_of.get(int(r))
        out.append(f"person:{g}" if g is not None and g == g else f"row:{int(r)}")
    return np.array(out, dtype=object)


def accuracy(labels: np.ndarray, preds: np.ndarray, balanced: bool) -> float:
    """Top-1, or balanced accuracy (mean recall over the names present)."""
    if not len(labels):
        return float("nan")
    hits = preds == labels
    if not balanced:
        return float(hits.mean())
    _, inv = np.unique(labels, return_inverse=True)
    return float(np.mean(np.bincount(inv, hits) / np.bincount(inv)))


@dataclass
class Interval:
    estimate: float
    lo: float
    hi: float

    def verdict(self) -> str:
        """For a difference (model - reference): what the interval lets a report say."""
        if self.lo > 0:
            return "above"
        return "below" if self.hi < 0 else "level with"

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.lo:.4f}, {self.hi:.4f}]"


def _interval(estimate: float, draws: np.ndarray) -> Interval:
    tail = (1 - LEVEL) / 2 * 100
    lo, hi = np.nanpercentile(draws, [tail, 100 - tail])
    return Interval(float(estimate), float(lo), float(hi))


def _score(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """(..., b, classes) hits and (b, classes) images per resample -> (..., b): the mean of
    hits/images over the classes present."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nanmean(np.where(den > 0, num / den, np.nan), axis=-1)


class ClusterBootstrap:
    """Percentile intervals from `n_boot` resamples of whole clusters within each name. The
    draws are seeded, so every statistic and difference of one instance sees the same
    resamples."""

    def __init__(self, clusters: np.ndarray, labels: np.ndarray, n_boot: int = 1000,
                 seed: int = 0, chunk: int = 100):
        ids, self.inv = np.unique(clusters, return_inverse=True)
        self.labels, self.n_boot, self.chunk = labels, n_boot, chunk
        self.seed = derived_seed(seed, BOOTSTRAP_STREAM)
        self.c = len(ids)
        _, self.label_inv = np.unique(labels, return_inverse=True)
        self.k = int(self.label_inv.max()) + 1 if len(labels) else 0
        # Each cluster's name: its images' most common one (a person is under one name).
        k = max(self.k, 1)
        pairs, counts = np.unique(self.inv.astype(np.int64) * k + self.label_inv,
                                  return_counts=True)
        by = np.lexsort((counts, pairs // k))  # by cluster, the most images last
        last = np.r_[(pairs // k)[by][1:] != (pairs // k)[by][:-1], True]
        stratum = np.zeros(self.c, np.int64)
        stratum[(pairs // k)[by][last]] = (pairs % k)[by][last]
        self.order = np.argsort(stratum, kind="stable")  # clusters grouped by name
        sizes = np.bincount(stratum, minlength=max(self.k, 1))
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.slot_start, self.slot_size = starts[stratum[self.order]], sizes[stratum[self.order]]
        self._images = {}

    def _weights(self) -> Iterator[np.ndarray]:
        """(chunk, clusters) counts: each name's clusters drawn with replacement, as many as it
        has. Chunked: 1,000 x 87k clusters at once would be 0.7 GB."""
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.n_boot, self.chunk):
            b = min(self.chunk, self.n_boot - start)
            pick = self.slot_start + np.floor(rng.random((b, self.c)) * self.slot_size
                                              ).astype(np.int64)
            yield np.stack([np.bincount(self.order[p], minlength=self.c) for p in pick]
                           ).astype(float)

    def _classes(self, balanced: bool) -> np.ndarray:
        return self.label_inv if balanced else np.zeros(len(self.labels), np.int64)

    def _matrix(self, values: np.ndarray, balanced: bool) -> sparse.csr_matrix:
        """(clusters, classes): the sum of `values` per cluster and class."""
        cls = self._classes(balanced)
        return sparse.csr_matrix((values.astype(float), (self.inv, cls)),
                                 shape=(self.c, int(cls.max()) + 1 if len(cls) else 1))

    def _stacked(self, hits: np.ndarray, balanced: bool) -> sparse.csr_matrix:
        """(clusters, epochs x classes): `hits` (epochs, images) summed per cluster and class,
        epoch by epoch side by side."""
        cls = self._classes(balanced)
        k = int(cls.max()) + 1 if len(cls) else 1
        e, i = np.nonzero(hits)
        return sparse.csr_matrix((np.ones(len(i)), (self.inv[i], e * k + cls[i])),
                                 shape=(self.c, len(hits) * k))

    def _images_matrix(self, balanced: bool) -> sparse.csr_matrix:
        if balanced not in self._images:
            self._images[balanced] = self._matrix(np.ones(len(self.labels)), balanced)
        return self._images[balanced]

    @staticmethod
    def _sum(w: np.ndarray, m: sparse.csr_matrix) -> np.ndarray:
        return np.asarray((m.T @ w.T).T)  # (b, classes)

    def draws(self, hits: Sequence[np.ndarray], balanced: bool) -> np.ndarray:
        """(len(hits), n_boot): the accuracy of each 0/1 hit vector in every resample."""
        mats = [self._matrix(np.asarray(h, float), balanced) for h in hits]
        images = self._images_matrix(balanced)
        out = []
        for w in self._weights():
            den = self._sum(w, images)
            out.append(np.stack([_score(self._sum(w, m), den) for m in mats]))
        return np.concatenate(out, axis=1)

    def interval(self, preds: np.ndarray, balanced: bool) -> Interval:
        d = self.draws([preds == self.labels], balanced)[0]
        return _interval(accuracy(self.labels, preds, balanced), d)

    def paired(self, preds: np.ndarray, reference: np.ndarray, balanced: bool) -> Interval:
        """The model's accuracy minus a reference's (a floor's predictions on the same
        images), with both resampled together."""
        a, b = self.draws([preds == self.labels, reference == self.labels], balanced)
        return _interval(accuracy(self.labels, preds, balanced)
                         - accuracy(self.labels, reference, balanced), a - b)

    def cross_fitted(self, preds_by_epoch: np.ndarray, usable: np.ndarray, side: np.ndarray,
                     select_balanced: bool, point: dict) -> dict[str, Interval]:
        """Intervals of the cross-fitted estimate (`point`, from cross_fitted()) that redo the
        epoch choice in every resample: per half, the epoch best on it (the later on a tie) in
        that resample predicts the other half. Top-1 and balanced accuracy."""
        candidates = np.flatnonzero(usable)
        hits = preds_by_epoch[candidates] == self.labels[None, :]
        halves = (side == 0, side == 1)
        # per (metric, half): one (clusters, epochs x classes) matrix, so that a resample's
        # sums over every candidate epoch are one sparse product
        mats = {bal: [self._stacked(hits & on[None, :], bal) for on in halves]
                for bal in (False, True)}
        dens = {bal: [self._matrix(on, bal) for on in halves] for bal in mats}
        draws: dict[bool, list[np.ndarray]] = {False: [], True: []}
        rows = np.arange(self.chunk)
        e = len(candidates)
        for w in self._weights():
            b = w.shape[0]
            den = {bal: [self._sum(w, d) for d in dens[bal]] for bal in mats}
            # sums[bal][h]: (epochs, b, classes) hits of every candidate epoch on half h
            sums = {bal: [self._sum(w, m).reshape(b, e, -1).transpose(1, 0, 2)
                          for m in mats[bal]] for bal in mats}
            chosen = []
            for h in (0, 1):  # the epoch each half picks, per resample (later on a tie)
                scores = _score(sums[select_balanced][h], den[select_balanced][h])  # (e, b)
                chosen.append(len(candidates) - 1 - np.nanargmax(scores[::-1], axis=0))
            for bal in (False, True):  # half 1 by half 0's choice, half 0 by half 1's
                num = sums[bal][1][chosen[0], rows[:b]] + sums[bal][0][chosen[1], rows[:b]]
                draws[bal].append(_score(num, den[bal][0] + den[bal][1]))
        return {"top1": _interval(point["top1"], np.concatenate(draws[False])),
                "balanced_acc": _interval(point["balanced_acc"], np.concatenate(draws[True]))}


def halves(clusters: np.ndarray, seed: int) -> np.ndarray:
    """0/1 per image: val's clusters dealt into two halves in a seeded order."""
    ids, inv = np.unique(clusters, return_inverse=True)
    order = np.random.default_rng(derived_seed(seed, HALVES_STREAM)).permutation(len(ids))
    side = np.empty(len(ids), np.int64)
    side[order] = np.arange(len(ids)) % 2
    return side[inv]


def cross_fitted(preds_by_epoch: np.ndarray, labels: np.ndarray, usable: np.ndarray,
                 side: np.ndarray, balanced: bool) -> dict | None:
    """Selection-free predictions: each half of val (`side`, from halves()) is predicted by the
    epoch that scores best on the other half (the later epoch on a tie, as the run's own
    selection). `usable` masks the epochs a run may select (logged, not diverged). Returns
    {preds, epochs: (chosen on half 0, chosen on half 1)}, or None when there is no usable
    epoch or a half is empty (one val person)."""
    candidates = np.flatnonzero(usable)
    if not len(candidates) or not (side == 0).any() or not (side == 1).any():
        return None
    out = np.full(len(labels), -1, preds_by_epoch.dtype)
    chosen = []
    for h in (0, 1):
        on = side == h
        scores = [accuracy(labels[on], preds_by_epoch[e, on], balanced) for e in candidates]
        best = int(candidates[len(scores) - 1 - int(np.nanargmax(scores[::-1]))])
        chosen.append(best)
        out[~on] = preds_by_epoch[best, ~on]
    return {"preds": out, "epochs": tuple(chosen)}
