"""Random numbers as a pure function of (seed, epoch, row, draw): checked against an independent
pure-Python lowbias32 and against golden values, since a change would silently change every
augmentation of every run."""

import numpy as np

from raysys.keyed_random import derived_seed, hash32, keyed_uniform, row_keys


def lowbias32(x: int) -> int:
    """Wellons' lowbias32 in Python integers, masked to 32 bits by hand."""
    m = 0xFFFFFFFF
    x &= m
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def test_hash32_matches_an_independent_implementation():
    xs = [0, 1, 2, 12345, 0x7FFFFFFF, 0xFFFFFFFF, 0x9E3779B9]
    assert hash32(np.array(xs, np.uint64).astype(np.uint32)).tolist() == [lowbias32(x) for x in xs]


def test_row_keys_chain_seed_epoch_and_row():
    seed, epoch, rows = 7, 3, [0, 11, 2**33 + 5]  # rows wrap to 32 bits
    want = [lowbias32(lowbias32(lowbias32(seed) ^ epoch) ^ (r & 0xFFFFFFFF)) for r in rows]
    assert row_keys(seed, epoch, np.array(rows, np.uint64)).tolist() == want


def test_uniforms_are_golden_bounded_and_independent():
    assert float(keyed_uniform(row_keys(7, 3, [11]), 1, stream=2)[0, 0]) == 0.7269261479377747
    assert derived_seed(1, 2) == 1258283920
    u = keyed_uniform(row_keys(0, 1, np.arange(20000)), 2)
    assert u.shape == (20000, 2) and (u >= 0).all() and (u < 1).all()
    assert abs(u.mean() - 0.5) < 0.01 and abs(np.corrcoef(u.T)[0, 1]) < 0.03
    one = row_keys(0, 1, [5])
    assert not np.array_equal(keyed_uniform(row_keys(0, 2, [5]), 4), keyed_uniform(one, 4))
    assert not np.array_equal(keyed_uniform(one, 4, stream=1), keyed_uniform(one, 4, stream=2))
    assert derived_seed(1, 2) != derived_seed(2, 1) and 0 <= derived_seed(5) < 2**31


def test_plain_python_inputs_hash_as_uint32():
    """Lists of Python ints (int64 to numpy) must wrap at 32 bits like uint32 arrays."""
    xs = [1, 12345, 0xFFFFFFFF]
    assert hash32(xs).tolist() == [lowbias32(x) for x in xs]
    keys = row_keys(7, 3, [11])
    assert np.array_equal(keyed_uniform(keys, 3), keyed_uniform(keys, 3, stream=0))
