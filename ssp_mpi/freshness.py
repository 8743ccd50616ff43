"""When each cached row was fetched, at O(1) cost for the common reads.

A worker's read must know, for the rows it reads, the oldest server clock at
which they were fetched (the SSP rule) and the oldest worker clock (refresh
once per clock).  Per-row arrays give that exactly but cost two scans and two
writes of ``rows`` integers per read -- as much memory traffic as the rows
themselves for narrow tables.  ``Freshness`` keeps

* a whole-table stamp, set by reads of all rows (no per-row writes);
* per-row arrays, written only by reads of a subset;
* a stamp per row set, valid while no other subset read happened since.

A row's fetch clock is ``max(whole-table stamp, its per-row value)``: clocks
only grow, so the maximum is the later of the two fetches.  Every answer is
exact (tests compare against plain per-row arrays).
"""
import numpy as np

MAX_STAMPS = 256        # row sets remembered (each a small tuple)


class Freshness:
    def __init__(self, n_rows):
        self._all = (-1, -1)                 # (server clock, worker clock) of the last full read
        self._fc = np.full(n_rows, -1, np.int64)
        self._fa = np.full(n_rows, -1, np.int64)
        self._partial = False                # a subset read since the last full read
        self._epoch = 0                      # counts subset reads
        self._stamps = {}                    # row set -> (fc, fa, epoch of its read)

    def oldest(self, rs):
        """(oldest server clock, oldest worker clock) of the rows of ``rs``."""
        afc, afa = self._all
        if rs.is_all:
            if not self._partial:
                return afc, afa
            return max(afc, int(self._fc.min())), max(afa, int(self._fa.min()))
        stamp = self._stamps.get(rs)
        if stamp is not None and stamp[2] == self._epoch:
            fc, fa = stamp[0], stamp[1]
        else:
            fc, fa = int(self._fc[rs.rows].min()), int(self._fa[rs.rows].min())
        return max(afc, fc), max(afa, fa)

    def mark(self, rs, server_clock, worker_clock):
        """``rs`` was fetched after the server clock was ``server_clock``."""
        if rs.is_all:
            self._all = (int(server_clock), int(worker_clock))
            self._partial = False
            self._stamps.clear()
            return
        self._fc[rs.rows] = server_clock
        self._fa[rs.rows] = worker_clock
        self._partial = True
        self._epoch += 1
        if len(self._stamps) >= MAX_STAMPS:
            self._stamps.clear()
        self._stamps[rs] = (int(server_clock), int(worker_clock), self._epoch)

    def per_row(self):
        """Per-row (server clock, worker clock) arrays (new arrays)."""
        afc, afa = self._all
        return np.maximum(self._fc, afc), np.maximum(self._fa, afa)

    def forget(self):
        """Mark every row as never fetched (the next read fetches)."""
        self._all = (-1, -1)
        self._fc.fill(-1)
        self._fa.fill(-1)
        self._partial = False
        self._stamps.clear()
