"""Freshness bookkeeping (stamps + per-row arrays) against plain per-row arrays."""
import numpy as np
import pytest

from ssp_mpi.freshness import Freshness


class Rows:
    """A stand-in for window.RowSet: sorted rows, is_all, hashed by identity."""

    def __init__(self, rows, n):
        self.rows = np.unique(np.asarray(rows, np.int64))
        self.is_all = self.rows.size == n


def naive_oldest(fc, fa, rs):
    return int(fc[rs.rows].min()), int(fa[rs.rows].min())


@pytest.mark.parametrize("seed", range(20))
def test_matches_per_row_arrays(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    sets = [Rows(np.arange(n), n)] + [Rows(rng.choice(n, size=rng.integers(1, n + 1)), n)
                                      for _ in range(5)]
    fresh = Freshness(n)
    fc = np.full(n, -1, np.int64)
    fa = np.full(n, -1, np.int64)
    server = worker = 0
    for _ in range(200):
        server += int(rng.integers(0, 2))
        worker += int(rng.integers(0, 2))
        rs = sets[rng.integers(len(sets))]
        if rng.random() < 0.7:                 # marks also come without a query first
            assert fresh.oldest(rs) == naive_oldest(fc, fa, rs)
        if rng.random() < 0.6:
            fresh.mark(rs, server, worker)
            fc[rs.rows] = server
            fa[rs.rows] = worker
        if rng.random() < 0.02:
            fresh.forget()
            fc[:] = fa[:] = -1
        if rng.random() < 0.05:                # per_row() settles pending marks: not every step
            got_fc, got_fa = fresh.per_row()
            assert np.array_equal(got_fc, fc) and np.array_equal(got_fa, fa)


def test_full_read_writes_no_per_row_array():
    fresh = Freshness(1000)
    fresh.mark(Rows(np.arange(1000), 1000), 7, 3)
    assert np.all(fresh._fc == -1) and fresh.oldest(Rows(np.arange(1000), 1000)) == (7, 3)
    assert fresh.oldest(Rows([5, 9], 1000)) == (7, 3)
