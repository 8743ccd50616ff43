"""The worker side: clocks, the SSP wait, and collectives among workers."""
import logging
import time
from time import perf_counter

import numpy as np
from . import mpienv

mpienv.prepare()          # before MPI_Init: see ssp_mpi/mpienv.py
from mpi4py import MPI  # noqa: E402

from . import mpienv
from .cut import WorkerCuts
from .stats import ClockStats, combine
from .table import WorkerTable

log = logging.getLogger("ssp_mpi.worker")


class Worker:
    """What a worker function receives.

    index / n_workers   this worker's index among the workers
    comm                a communicator of the workers only (a duplicate)
    clock_value         the worker clock ``c`` (0 before the first ``clock()``)
    is_leader           True on worker 0, which prints progress and writes outputs
    known_server_clock  the newest server clock this worker has seen (at its
                        last ``clock()``, from the board snapshot taken in
                        the same round trip, or wait)
    rng                 a NumPy Generator seeded from (seed, index)
    stats               per-clock compute / comm / wait seconds and bytes
    """

    def __init__(self, session, comm):
        self.layout = session.layout
        self.config = session.config
        self.index = self.layout.worker_index
        self.n_workers = self.layout.n_workers
        self.comm = comm
        self.is_leader = self.index == 0
        self.clock_value = session.start_clock
        self.resumed = session.resume      # a checkpoint.Checkpoint, or None
        self.stats = ClockStats()
        self.rng = np.random.default_rng([int(self.config.seed), self.index])
        self._board = session.board
        self._straggle = float(self.config.straggle.get(self.index, 1.0))
        self._strict = self.config.strict_bsp
        self._tables = {name: WorkerTable(session.specs[name], win, self)
                        for name, win in session.windows.items()}
        self._table_list = list(self._tables.values())
        self._strict_hold_needed = self._strict and any(
            t.spec.staleness == 0 for t in self._table_list)
        self.known_server_clock = session.start_clock
        self.read_log = None          # set to a list to record every read (tests)
        self.dirty_tables = []        # tables whose oplog may hold increments (they add themselves)
        self.cuts = WorkerCuts(session.cutter, self, self._board)

    def set_state(self, fn):
        """``fn() -> {name: array or number}``: this worker's local state
        (e.g. RNG state, topic assignments, data cursor), saved in every
        checkpoint as of the cut's clock boundary.  On resume it comes back
        through ``worker.resumed.worker_state(i)`` / ``worker_states()``."""
        self.cuts.state_fn = fn

    # -- tables -----------------------------------------------------------
    def table(self, name):
        try:
            return self._tables[name]
        except KeyError:
            raise KeyError(f"no table named {name!r}; tables: {sorted(self._tables)}") from None

    @property
    def tables(self):
        return dict(self._tables)

    # -- the SSP clock ----------------------------------------------------
    def server_clock(self):
        with self.stats.comm():
            self.known_server_clock = self._board.server_clock()
        return self.known_server_clock

    def _saw(self, snapshot):
        """Remember the server clock a board snapshot shows."""
        self.known_server_clock = max(self.known_server_clock,
                                      self._board.server_clock(snapshot))
        return self.known_server_clock

    def wait_server_clock(self, target):
        """Block (sleeping) until the server clock is >= ``target``."""
        if self.known_server_clock >= target:
            return self.server_clock()
        return self._saw(self._wait_until(lambda b: self._board.server_clock(b) >= target))

    def _wait_until(self, done):
        """Sleep-poll the board until ``done(snapshot)``.  While waiting, the
        worker also answers checkpoint requests (it may be the one others
        wait for), naming the next clock boundary it can stop at."""
        with self.stats.comm():              # the common case: no wait at all
            snap = self._board.read()
        if done(snap):
            return snap
        backoff = mpienv.Backoff()
        with self.stats.wait():
            while True:
                snap = self._board.read()
                if done(snap):
                    return snap
                self.cuts.note(snap, self.clock_value + 1)
                backoff.sleep()

    def record_read(self, table, rowset, clock):
        """Log a read (tests set ``read_log`` to a list; tables call this
        only then)."""
        rows = rowset.rows
        self.read_log.append((table.name, clock, table.freshness.oldest(rowset)[0],
                              table.replica[rows].copy(), rows.copy()))

    def _straggler_sleep(self):
        time.sleep((self._straggle - 1.0) * self.stats.compute_so_far())

    def _strict_hold(self):
        """Strict BSP: no worker pushes clock ``c`` before all finished reading it."""
        c1 = self.clock_value + 1
        with self.stats.comm():
            self._board.publish_reads_done(self.index, c1)
        self._wait_until(lambda b: self._board.reads_done(b) >= c1)

    def clock(self):
        """End clock ``c``: push the oplog, wait until it is complete at the
        servers, then publish ``c + 1``.  Returns the clock's stats record."""
        if self._straggle > 1.0:
            self._straggler_sleep()
        if self._strict_hold_needed:
            self._strict_hold()
        t0 = perf_counter()
        sent = 0
        pushed = []
        for t in self.dirty_tables:
            n = t.push()                    # 0: nothing to push, the oplog is clean
            if n:
                sent += n
                pushed.append(t)
        self.dirty_tables.clear()           # clean, or once complete_push ran
        for t in pushed:
            t.complete_push()
        self.clock_value += 1
        snap = self._board.publish_clock(self.index, self.clock_value)
        self._saw(snap)
        record = self.stats.end_clock(self.clock_value - 1, comm_since=t0, out_bytes=sent)
        self.cuts.boundary(snap)      # checkpoint / stop at this boundary if due
        return record

    # -- collectives among workers (they sleep while they wait, and answer
    #    checkpoint requests meanwhile: see WorkerCuts.in_collective) -------
    def barrier(self):
        with self.stats.wait():
            mpienv.barrier(self.comm, poll=self.cuts.in_collective)

    def allreduce(self, value, op=MPI.SUM):
        """Element-wise reduction of a number or array over all workers."""
        arr = np.ascontiguousarray(value)
        out = np.empty_like(arr)
        with self.stats.comm():
            mpienv.wait(self.comm.Iallreduce(arr, out, op=op), poll=self.cuts.in_collective)
        return out if np.ndim(value) else out.item()

    def gather(self, obj, root=0):
        """Python objects to worker ``root`` (a list there, None elsewhere)."""
        self.barrier()
        with self.stats.comm():
            return self.comm.gather(obj, root=root)

    def allgather(self, obj):
        self.barrier()
        with self.stats.comm():
            return self.comm.allgather(obj)

    def bcast(self, obj, root=0):
        self.barrier()
        with self.stats.comm():
            return self.comm.bcast(obj, root=root)

    def summary(self):
        """Collective over workers: aggregated compute/comm/wait and bytes."""
        return combine(self.allgather(self.stats.totals()))

    def free(self):
        for t in self._tables.values():
            t.free()
