"""Random numbers that are a pure function of (run seed, epoch, row, draw).

Crop, flip, jitter, grayscale and erasing read their randomness from here, so an image gets the
same augmentation whichever decode actor or training rank it lands on, and a resumed run draws
exactly what an uninterrupted one would have. A 32-bit integer hash (Wellons' lowbias32) in
numpy uint32 arithmetic, where overflow wraps by definition: the same bits on every machine.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint32(0x9E3779B9)


def hash32(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        return x ^ (x >> np.uint32(16))


def row_keys(seed: int, epoch: int | np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One uint32 key per row, chaining the hash through seed, epoch and row id."""
    k = hash32(np.uint32(seed & 0xFFFFFFFF))
    k = hash32(k ^ np.asarray(epoch, dtype=np.uint32))
    return hash32(k ^ np.asarray(rows, dtype=np.uint64).astype(np.uint32))


def keyed_uniform(keys: np.ndarray, n: int, stream: int = 0) -> np.ndarray:
    """(len(keys), n) float64 uniforms in [0, 1), 24 bits each. `stream` separates consumers
    (decode actor, batched augmentation) that share a key."""
    keys = np.asarray(keys, dtype=np.uint32)
    with np.errstate(over="ignore"):
        base = hash32(keys ^ hash32(np.uint32(stream + 1)))
        draws = np.arange(1, n + 1, dtype=np.uint32) * _GOLDEN
        bits = hash32(base[:, None] + draws[None, :])
    return (bits >> np.uint32(8)).astype(np.float64) / float(1 << 24)


def derived_seed(*parts: int) -> int:
    """A seed in [0, 2^31) for the global RNGs from (run seed, rank, epoch, ...)."""
    k = np.uint32(0)
    for p in parts:
        k = hash32(k ^ np.uint32(p & 0xFFFFFFFF))
    return int(k) & 0x7FFFFFFF
