"""Intervals that match the data's structure, and an estimate free of the best epoch's selection.

- **Cluster bootstrap, Rao-Wu.** Val images cluster by person (LFW: 26.7 images per person,
  size-weighted), so whole people are resampled, within each name, so every name present in
  val stays present in every resample. Drawing n of a name's n people keeps only (n-1)/n of
  the between-person variance; Rao and Wu's rescaled bootstrap draws n-1 of n and weights each
  draw n/(n-1), which keeps all of it. Names with a single val person are pooled into one
  stratum (their variance cannot be estimated within the name; held fixed they would add
  none). In balanced accuracy each drawn person of the pool counts as one name's recall, as
  many times as drawn: dropping the undrawn names instead (a name's recall is the same
  however often its one person is drawn) kept about a quarter of their variance, and at LFW's
  shape (7 of 19 names with one val person) the 95% interval covered 83% (the pool's
  recalls also differ by name, so this errs wide). Paired intervals resample the same people
  for the model and a floor, so the difference's interval carries both errors and their
  correlation.
- **Percentile endpoints, widened for few people.** A name's variance is estimated from its
  own few people (n-1 degrees of freedom), so the resampling SD is itself noisy where names
  have few val people, and intervals that take it as known under-cover (91% at LFW's shape,
  with the SD right on average). Each endpoint's distance from the estimate is scaled by
  t(df)/z at Satterthwaite's effective degrees of freedom of the design (ClusterBootstrap.df):
  ~10 at LFW's shape (x1.14, coverage 94.5%), hundreds at production's (x1.00).
- **Accuracies: the union with a score interval.** A name's few val people, resampled,
  cannot show a kind of person they lack: where all of them missed, their recall has no
  spread. Near chance, where a rare person the model happens to name right carries a name's
  recall, the percentile interval of pure noise ended wholly below the truth in 11% of runs
  at LFW's shape (89% coverage, benchmarks/calibration.py). An accuracy's interval is
  therefore the union of the percentile one and a Wilson score interval at the design's
  effective number of images, the person-level correlation pooled over all names
  (ClusterBootstrap.accuracy_interval): 99.8% there, and about as wide as the percentile one
  where people differ in skill. A difference from a floor is the union of the paired
  percentile interval and MOVER's from the two sides' own intervals (ClusterBootstrap.
  difference): the within-gender difference from the gender floor, whose percentile interval
  of a gender-only model ended below 0 in 4% of production-shape runs, covered them all.
- **Monte Carlo error.** 10,000 draws by default; every interval carries
  the Monte Carlo SE of its endpoints (from 20 batches of the draws), and a verdict needs its
  bound beyond 0 by twice that. BCa was tried (a closed-form leave-one-person-out jackknife for
  the acceleration): at LFW's shape it covered 75% where the percentile interval covered 91%
  (benchmarks/calibration.py), because its bias correction reads the resampling's own shift
  (names missing from a resample) as the estimator's bias.
- **Cross-fitting.** The best epoch is chosen on val; reporting it on val is optimistic (a run
  that learned nothing lands above chance by picking its luckiest epoch). Val's people are
  split into two halves, name by name; each half is scored with the epoch chosen on the other,
  and the estimate is the mean over 20 such halvings (one halving alone adds an SD of 0.01-0.02
  at LFW's size). Its interval repeats every choice inside every resample, so the selection's
  own noise is in it.

Top-1 and balanced accuracy share one computation: per resample, hits and images per (cluster,
class) are summed, and the score is the mean over classes of hits/images, with every image in
one class for top-1 and each image in its name's class for balanced accuracy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

from raysys.keyed_random import derived_seed

LEVEL = 0.95
N_BOOT = 10_000
N_SPLITS = 20  # halvings averaged by the cross-fitted estimate
MC_BATCHES = 20  # batches of draws whose endpoints give the Monte Carlo SE
CHUNK_CELLS = 2_000_000  # resamples x clusters held at once (16 MB of weights)
BOOTSTRAP_STREAM, HALVES_STREAM = 1, 2  # derived_seed streams: independent of each other


def clusters_of(rows: np.ndarray, group_of: dict) -> np.ndarray:
    """Per val row its person id, or a cluster of its own where it has none."""
    out = []
    for r in rows:
        g = group_of.get(int(r))
        out.append(f"person:{g}" if g is not None and g == g else f"row:{int(r)}")
    return np.array(out, dtype=object)


def cluster_names(cluster_inv: np.ndarray, label_inv: np.ndarray) -> np.ndarray:
    """Per cluster (codes 0..c-1) its name code: its images' most common one (a person is
    under one name; a person under two counts under the name of most of their images)."""
    c = int(cluster_inv.max()) + 1 if len(cluster_inv) else 0
    k = int(label_inv.max()) + 1 if len(label_inv) else 1
    pairs, counts = np.unique(cluster_inv.astype(np.int64) * k + label_inv, return_counts=True)
    by = np.lexsort((counts, pairs // k))  # by cluster, the most images last
    last = np.r_[(pairs // k)[by][1:] != (pairs // k)[by][:-1], True]
    name = np.zeros(c, np.int64)
    name[(pairs // k)[by][last]] = (pairs % k)[by][last]
    return name


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
    mc_se: float = 0.0  # Monte Carlo SE of the endpoints (the larger of the two)

    def verdict(self) -> str:
        """For a difference (model - reference): what the interval lets a report say. A bound
        within two Monte Carlo SEs of 0 could fall on either side with other draws."""
        if self.lo > 2 * self.mc_se:
            return "above"
        return "below" if self.hi < -2 * self.mc_se else "level with"

    def __str__(self) -> str:
        return f"{self.estimate:.4f} [{self.lo:.4f}, {self.hi:.4f}]"


def widening(df: float) -> float:
    """t(df)/z at the interval's level: how much wider an interval whose SD is estimated with
    `df` degrees of freedom must be than one whose SD is known (1 for df = inf)."""
    if not np.isfinite(df) or df <= 0:
        return 1.0
    q = (1 + LEVEL) / 2
    return float(stats.t.ppf(q, df) / stats.norm.ppf(q))


def from_draws(estimate: float, draws: np.ndarray, df: float = np.inf) -> Interval:
    """The 95% percentile interval of `estimate` from its bootstrap draws, each endpoint's
    distance from the estimate widened by widening(df), with the endpoints' Monte Carlo SE."""
    d = np.asarray(draws, float)
    d = d[np.isfinite(d)]
    if not len(d) or estimate != estimate:
        return Interval(float(estimate), float("nan"), float("nan"))
    levels = [(1 - LEVEL) / 2, (1 + LEVEL) / 2]
    f = widening(df)
    lo, hi = estimate + f * (np.quantile(d, levels) - estimate)
    batches = min(MC_BATCHES, len(d) // 50)  # an endpoint of fewer than 50 draws says little
    mc_se = 0.0
    if batches >= 2:
        ends = np.array([np.quantile(b, levels) for b in np.array_split(d, batches)])
        mc_se = float(f * ends.std(axis=0, ddof=1).max() / np.sqrt(batches))
    return Interval(float(estimate), float(lo), float(hi), mc_se)


def _score(num: np.ndarray, den: np.ndarray, pool: bool = False) -> np.ndarray:
    """(..., b, classes) hits and (b, classes) images per resample -> (..., b): the mean of
    hits/images over the classes present. `pool`: the last class is the pooled stratum of
    names with a single val person, whose hits and images are each person's recall and 1
    (ClusterBootstrap), so it adds each drawn person's recall as one name's."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a resample with no image: NaN
        if not pool:
            return np.nanmean(np.where(den > 0, num / den, np.nan), axis=-1)
        named = np.where(den[..., :-1] > 0, num[..., :-1] / den[..., :-1], 0.0)
        return ((named.sum(axis=-1) + num[..., -1])
                / ((den[..., :-1] > 0).sum(axis=-1) + den[..., -1]))


class ClusterBootstrap:
    """Percentile intervals from `n_boot` Rao-Wu resamples of whole clusters within each name. The
    draws are seeded, so every statistic and difference of one instance sees the same
    resamples."""

    def __init__(self, clusters: np.ndarray, labels: np.ndarray, n_boot: int = N_BOOT,
                 seed: int = 0, chunk: int | None = None):
        ids, self.inv = np.unique(clusters, return_inverse=True)
        self.labels, self.n_boot = labels, n_boot
        self.seed = derived_seed(seed, BOOTSTRAP_STREAM)
        self.c = len(ids)
        self.chunk = chunk or max(1, min(n_boot, CHUNK_CELLS // max(self.c, 1)))
        _, self.label_inv = np.unique(labels, return_inverse=True)
        self.k = int(self.label_inv.max()) + 1 if len(labels) else 0
        self.name = cluster_names(self.inv, self.label_inv) if len(labels) else np.zeros(0, int)
        # The resampling strata: each name, except that the names with a single val person
        # are pooled into one stratum ("collapsed strata"): one person's variance cannot be
        # estimated within its name, and held fixed it would count as none.
        single = np.bincount(self.name, minlength=max(self.k, 1))[self.name] == 1
        stratum = np.where(single, max(self.k, 1), self.name)
        self.order = np.argsort(stratum, kind="stable")  # clusters grouped by stratum
        sizes = np.bincount(stratum, minlength=max(self.k, 1) + 1)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.slot_start = starts[stratum[self.order]]
        self.slot_size = sizes[stratum[self.order]]
        # Rao-Wu: a stratum's n clusters get n-1 draws (every slot but its first), each worth
        # n/(n-1); a stratum of one cluster is not drawn and keeps weight 1.
        self.drawn = np.arange(self.c) > self.slot_start
        self.fixed = np.zeros(self.c)
        self.fixed[self.order[self.slot_size == 1]] = 1.0
        self.scale = np.ones(self.c)
        self.scale[self.order] = np.where(self.slot_size > 1, self.slot_size
                                          / np.maximum(self.slot_size - 1, 1), 1.0)
        # Balanced accuracy's classes: each name, and a last one for the pool, where every
        # image weighs 1/(its person's images), so a person adds their recall and 1 (_score).
        pooled = single[self.inv] if len(labels) else np.zeros(0, bool)
        self.pool_class = np.where(pooled, max(self.k, 1), self.label_inv)
        self.pool_weight = np.where(pooled, 1.0 / np.bincount(self.inv)[self.inv], 1.0) \
            if len(labels) else np.zeros(0)
        self._images = {}

    def df(self, balanced: bool) -> float:
        """Satterthwaite's effective degrees of freedom of the resampling variance: each
        stratum (a name, or the pool) estimates its share of the variance from its people
        less one; people alike, a name of n people adds 1/n (balanced accuracy: each name
        weighs the same) or n (top-1: each person does) and the pool its size either way."""
        sizes = np.bincount(self.name, minlength=max(self.k, 1))
        multi, single = sizes[sizes > 1], int((sizes == 1).sum())
        share = (1.0 / multi if balanced else multi.astype(float))
        share, dof = np.r_[share, single], np.r_[multi - 1, single - 1]
        keep = dof > 0  # a pool of one person is held fixed: no variance, no df
        share, dof = share[keep], dof[keep]
        return float(share.sum() ** 2 / np.sum(share ** 2 / dof)) if len(share) else np.inf

    def interval_of(self, estimate: float, draws: np.ndarray, balanced: bool) -> Interval:
        """from_draws, widened for this design's degrees of freedom."""
        return from_draws(estimate, draws, self.df(balanced))

    def effective_images(self, hits: np.ndarray, balanced: bool) -> float:
        """How many independent images would give the accuracy its variance at any rate:
        1 / sum_i w_i^2 (1 + (m_i - 1) rho) / m_i over people i of m_i images and weight w_i
        in the estimate (m_i / images for top-1; m_i / (names x the name's images) for
        balanced accuracy), rho the correlation of one person's hits (one-way ANOVA moment
        estimate, people within names, pooled over names; hits (rows, images): the mean of
        each row's). Where nothing shows the correlation (no name with two people and a rate
        between 0 and 1), rho = 1: every person all right or all wrong."""
        m = np.bincount(self.inv, minlength=self.c).astype(float)
        name_images = np.bincount(self.name, m, minlength=max(self.k, 1))[self.name]
        keep = 1 - m / name_images
        rhos = []
        for row in np.atleast_2d(np.asarray(hits, float)):
            y = np.bincount(self.inv, row, minlength=self.c) / m
            p = np.bincount(self.name, m * y, minlength=max(self.k, 1))[self.name] / name_images
            v = p * (1 - p)
            den = np.sum(v * (m - 1) * keep)
            rhos.append(np.clip((np.sum(m * (y - p) ** 2) - np.sum(v * keep)) / den, 0, 1)
                        if den > 0 else 1.0)
        rho = float(np.mean(rhos))
        w = m / (max(self.k, 1) * name_images) if balanced else m / max(m.sum(), 1)
        return float(1 / np.sum(w ** 2 * (1 + (m - 1) * rho) / m))

    def accuracy_interval(self, estimate: float, draws: np.ndarray, hits: np.ndarray,
                          balanced: bool) -> Interval:
        """An accuracy's interval: the union of the percentile one (interval_of) and a Wilson
        score interval at effective_images(hits), with t(df) for z (the module docstring says
        why): the score interval sees rare people a name's few val people lack, the resamples
        redo the epoch choice."""
        iv = self.interval_of(estimate, draws, balanced)
        if estimate != estimate:
            return iv
        n = self.effective_images(hits, balanced)
        z = widening(self.df(balanced)) * stats.norm.ppf((1 + LEVEL) / 2)  # t(df)
        centre = (estimate + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(estimate * (1 - estimate) / n + z * z / (4 * n * n))
        return Interval(iv.estimate, float(min(iv.lo, centre - half)),
                        float(max(iv.hi, centre + half)), iv.mc_se)

    def _weights(self, chunk: int | None = None) -> Iterator[np.ndarray]:
        """(chunk, clusters) weights of successive resamples. Chunked: 10,000 x 87k clusters
        at once would be 7 GB; any chunking gives the same resamples."""
        rng = np.random.default_rng(self.seed)
        start, size = self.slot_start[self.drawn], self.slot_size[self.drawn]
        chunk = chunk or self.chunk
        for first in range(0, self.n_boot, chunk):
            b = min(chunk, self.n_boot - first)
            pick = start + np.floor(rng.random((b, len(start))) * size).astype(np.int64)
            flat = (np.arange(b)[:, None] * self.c + self.order[pick]).ravel()
            counts = np.bincount(flat, minlength=b * self.c).reshape(b, self.c)
            yield counts * self.scale + self.fixed

    def _classes(self, balanced: bool) -> tuple[np.ndarray, np.ndarray, int]:
        """Per image its class and weight, and the number of classes: one class of weight 1
        for top-1; each name and the pool (the last) for balanced accuracy."""
        if balanced:
            return self.pool_class, self.pool_weight, max(self.k, 1) + 1
        return np.zeros(len(self.labels), np.int64), np.ones(len(self.labels)), 1

    def _matrix(self, values: np.ndarray, balanced: bool) -> sparse.csr_matrix:
        """(clusters, classes): the weighted sum of `values` per cluster and class."""
        cls, weight, k = self._classes(balanced)
        return sparse.csr_matrix((values.astype(float) * weight, (self.inv, cls)),
                                 shape=(self.c, k))

    def _stacked(self, hits: np.ndarray, balanced: bool) -> sparse.csr_matrix:
        """(clusters, epochs x classes): `hits` (epochs, images) summed per cluster and class,
        epoch by epoch side by side."""
        cls, weight, k = self._classes(balanced)
        e, i = np.nonzero(hits)
        return sparse.csr_matrix((weight[i], (self.inv[i], e * k + cls[i])),
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
            out.append(np.stack([_score(self._sum(w, m), den, balanced) for m in mats]))
        return np.concatenate(out, axis=1)

    def interval(self, preds: np.ndarray, balanced: bool) -> Interval:
        hits = preds == self.labels
        return self.accuracy_interval(accuracy(self.labels, preds, balanced),
                                      self.draws([hits], balanced)[0], hits, balanced)

    def name_guess(self, preds: np.ndarray) -> bool:
        """Whether `preds` guess from the name alone (every face of a name gets the same
        guess, as a stratum floor's): such a reference hits all of a name's images or none."""
        pairs = np.unique(self.label_inv.astype(np.int64) * (int(preds.max(initial=0)) + 2)
                          + preds + 1)
        return len(pairs) == self.k

    def difference(self, estimate: float, draws: np.ndarray, hits: np.ndarray,
                   reference: np.ndarray, balanced: bool,
                   reference_draws: np.ndarray | None = None) -> Interval:
        """The model's accuracy (its estimate, draws and hits, as accuracy_interval takes
        them) minus a reference's (its predictions on the same images; its draws from the same
        resamples where the caller has them): the union of the paired percentile interval and
        MOVER's (Zou and Donner), which recovers the difference's bounds from each side's own
        interval and the draws' correlation. The model's side is its accuracy_interval, so a
        model whose rare hits its few people lack is not read below the reference. A
        reference that guesses from the name alone (name_guess) keeps its percentile interval:
        its recalls are 0 or 1 by name, not drawn from people, and a score interval would give
        it spread it does not have (over 150 production-shape runs, the power at 2x chance
        within gender was 0.02 with one, 0.49 without; RESULTS.md)."""
        ref_hits = reference == self.labels
        if reference_draws is None:
            reference_draws = self.draws([ref_hits], balanced)[0]
        ref_estimate = accuracy(self.labels, reference, balanced)
        paired = self.interval_of(estimate - ref_estimate, draws - reference_draws, balanced)
        if paired.estimate != paired.estimate or np.array_equal(hits, ref_hits):
            return paired  # the same hits differ by 0 whoever is drawn
        a = self.accuracy_interval(estimate, draws, hits, balanced)
        b = (self.interval_of(ref_estimate, reference_draws, balanced)
             if self.name_guess(reference)
             else self.accuracy_interval(ref_estimate, reference_draws, ref_hits, balanced))
        both = np.isfinite(draws) & np.isfinite(reference_draws)
        x, y = draws[both], reference_draws[both]
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 \
            else 0.0
        # a name-guess floor's percentile interval may leave out its own estimate (its draws
        # are 0/1 recalls); a side's distance is never negative
        down, up = max(estimate - a.lo, 0.0), max(a.hi - estimate, 0.0)
        ref_down, ref_up = max(ref_estimate - b.lo, 0.0), max(b.hi - ref_estimate, 0.0)
        lo = paired.estimate - np.sqrt(max(down ** 2 + ref_up ** 2 - 2 * r * down * ref_up, 0))
        hi = paired.estimate + np.sqrt(max(up ** 2 + ref_down ** 2 - 2 * r * up * ref_down, 0))
        # where MOVER's bound is kept, its Monte Carlo error is both sides' (at most their sum
        # in quadrature when the draws correlate positively, as paired ones do)
        mc_se = paired.mc_se
        if lo < paired.lo or hi > paired.hi:
            mc_se = max(mc_se, float(np.hypot(a.mc_se, b.mc_se)))
        return Interval(paired.estimate, float(min(paired.lo, lo)), float(max(paired.hi, hi)),
                        mc_se)

    def paired(self, preds: np.ndarray, reference: np.ndarray, balanced: bool) -> Interval:
        """The model's accuracy minus a reference's (a floor's predictions on the same
        images), with both resampled together (difference)."""
        a, b = self.draws([preds == self.labels, reference == self.labels], balanced)
        return self.difference(accuracy(self.labels, preds, balanced), a, preds == self.labels,
                               reference, balanced, b)

    def grouped(self, hits: np.ndarray, groups: np.ndarray, n_groups: int,
                stat: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Interval:
        """The interval of a statistic of hits and images summed per group (`groups`: a code
        per image, below n_groups), `stat((b, n_groups) hits, (b, n_groups) images) -> (b,)`;
        percentile, widened as balanced accuracy's (a statistic over names)."""
        shape = (self.c, n_groups)
        h = sparse.csr_matrix((np.asarray(hits, float), (self.inv, groups)), shape=shape)
        n = sparse.csr_matrix((np.ones(len(groups)), (self.inv, groups)), shape=shape)
        estimate = float(stat(np.asarray(h.sum(axis=0)), np.asarray(n.sum(axis=0)))[0])
        draws = np.concatenate([stat(self._sum(w, h), self._sum(w, n)) for w in self._weights()])
        return self.interval_of(estimate, draws, True)

    def cross_fitted_draws(self, preds_by_epoch: np.ndarray, usable: np.ndarray,
                           sides: np.ndarray, select_balanced: bool) -> dict[bool, np.ndarray]:
        """Per metric (balanced or not), (n_boot,) draws of the cross-fitted estimate that
        redo every choice in every resample: per halving (`sides`, from halves()) and half,
        the epoch best on it (the later on a tie) in that resample predicts the other half;
        the estimate is the mean over halvings."""
        candidates = np.flatnonzero(usable)
        hits = preds_by_epoch[candidates] == self.labels[None, :]
        e = len(candidates)
        # a person is on one side of a halving: per halving, each cluster's side
        side_of = np.zeros((len(sides), self.c))
        for s, side in enumerate(sides):
            side_of[s, self.inv] = side
        mats = {bal: self._stacked(hits, bal) for bal in (False, True)}
        dens = {bal: self._images_matrix(bal) for bal in mats}
        draws: dict[bool, list[np.ndarray]] = {False: [], True: []}
        # a resample holds several (epochs x names) sums: a sweep's 600 candidates x 500 names
        # are 300k per resample
        chunk = max(1, min(self.chunk, CHUNK_CELLS // max(e * max(self.k, 1), 1)))
        for w in self._weights(chunk):
            b = w.shape[0]
            rows = np.arange(b)
            total = {bal: self._sum(w, mats[bal]).reshape(b, e, -1) for bal in mats}
            den_total = {bal: self._sum(w, dens[bal]) for bal in mats}
            acc = {False: np.zeros(b), True: np.zeros(b)}
            for on in side_of:
                w1 = w * on  # half 1's weights; half 0's are the rest
                one = {bal: self._sum(w1, mats[bal]).reshape(b, e, -1) for bal in mats}
                den1 = {bal: self._sum(w1, dens[bal]) for bal in mats}
                sums = {bal: (total[bal] - one[bal], one[bal]) for bal in mats}
                den = {bal: (den_total[bal] - den1[bal], den1[bal]) for bal in mats}
                chosen = []
                for h in (0, 1):  # the epoch each half picks, per resample (later on a tie)
                    sb = select_balanced
                    scores = _score(sums[sb][h].transpose(1, 0, 2), den[sb][h], sb)  # (e, b)
                    # a half a resample left empty (its people all undrawn) scores nothing:
                    # it picks the last epoch, and has no images to be scored on
                    scores = np.where(np.isnan(scores), -np.inf, scores)
                    chosen.append(e - 1 - np.argmax(scores[::-1], axis=0))
                for bal in mats:  # half 1 by half 0's choice, half 0 by half 1's
                    num = sums[bal][1][rows, chosen[0]] + sums[bal][0][rows, chosen[1]]
                    acc[bal] += _score(num, den_total[bal], bal)
            for bal in mats:
                draws[bal].append(acc[bal] / len(sides))
        return {bal: np.concatenate(draws[bal]) for bal in draws}

    def cross_fitted(self, preds_by_epoch: np.ndarray, usable: np.ndarray, sides: np.ndarray,
                     select_balanced: bool, point: dict, references: dict | None = None
                     ) -> dict:
        """Intervals of the cross-fitted estimate (`point`, from cross_fitted()), top-1 and
        balanced accuracy, and of its difference from each reference (a floor's predictions
        on the same images, resampled with it); "sd": the balanced draws' SD."""
        d = self.cross_fitted_draws(preds_by_epoch, usable, sides, select_balanced)
        out: dict = {"sd": float(np.nanstd(d[True]))}
        for m, bal in (("top1", False), ("balanced_acc", True)):
            out[m] = self.accuracy_interval(point[m], d[bal], point["preds"] == self.labels,
                                            bal)
            for name, ref in (references or {}).items():
                out.setdefault("vs", {}).setdefault(name, {})[m] = self.difference(
                    point[m], d[bal], point["preds"] == self.labels, ref, bal)
        return out


def halves(clusters: np.ndarray, labels: np.ndarray, seed: int, n_splits: int = N_SPLITS
           ) -> np.ndarray:
    """(n_splits, images) of 0/1: val's clusters dealt into two halves, name by name (each
    name's people alternate between the halves in a seeded order, so both halves hold about
    half of every name's people), a person always on one side."""
    _, inv = np.unique(clusters, return_inverse=True)
    name = cluster_names(inv, np.unique(labels, return_inverse=True)[1])
    rng = np.random.default_rng(derived_seed(seed, HALVES_STREAM))
    out = np.empty((n_splits, len(clusters)), np.int64)
    for s in range(n_splits):
        order = np.lexsort((rng.random(len(name)), name))
        side = np.empty(len(name), np.int64)
        side[order] = (np.arange(len(name)) + s) % 2  # odd names' extra person alternates
        out[s] = side[inv]
    return out


def cross_fitted(preds_by_epoch: np.ndarray, labels: np.ndarray, usable: np.ndarray,
                 sides: np.ndarray, balanced: bool) -> dict | None:
    """Selection-free predictions: in each halving (`sides`, from halves()), each half of val
    is predicted by the epoch that scores best on the other half (the later epoch on a tie,
    as the run's own selection). `usable` masks the epochs a run may select (logged, not
    diverged). Returns {preds: (halvings, images), epochs: per halving (chosen on half 0,
    chosen on half 1), top1, balanced_acc: the mean over halvings}, or None when there is no
    usable epoch or a half is empty (one val person)."""
    candidates = np.flatnonzero(usable)
    if not len(candidates) or not ((sides == 0).any(axis=1) & (sides == 1).any(axis=1)).all():
        return None
    preds, epochs = [], []
    for side in sides:
        out = np.full(len(labels), -1, preds_by_epoch.dtype)
        chosen = []
        for h in (0, 1):
            on = side == h
            scores = [accuracy(labels[on], preds_by_epoch[e, on], balanced) for e in candidates]
            best = int(candidates[len(scores) - 1 - int(np.nanargmax(scores[::-1]))])
            chosen.append(best)
            out[~on] = preds_by_epoch[best, ~on]
        preds.append(out)
        epochs.append(tuple(chosen))
    preds = np.stack(preds)
    return {"preds": preds, "epochs": epochs,
            "top1": float(np.mean([accuracy(labels, p, False) for p in preds])),
            "balanced_acc": float(np.mean([accuracy(labels, p, True) for p in preds]))}
