"""The control board: one small int64 window on the first server.

Layout (``W`` = number of workers)::

    [0, W)        clock published by each worker (the server clock is the min)
    [W, 2W)       strict-BSP "my reads of clock c are done" markers
    [2W, 3W)      checkpoint requests: (generation << 32) | clock at which the
                  worker saw the request, or DONE once the worker's run ended
    [3W, 3W+F)    flags raised by any rank (FLAG_REQUEST: (generation << 2) | kind)

Writes are ``Accumulate`` (REPLACE or MAX) and reads ``Get_accumulate``
(NO_OP), so every element is read and written atomically.
"""
import numpy as np
from . import mpienv

mpienv.prepare()          # before MPI_Init: see ssp_mpi/mpienv.py
from mpi4py import MPI  # noqa: E402

from .window import ShardWindow

FLAG_REQUEST = 0        # (generation << 2) | signals.CHECKPOINT / signals.STOP
N_FLAGS = 4
DONE = -1               # a worker whose run has ended


class Board:
    def __init__(self, layout, *, comm, clock=0):
        self.n_workers = W = layout.n_workers
        self.size = 3 * W + N_FLAGS
        self.home = layout.servers[0]          # world rank holding the board
        shape = (self.size,) if comm.rank == self.home else (0,)
        self.window = ShardWindow(shape, np.int64, comm=comm)
        if comm.rank == self.home:
            with self.window.local_epoch(self.home) as mem:
                mem[:] = 0
                mem[:2 * W] = clock
        self._buf = np.zeros(self.size, np.int64)
        self._one = np.zeros(1, np.int64)
        # messages built once (a clock posts one write and one read)
        self._one_msg = [self._one, 1, MPI.INT64_T]
        self._buf_msg = [self._buf, self.size, MPI.INT64_T]
        self._all_target = (0, self.size, MPI.INT64_T)
        self._targets = [(i, 1, MPI.INT64_T) for i in range(self.size)]

    def _post_put(self, index, value, op):
        """Post an atomic write of one element (complete at the next ``Flush``)."""
        self._one[0] = value
        self.window.win.Accumulate(self._one_msg, self.home, self._targets[index], op)

    def _put(self, index, value, op):
        self._post_put(index, value, op)
        self.window.win.Flush(self.home)

    def read(self):
        """Atomic snapshot of the whole board, as a list of Python ints (for
        a board of a few elements cheaper to make and to index than an
        array); also completes any ``_post_put`` posted before it (one
        ``Flush``)."""
        win = self.window.win
        win.Get_accumulate(self._buf_msg, self._buf_msg, self.home, self._all_target, MPI.NO_OP)
        win.Flush(self.home)
        return self._buf.tolist()

    def server_clock(self, snapshot=None):
        b = self.read() if snapshot is None else snapshot
        return min(b[:self.n_workers])

    def reads_done(self, snapshot=None):
        b = self.read() if snapshot is None else snapshot
        return min(b[self.n_workers:2 * self.n_workers])

    def requests_seen(self, snapshot=None):
        b = self.read() if snapshot is None else snapshot
        return np.array(b[2 * self.n_workers:3 * self.n_workers], np.int64)

    def flag(self, which, snapshot=None):
        b = self.read() if snapshot is None else snapshot
        return b[3 * self.n_workers + which]

    def publish_clock(self, worker, clock):
        """Publish ``clock`` as ``worker``'s and return a snapshot of the
        board taken after it, in the same round trip (one ``Flush``: the
        replace and the read of the same element are ordered, MPI's default
        accumulate ordering)."""
        self._post_put(worker, clock, MPI.REPLACE)
        return self.read()

    def publish_reads_done(self, worker, clock):
        self._put(self.n_workers + worker, clock, MPI.REPLACE)

    def publish_seen(self, worker, value):
        self._put(2 * self.n_workers + worker, value, MPI.REPLACE)

    def raise_flag(self, which, value=1):
        self._put(3 * self.n_workers + which, value, MPI.MAX)

    def free(self):
        self.window.free()
