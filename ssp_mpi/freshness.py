"""When each cached row was fetched, at O(1) cost for the common reads.

A worker's read must know, for the rows it reads, the oldest server clock at
which they were fetched (the SSP rule) and the oldest worker clock (refresh
once per clock).  Per-row arrays give that exactly but cost two scans and two
writes of ``rows`` integers per read -- as much memory traffic as the rows
themselves for narrow tables.  ``Freshness`` keeps

* a whole-table stamp, set by reads of all rows (no per-row writes);
* the stamp of the last read of a subset, written into per-row arrays only
  when a read of another subset comes (repeated reads of one row set, the
  common case, write nothing per row).

A row's fetch clock is ``max(whole-table stamp, its per-row value)``: clocks
only grow, so the maximum is the later of the two fetches.  Every answer is
exact (tests compare against plain per-row arrays).
"""
import numpy as np


class Freshness:
    def __init__(self, n_rows):
        self._all = (-1, -1)                 # (server clock, worker clock) of the last full read
        self.whole = self._all               # the same while no subset was read since, else None:
                                             # then it answers a read of all rows by itself
        self._fc = np.full(n_rows, -1, np.int64)
        self._fa = np.full(n_rows, -1, np.int64)
        self._pending = None                 # (row set, fc, fa): the last subset read,
                                             # not yet written to the per-row arrays

    def _settle(self):
        if self._pending is not None:
            rs, fc, fa = self._pending
            self._fc[rs.rows] = fc
            self._fa[rs.rows] = fa
            self._pending = None

    def oldest(self, rs):
        """(oldest server clock, oldest worker clock) of the rows of ``rs``."""
        if rs.is_all and self.whole is not None:
            return self.whole
        afc, afa = self._all
        if rs.is_all:
            self._settle()
            return max(afc, int(self._fc.min())), max(afa, int(self._fa.min()))
        p = self._pending
        if p is not None and p[0] is rs:     # the last read was of these rows: exact
            return max(afc, p[1]), max(afa, p[2])
        self._settle()
        return max(afc, int(self._fc[rs.rows].min())), max(afa, int(self._fa[rs.rows].min()))

    def mark(self, rs, server_clock, worker_clock):
        """``rs`` was fetched after the server clock was ``server_clock``
        (clocks are Python ints)."""
        if rs.is_all:
            self._all = self.whole = (server_clock, worker_clock)
            self._pending = None             # older than the new whole-table stamp
            return
        if self._pending is not None and self._pending[0] is not rs:
            self._settle()
        self._pending = (rs, server_clock, worker_clock)
        self.whole = None

    def per_row(self):
        """Per-row (server clock, worker clock) arrays (new arrays)."""
        self._settle()
        afc, afa = self._all
        return np.maximum(self._fc, afc), np.maximum(self._fa, afa)

    def forget(self):
        """Mark every row as never fetched (the next read fetches)."""
        self._all = self.whole = (-1, -1)
        self._fc.fill(-1)
        self._fa.fill(-1)
        self._pending = None
