"""Oplog helpers used by the parameter server's push (pure Numba kernels).

``dirty_rows(delta)`` lists the rows of a 2-D oplog holding any non-zero
increment.  NumPy's ``delta.any(axis=1)`` reduces along the short axis
element by element and allocates; this stops at a row's first non-zero.
``dirty_rows_reference`` is the NumPy oracle.
"""
import numpy as np
from numba import njit


@njit(cache=True)
def dirty_rows(delta):
    n, k = delta.shape
    out = np.empty(n, np.int64)
    m = 0
    for i in range(n):
        for j in range(k):
            if delta[i, j] != 0:
                out[m] = i
                m += 1
                break
    return out[:m]


def dirty_rows_reference(delta):
    return np.flatnonzero(np.asarray(delta).any(axis=1)).astype(np.int64)


def warmup():
    for dt in (np.float32, np.float64, np.int32, np.int64):
        dirty_rows(np.zeros((2, 2), dt))
