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
    sides = halves(person, person % 5, seed=0)
    assert sides.shape == (20, 150)
    for side in sides:
        assert abs(side.mean() - 0.5) < 0.05
        assert all(len(set(side[person == p])) == 1 for p in range(50))  # one side each


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
    sides = halves(person, labels, seed=0)
    cf = cross_fitted(preds, labels, np.ones(epochs, bool), sides, balanced=True)
    free = boot.cross_fitted(preds, np.ones(epochs, bool), sides, True, cf)
    assert selected.estimate > 1 / k + 0.01  # selection alone lifts the estimate
    for m in ("top1", "balanced_acc"):
        assert free[m].lo <= 1 / k <= free[m].hi, (m, free[m])
    assert free["balanced_acc"].estimate < selected.estimate
    assert any(a != b for a, b in cf["epochs"])  # each half picked its own luckiest epoch


def test_cross_fitting_skips_unusable_epochs_takes_the_later_tie_and_needs_two_halves():
    labels = np.zeros(6, int)
    preds = np.array([[0] * 6, [0] * 6, [9] * 6])
    side = np.array([[0, 1, 0, 1, 0, 1]])
    cf = cross_fitted(preds, labels, np.array([True, True, False]), side, False)
    assert cf["epochs"] == [(1, 1)] and (cf["preds"] == 0).all()
    assert cross_fitted(preds, labels, np.zeros(3, bool), side, False) is None
    assert cross_fitted(preds, labels, np.ones(3, bool), np.zeros((1, 6), int), False) is None
    # one halving with an empty half is enough to refuse
    both = np.stack([side[0], np.zeros(6, int)])
    assert cross_fitted(preds, labels, np.ones(3, bool), both, False) is None


def test_a_learning_run_keeps_its_signal_selection_free():
    """Accuracy that rises over epochs (a run that learns): the cross-fitted estimate picks
    late epochs on both halves and its interval sits well above chance."""
    rng = np.random.default_rng(2)
    person = np.repeat(np.arange(300), 2)
    labels = rng.integers(0, 5, 300)[person]
    skill = np.linspace(0.1, 0.6, 20)
    preds = np.stack([np.where(rng.random(len(person)) < s, labels, (labels + 1) % 5)
                      for s in skill])
    sides = halves(person, labels, seed=1)
    cf = cross_fitted(preds, labels, np.ones(20, bool), sides, balanced=False)
    free = ClusterBootstrap(person, labels, n_boot=200, seed=0).cross_fitted(
        preds, np.ones(20, bool), sides, False, cf)
    assert min(min(e) for e in cf["epochs"]) >= 15 and free["top1"].lo > 0.5


def test_verdict_at_the_edges():
    from raysys.report.intervals import Interval

    assert [Interval(0, lo, hi).verdict() for lo, hi in (
        (1e-9, 1), (0.0, 1), (-1, 0.0), (-1, -1e-9), (-0.5, 0.5), (-2, -0.5))] == [
        "above", "level with", "level with", "below", "level with", "below"]
    # a bound within two Monte Carlo SEs of 0 decides nothing
    assert Interval(0, 0.019, 1, mc_se=0.01).verdict() == "level with"
    assert Interval(0, 0.021, 1, mc_se=0.01).verdict() == "above"
    assert Interval(0, -1, -0.019, mc_se=0.01).verdict() == "level with"
    assert str(Interval(0.12345, -0.5, 1)) == "0.1235 [-0.5000, 1.0000]"


def _brute_selection_free_draws(boot, preds_by_epoch, usable, sides, select_balanced):
    """The resampled cross-fitted accuracy, by plain loops over the same resamples: the mean
    over halvings."""
    labels, candidates = boot.labels, np.flatnonzero(usable)

    def acc(per_image, hit, on, balanced):
        if not balanced:
            return (per_image * hit * on).sum() / (per_image * on).sum()
        names = [n for n in np.unique(labels) if (per_image * on)[labels == n].sum()]
        return np.mean([(per_image * hit * on)[labels == n].sum()
                        / (per_image * on)[labels == n].sum() for n in names])

    out = {False: [], True: []}
    for w in boot._weights():
        for weights in w:
            per_image = weights[boot.inv]  # each image counted as its cluster's weight
            got = {False: [], True: []}
            for side in sides:
                chosen = []
                for h in (0, 1):
                    on = side == h
                    scores = [acc(per_image, preds_by_epoch[e] == labels, on, select_balanced)
                              for e in candidates]
                    chosen.append(candidates[len(scores) - 1 - int(np.nanargmax(scores[::-1]))])
                pred = np.where(side == 1, preds_by_epoch[chosen[0]], preds_by_epoch[chosen[1]])
                for bal in (False, True):
                    got[bal].append(acc(per_image, pred == labels, np.ones(len(labels)), bal))
            for bal in (False, True):
                out[bal].append(np.mean(got[bal]))
    return out


def test_resampled_cross_fitting_matches_plain_loops():
    """The sparse, chunked resampling of the epoch choice gives what loops over the same
    resamples give: in every halving the epoch each half picks (the later on a tie) scores
    the other half, averaged over halvings, for top-1 and balanced accuracy."""
    rng = np.random.default_rng(3)
    person, labels, _ = _clustered(rng, people=24, k=3)
    preds_by_epoch = np.stack([np.where(rng.random(len(labels)) < q, labels, (labels + 1) % 3)
                               for q in (0.3, 0.5, 0.5, 0.45)])
    usable = np.array([True, True, True, False])
    sides = halves(person, labels, 0, n_splits=3)
    boot = ClusterBootstrap(person, labels, n_boot=7, seed=1, chunk=3)
    for select_balanced in (False, True):
        got = boot.cross_fitted_draws(preds_by_epoch, usable, sides, select_balanced)
        want = _brute_selection_free_draws(boot, preds_by_epoch, usable, sides, select_balanced)
        np.testing.assert_allclose(got[False], want[False])
        np.testing.assert_allclose(got[True], want[True])


def test_cross_fitted_predictions_by_hand():
    labels = np.array([0, 1, 0, 1, 0, 1])
    side = np.array([[0, 0, 0, 1, 1, 1]])
    preds = np.array([[0, 1, 1, 1, 1, 0],   # epoch 0: half 0 2/3, half 1 1/3
                      [0, 1, 0, 1, 1, 0],   # epoch 1: half 0 3/3, half 1 1/3
                      [1, 0, 0, 1, 0, 1],   # epoch 2: half 0 1/3, half 1 3/3
                      [0, 0, 0, 1, 0, 1]])  # epoch 3: half 0 2/3, half 1 3/3 (ties epoch 2)
    got = cross_fitted(preds, labels, np.ones(4, bool), side, balanced=False)
    assert got["epochs"] == [(1, 3)]  # half 1's tie goes to the later epoch
    np.testing.assert_array_equal(got["preds"][0], np.r_[preds[3, :3], preds[1, 3:]])
    assert got["preds"].dtype == preds.dtype
    # without epoch 1, half 0 picks 3 (2/3, later than 0)
    assert cross_fitted(preds, labels, np.array([1, 0, 1, 1], bool), side, False)[
        "epochs"] == [(3, 3)]
    # balanced selection differs from top-1 on imbalanced halves
    lab2, side2 = np.array([0, 0, 0, 1, 0, 0, 0, 1]), np.array([[0, 0, 0, 0, 1, 1, 1, 1]])
    p2 = np.array([[0, 0, 0, 0, 0, 0, 0, 0], [1, 1, 0, 1, 1, 1, 0, 1]])
    assert cross_fitted(p2, lab2, np.ones(2, bool), side2, False)["epochs"] == [(0, 0)]
    assert cross_fitted(p2, lab2, np.ones(2, bool), side2, True)["epochs"] == [(1, 1)]
    for bad_side in (np.zeros((1, 6), int), np.ones((1, 6), int)):
        assert cross_fitted(preds, labels, np.ones(4, bool), bad_side, False) is None
    assert cross_fitted(preds, labels, np.zeros(4, bool), side, False) is None


def test_halves_are_seeded_stratified_by_name_and_whole_clusters():
    """Each halving deals every name's people alternately into the halves (issue 27: halves
    not stratified by name left a name's people all on one side), a person never split."""
    clusters = np.array(list("aabbbcdddeefgghh"), dtype=object)
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2])  # a-c, d-f, g-h
    sides = halves(clusters, labels, 7, n_splits=30)
    assert sides.dtype == np.int64 and sides.shape == (30, 16)
    names = {"a": 0, "b": 0, "c": 0, "d": 1, "e": 1, "f": 1, "g": 2, "h": 2}
    for side in sides:
        per = {c: side[clusters == c] for c in names}
        assert all(len(set(v)) == 1 for v in per.values())  # a cluster is never split
        for n in range(3):
            got = [per[c][0] for c in names if names[c] == n]
            assert abs(sum(got) - len(got) / 2) <= 0.5  # each name split as evenly as can be
    assert len({tuple(s) for s in sides}) > 5  # halvings differ
    np.testing.assert_array_equal(halves(clusters, labels, 7, n_splits=30), sides)
    assert (halves(clusters, labels, 8, n_splits=30) != sides).any()


def test_rao_wu_draws_n_minus_one_of_n_people_and_rescales():
    """Per name with n people, n-1 draws each worth n/(n-1) (so a resample keeps the whole
    between-person variance); the names with one person are one pooled stratum."""
    clusters = np.array(list("abcdefg"), dtype=object)
    labels = np.array([0, 0, 0, 1, 1, 2, 3])  # 3, 2, 1, 1 people
    boot = ClusterBootstrap(clusters, labels, n_boot=500, seed=0)
    w = np.concatenate(list(boot._weights()))
    assert w.shape == (500, 7)
    np.testing.assert_allclose(w[:, :3].sum(axis=1), 3.0)  # 2 draws x 3/2
    np.testing.assert_allclose(w[:, 3:5].sum(axis=1), 2.0)  # 1 draw x 2
    assert set(np.unique(w[:, :3])) <= {0.0, 1.5, 3.0}
    np.testing.assert_allclose(w[:, 5:].sum(axis=1), 2.0)  # names 2, 3 pooled: 1 draw x 2
    assert (w[:, :3] == 0).any(axis=1).all()  # never all three: n-1 draws
    np.testing.assert_allclose(w.mean(axis=0), 1.0, atol=0.1)  # each person's mean weight 1


def test_percentile_endpoints_and_their_monte_carlo_error():
    from raysys.report.intervals import from_draws

    rng = np.random.default_rng(0)
    draws = rng.exponential(1.0, 20000)
    got = from_draws(1.0, draws)
    np.testing.assert_allclose((got.lo, got.hi), np.quantile(draws, [0.025, 0.975]))
    assert 0 < got.mc_se < 0.05
    assert from_draws(1.0, draws[:40]).mc_se == 0.0  # too few draws to batch
    assert np.isnan(from_draws(0.5, np.array([np.nan])).lo)


def test_names_with_one_val_person_are_resampled_together():
    """A name with a single val person held fixed adds no variance (issue 27: intervals
    wholly below the truth); pooled, the single-person names vary as a group."""
    clusters = np.array(list("abcde"), dtype=object)
    labels = np.array([0, 1, 2, 3, 3])  # names 0-2 have one person each, name 3 two
    w = np.concatenate(list(ClusterBootstrap(clusters, labels, n_boot=400, seed=0)._weights()))
    np.testing.assert_allclose(w[:, :3].sum(axis=1), 3.0)  # 2 draws x 3/2 among the three
    assert (w[:, :3] == 0).any(axis=1).all() and w[:, :3].std(axis=0).min() > 0.5


def test_paired_balanced_is_the_difference_of_balanced_accuracies():
    from raysys.report.intervals import from_draws

    rng = np.random.default_rng(5)
    person, labels, preds = _clustered(rng, people=60, k=4)
    ref = np.where(rng.random(len(labels)) < 0.5, labels, (labels + 2) % 4)
    boot = ClusterBootstrap(person, labels, n_boot=50, seed=2)
    for balanced in (False, True):
        got = boot.paired(preds, ref, balanced)
        assert got.estimate == pytest.approx(accuracy(labels, preds, balanced)
                                             - accuracy(labels, ref, balanced))
        a, b = boot.draws([preds == labels, ref == labels], balanced)
        pct = from_draws(got.estimate, a - b, boot.df(balanced))
        assert got.lo <= pct.lo and got.hi >= pct.hi and got.mc_se == pct.mc_se
    assert boot.paired(preds, ref, True).lo != boot.paired(preds, ref, False).lo


def test_clusters_of_keeps_ids_as_strings():
    got = clusters_of(np.array([1, 2, 3]), {1: "p1", 2: float("nan"), 3: None})
    assert got.dtype == object and list(got) == ["person:p1", "row:2", "row:3"]


def test_scores_draws_and_edges():
    from raysys.report.intervals import _score

    # classes with no images are left out of the mean; one image counts
    assert _score(np.array([[1.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 2.0]]))[0] == 0.75
    assert np.isnan(accuracy(np.array([], np.int64), np.array([], np.int64), False))
    assert np.isnan(accuracy(np.array([], np.int64), np.array([], np.int64), True))
    rng = np.random.default_rng(9)
    person, labels, preds = _clustered(rng, people=30, k=3)
    boot = ClusterBootstrap(person, labels, n_boot=250, seed=4, chunk=100)
    assert boot.draws([preds == labels], False).shape == (1, 250)
    assert boot.interval(preds, True).estimate == pytest.approx(
        balanced_accuracy_score(labels, preds))
    b = boot.draws([preds == labels], True)[0]
    from raysys.report.intervals import from_draws

    # the percentile interval, widened where the score interval reaches further
    pct, got = from_draws(accuracy(labels, preds, True), b, boot.df(True)), boot.interval(preds,
                                                                                       True)
    assert (got.estimate, got.mc_se) == (pct.estimate, pct.mc_se)
    assert got.lo <= pct.lo and got.hi >= pct.hi
    assert (ClusterBootstrap(person, labels, n_boot=250, seed=5).draws([preds == labels], False)
            != boot.draws([preds == labels], False)).any()  # the seed is used
    # the defaults: 10,000 draws, seed 0, and the chunking does not change the draws
    assert ClusterBootstrap(person, labels).n_boot == 10_000
    same = ClusterBootstrap(person, labels, n_boot=250)
    assert (same.draws([preds == labels], False)
            == ClusterBootstrap(person, labels, n_boot=250, seed=0, chunk=7).draws(
                [preds == labels], False)).all()


def test_a_resample_that_leaves_a_half_empty_still_scores():
    """Every name with one val person: the pooled stratum's draws can leave all of a half's
    people undrawn (seen on the demo data: "All-NaN slice encountered" killed the report's
    inference). That half picks the last epoch and has nothing to be scored on."""
    person = labels = np.arange(6).repeat(2)
    preds = np.stack([labels, (labels + 1) % 6, labels])
    sides = halves(person, labels, 0, n_splits=3)
    cf = cross_fitted(preds, labels, np.ones(3, bool), sides, True)
    boot = ClusterBootstrap(person, labels, n_boot=300, seed=0)
    got = boot.cross_fitted(preds, np.ones(3, bool), sides, True, cf)["balanced_acc"]
    # no NaN; all six people right: the resamples say 1.0, the score interval still
    # allows misses in people unlike these
    assert got.estimate == got.hi == 1.0 and 0.0 < got.lo < 1.0


def test_a_pooled_person_counts_as_one_names_recall_as_often_as_drawn():
    """Names with one val person are pooled; in balanced accuracy a drawn pooled person adds
    their own recall once per draw (dropping the undrawn names instead kept about a quarter
    of their variance). With unit weights the score is plain balanced accuracy."""
    from raysys.report.intervals import _score

    # two names scored normally (recall 1/2 and 1), a pool of two people with recall 1 and 0
    # drawn as (2, 0): the pool adds 2 x 1 over 2 names' worth
    num, den = np.array([[1.0, 2.0, 2.0]]), np.array([[2.0, 2.0, 2.0]])
    assert _score(num, den, pool=True)[0] == pytest.approx((0.5 + 1 + 2) / 4)
    assert _score(num, den)[0] == pytest.approx((0.5 + 1 + 1) / 3)  # the ratio view
    # 3 people of names 0-2 alone (recall 1, 0, 1/3), name 3's two people
    clusters = np.array([0, 1, 2, 2, 2, 3, 4])
    labels = np.array([0, 1, 2, 2, 2, 3, 3])
    preds = np.array([0, 9, 2, 9, 9, 3, 9])
    boot = ClusterBootstrap(clusters, labels, n_boot=2000, seed=1)
    assert boot.interval(preds, True).estimate == pytest.approx(
        balanced_accuracy_score(labels, preds))
    draws = boot.draws([preds == labels], True)[0]
    # name 3 is one of its two people (Rao-Wu: 1 of 2), recall 1 or 0; the pool is two draws
    # of the three recalls, each worth 3/2 names: every draw is (name 3 + pool) / 4
    values = {(a + 1.5 * (b + c)) / 4 for a in (0, 1) for b in (1, 0, 1 / 3)
              for c in (1, 0, 1 / 3)}
    assert all(min(abs(d - v) for v in values) < 1e-9 for d in draws)
    assert np.nanstd(draws) > 0.15


def test_degrees_of_freedom_and_the_widening():
    """Satterthwaite's df: names of few people give few; the widening is t(df)/z."""
    from scipy import stats

    from raysys.report.intervals import from_draws, widening

    two_each = ClusterBootstrap(np.arange(20), np.repeat(np.arange(10), 2))
    assert two_each.df(True) == pytest.approx(10.0)  # ten names of 1 df each, alike
    assert two_each.df(False) == pytest.approx(10.0)
    many = ClusterBootstrap(np.arange(500), np.repeat(np.arange(5), 100))
    assert many.df(True) == pytest.approx(5 * 99)
    # unequal names: the 2-person names carry most of balanced accuracy's variance
    mixed = ClusterBootstrap(np.arange(104), np.r_[np.zeros(100), [1, 1, 2, 2]].astype(int))
    assert mixed.df(True) < 3 < 90 < mixed.df(False)
    assert widening(np.inf) == 1.0
    assert widening(10) == pytest.approx(stats.t.ppf(0.975, 10) / stats.norm.ppf(0.975))
    draws = np.random.default_rng(0).normal(0.3, 0.05, 4000)
    wide, plain = from_draws(0.3, draws, 4.0), from_draws(0.3, draws)
    assert (wide.hi - 0.3) / (plain.hi - 0.3) == pytest.approx(widening(4.0))
    assert (0.3 - wide.lo) / (0.3 - plain.lo) == pytest.approx(widening(4.0))


def test_effective_images_run_from_people_to_images_with_the_correlation():
    """Hits independent image by image count as that many images; a person all right or all
    wrong counts as one image; where nothing shows the correlation, every person counts as
    one (the most a rate between 0 and 1 allows)."""
    rng = np.random.default_rng(3)
    person = np.repeat(np.arange(400), 10)
    labels = (np.arange(400) % 4)[person]
    boot = ClusterBootstrap(person, labels, n_boot=10)
    independent = rng.random(len(person)) < 0.3
    assert boot.effective_images(independent, False) == pytest.approx(4000, rel=0.15)
    whole = (rng.random(400) < 0.3)[person]
    assert boot.effective_images(whole, False) == pytest.approx(400, rel=0.05)
    assert boot.effective_images(np.zeros(len(person)), False) == pytest.approx(400)
    # balanced accuracy: each name weighs 1/4, so equal names give the same count
    assert boot.effective_images(whole, True) == pytest.approx(400, rel=0.05)


def test_an_interval_with_no_hit_still_allows_chance():
    """Nobody of 38 val people (19 names, 2 each) named right: every resample scores 0, so the
    percentile interval is [0, 0] and would rule out chance (1/19). A model at chance leaves
    38 people without a hit one time in eight; the score interval's upper bound allows it."""
    person = np.repeat(np.arange(38), 6)
    labels = (np.arange(38) // 2)[person]
    boot = ClusterBootstrap(person, labels, n_boot=500, seed=0)
    wrong = (labels + 1) % 19
    for balanced in (False, True):
        iv = boot.interval(wrong, balanced)
        assert iv.estimate == iv.lo == 0.0 and iv.hi > 1 / 19


def test_a_no_hit_model_against_a_name_guess_floor_is_not_read_as_a_point():
    """20 names of 2 val people (10 per gender); nobody is named right within gender, and the
    gender floor guesses names 0 and 1 for every face of their gender (2/20). Every resample
    scores the model 0 and the floor 0.1, so the paired percentile interval is [-0.1, -0.1]:
    it would call a model that reads only gender (0.1 within gender, no hit among 40 people
    one time in 70) below the floor for sure. The difference takes the model's score interval
    into MOVER; the floor keeps its exact percentile one (name_guess)."""
    person = np.repeat(np.arange(40), 6)
    labels = (np.arange(40) // 2)[person]
    boot = ClusterBootstrap(person, labels, n_boot=300, seed=0)
    floor = labels % 2  # names 0 (one gender) and 1 (the other)
    within = (labels + 2) % 20  # a name of the truth's gender (its parity), never the truth
    assert boot.name_guess(floor) and not boot.name_guess(np.arange(len(labels)) % 20)
    a, b = boot.draws([within == labels, floor == labels], True)
    old = boot.interval_of(-0.1, a - b, True)
    assert old.lo == old.hi == pytest.approx(-0.1)
    got = boot.paired(within, floor, True)
    model = boot.accuracy_interval(0.0, a, within == labels, True)
    assert got.lo == pytest.approx(-0.1) and got.hi == pytest.approx(-0.1 + model.hi)
    assert got.hi > old.hi + 0.05
    # against a reference that reads faces (not a name guess) both sides' score intervals
    # count: the percentile interval's upper end rules out a gap both could close
    noisy = np.where(person % 7 == 0, labels, (labels + 1) % 20)
    assert not boot.name_guess(noisy)
    a, b = boot.draws([within == labels, noisy == labels], True)
    pct = boot.interval_of(-accuracy(labels, noisy, True), a - b, True)
    got = boot.paired(within, noisy, True)
    assert got.lo <= pct.lo and got.hi > pct.hi + 0.02


def test_a_moved_bound_carries_both_sides_monte_carlo_error():
    """Where MOVER's bound is the one kept, its Monte Carlo error comes from the model's and the
    floor's intervals, not the paired draws': the verdict's margin (2 x mc_se) is that bound's."""
    person = np.repeat(np.arange(40), 6)
    labels = (np.arange(40) // 2)[person]
    boot = ClusterBootstrap(person, labels, n_boot=300, seed=0)
    model = np.where(person % 5 == 0, labels, (labels + 1) % 20)
    floor = np.where(person % 7 == 0, labels, (labels + 1) % 20)
    a, b = boot.draws([model == labels, floor == labels], True)
    m_acc, f_acc = accuracy(labels, model, True), accuracy(labels, floor, True)
    pct = boot.interval_of(m_acc - f_acc, a - b, True)
    got = boot.paired(model, floor, True)
    assert got.hi > pct.hi  # MOVER's upper bound is kept
    sides = np.hypot(boot.accuracy_interval(m_acc, a, model == labels, True).mc_se,
                     boot.accuracy_interval(f_acc, b, floor == labels, True).mc_se)
    assert got.mc_se == pytest.approx(max(pct.mc_se, sides)) and got.mc_se > pct.mc_se
