"""Moving scattered rows between the replica and a staging buffer (pure Numba kernels).

A scattered read lands in a contiguous staging buffer and is then placed row
by row into the full-size replica; a scattered push gathers oplog rows into
the buffer.  NumPy's fancy indexing (``dst[rows] = src``, ``np.take``) does
this 1.5-3x slower than a plain loop for narrow rows (it iterates element by
element through its general indexing machinery).  The ``*_reference``
functions are the NumPy oracles.
"""
import numpy as np
from numba import njit, uint64

_M1 = 0x9E3779B97F4A7C15          # odd 64-bit multipliers (golden ratio; splitmix64)
_M2 = 0xBF58476D1CE4E5B9


@njit(cache=True, boundscheck=False)
def fingerprint(rows):
    """Two 64-bit hashes of the multiset of ``rows`` (order-free: a sum and
    an xor of mixed ids), ~0.6 ns an id; Python's ``hash(rows.tobytes())``
    costs ~3 ns a byte."""
    a = uint64(0)
    b = uint64(0)
    for i in range(rows.size):
        x = uint64(rows[i]) * uint64(_M1)
        x ^= x >> uint64(31)
        a += x
        b ^= x * uint64(_M2)
    return a, b


@njit(cache=True, boundscheck=False)
def scatter_rows(dst, rows, src):
    """``dst[rows[i]] = src[i]`` for every i."""
    k = dst.shape[1]
    for i in range(rows.size):
        r = rows[i]
        for j in range(k):
            dst[r, j] = src[i, j]


@njit(cache=True, boundscheck=False)
def gather_rows(src, rows, dst):
    """``dst[i] = src[rows[i]]`` for every i."""
    k = src.shape[1]
    for i in range(rows.size):
        r = rows[i]
        for j in range(k):
            dst[i, j] = src[r, j]


@njit(cache=True, boundscheck=False)
def add_rows(dst, rows, src):
    """``dst[r] += src[r]`` for every r in ``rows`` (distinct rows)."""
    k = dst.shape[1]
    for i in range(rows.size):
        r = rows[i]
        for j in range(k):
            dst[r, j] += src[r, j]


@njit(cache=True, boundscheck=False)
def zero_rows(dst, rows):
    """``dst[r] = 0`` for every r in ``rows``."""
    k = dst.shape[1]
    for i in range(rows.size):
        r = rows[i]
        for j in range(k):
            dst[r, j] = 0


def fingerprint_reference(rows):
    x = np.asarray(rows).astype(np.uint64) * np.uint64(_M1)
    x ^= x >> np.uint64(31)
    return np.add.reduce(x, dtype=np.uint64), np.bitwise_xor.reduce(x * np.uint64(_M2))


def scatter_rows_reference(dst, rows, src):
    dst[rows] = src


def gather_rows_reference(src, rows, dst):
    dst[:] = src[rows]


def add_rows_reference(dst, rows, src):
    dst[rows] += src[rows]


def zero_rows_reference(dst, rows):
    dst[rows] = 0


def warmup():
    rows = np.zeros(1, np.int64)
    fingerprint(rows)
    for dt in (np.float32, np.float64, np.int32, np.int64):
        a, b = np.zeros((2, 2), dt), np.zeros((1, 2), dt)
        scatter_rows(a, rows, b)
        gather_rows(a, rows, b)
        add_rows(a, rows, a)
        zero_rows(a, rows)
