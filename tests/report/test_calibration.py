"""The verdicts' error rates, by simulation through the report's own code (issue 27): under the
null with per-person effects that persist across epochs, the permutation tests claim signal
in at most 5% of runs (plus two Monte Carlo SEs); a model that knows only gender is "any name
signal" but not "beyond gender"; an effect that doubles chance is found."""

import numpy as np

from raysys.report.permutation import PersonPermutation

K, PEOPLE, EPOCHS, RUNS, PERMS = 20, 120, 30, 200, 200
GENDER = np.arange(K) % 2
LIMIT = 0.05 + 2 * np.sqrt(0.05 * 0.95 / RUNS)  # 5% plus two Monte Carlo SEs


def _val(rng):
    person = np.repeat(np.arange(PEOPLE), rng.integers(1, 12, PEOPLE))  # 1-11 images each
    name = rng.integers(0, K, PEOPLE)
    return person, name[person]


def _noise(rng, person, labels, pool):
    """Each person's look persists: 60% of every epoch's guesses are that person's own name
    from `pool(person)`, the rest uniform over `pool`."""
    own = pool(rng, person.max() + 1, labels, person)
    fresh = pool(rng, (EPOCHS, len(person)), labels, person)
    return np.where(rng.random((EPOCHS, len(person))) < 0.6, own[person], fresh)


def _uniform(rng, shape, labels, person):
    return rng.integers(0, K, shape)


def _rate(make, balanced=True, strata=None) -> float:
    rng, claims = np.random.default_rng(0), 0
    for run in range(RUNS):
        person, labels = _val(rng)
        preds = make(rng, person, labels)
        test = PersonPermutation(preds, labels, person, balanced).test(
            strata=strata, permutations=PERMS, seed=run)
        claims += test["p"] <= 0.05
    return claims / RUNS


def test_no_signal_claimed_in_persistent_noise_with_the_epoch_choice_inside():
    assert _rate(lambda rng, p, y: _noise(rng, p, y, _uniform)) <= LIMIT
    assert _rate(lambda rng, p, y: _noise(rng, p, y, _uniform), balanced=False) <= LIMIT


def test_gender_alone_is_signal_but_not_name_signal_beyond_gender():
    def gender_only(rng, person, labels):  # a random name of the face's gender
        return 2 * rng.integers(0, K // 2, (EPOCHS, len(person))) + GENDER[labels]

    assert _rate(gender_only, strata=GENDER) <= LIMIT
    assert _rate(gender_only) >= 0.8  # reading gender beats chance


def test_an_effect_that_doubles_chance_is_found():
    """Each image right with probability 1/K more than chance (balanced accuracy ~2/K)."""
    def doubled(rng, person, labels):
        noise = rng.integers(0, K, (EPOCHS, len(person)))
        return np.where(rng.random((EPOCHS, len(person))) < 1 / K, labels, noise)

    assert _rate(doubled) >= 0.8
