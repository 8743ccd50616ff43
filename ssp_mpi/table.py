"""Tables: specification, and the worker's view (process cache + oplog).

A worker's ``WorkerTable`` holds

* ``replica`` -- a full-size ``rows x cols`` array: the cached values of the
  rows it reads, always including all of its own increments (read-my-writes);
* ``delta`` -- the oplog: the same shape, the increments not pushed yet;
* when each row was fetched: the server clock before the read and the
  worker clock of the read (``ssp_mpi.freshness``; ``fetch_clock`` shows it
  per row).

Kernels receive ``replica`` and ``delta`` as plain NumPy arrays and add every
increment to both (``replica[i] += d; delta[i] += d``); they never touch MPI.
"""
import ctypes
import logging
import os
from dataclasses import dataclass
from time import perf_counter

import numpy as np
from . import mpienv

mpienv.prepare()          # before MPI_Init: see ssp_mpi/mpienv.py
from mpi4py import MPI  # noqa: E402

from . import partition
from kernels.oplog import dirty_rows
from kernels.rows import add_rows, fingerprint, gather_rows, scatter_rows, zero_rows
from .config import DTYPES, parse_staleness
from .freshness import Freshness
from .window import RowSet

NO_OP, SUM = MPI.NO_OP, MPI.SUM
log = logging.getLogger("ssp_mpi.table")

REFRESH_MODES = ("clock", "lazy")
ALIGN = 64          # replica and oplog rows start on a cache line (kernels run faster)


def aligned_zeros(shape, dtype, align=ALIGN):
    """A zeroed C-contiguous array whose data starts on an ``align``-byte boundary."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(nbytes + align, np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes].view(dtype).reshape(shape)


# Above this many bytes a scattered transfer goes server by server through a
# staging buffer of one shard's size, instead of all servers at once.
STAGE_BYTES = int(os.environ.get("SSP_MPI_STAGE_BYTES", 64 << 20))
# Pushing a zero row costs its bytes; finding the dirty rows costs a scan of
# the whole oplog (a memory pass as long as the push itself for narrow rows).
# Once a push of a whole table finds at least DENSE_PUSH of its rows dirty,
# the next RESCAN_EVERY - 1 pushes send every row without scanning.
DENSE_PUSH = 0.5
RESCAN_EVERY = 16
# Timed reads of each way a row set can be read, before the faster is kept
# (``WorkerTable._reader``; 0: the covering rule alone decides).
COVER_TRIALS = int(os.environ.get("SSP_MPI_COVER_TRIALS", 5))


def faster_variant(times):
    """Index of the variant whose fastest read was fastest (other load only
    slows a read down, so the minimum is the least noisy figure); the
    rule's own choice, 0, on a tie."""
    best = [min(t) for t in times]
    return min(range(len(best)), key=lambda i: (best[i], i))


@dataclass
class TableSpec:
    """A named ``rows x cols`` table.

    staleness: an int >= 0 or ``math.inf`` (also the string ``"inf"``).
    init:      None (zeros), a scalar, or a pure function ``init(row_ids) ->
               array (len(row_ids), cols)`` evaluated by each server for its
               own rows; it must not depend on the rank.
    refresh:   "clock" (default): a read refetches a row at most once per
               worker clock, waiting only as long as the SSP rule demands;
               "lazy": refetch only when the rule demands (Bosen's cache; at
               staleness inf a row is then fetched once).
    """
    name: str
    rows: int
    cols: int
    dtype: str = "float32"
    staleness: object = 0
    init: object = None
    refresh: str = "clock"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("a table needs a non-empty name")
        if int(self.rows) < 1 or int(self.cols) < 1:
            raise ValueError(f"table {self.name!r}: rows and cols must be >= 1, got {self.rows} x {self.cols}")
        self.rows, self.cols = int(self.rows), int(self.cols)
        self.dtype = np.dtype(self.dtype).name
        if self.dtype not in DTYPES:
            raise TypeError(f"table {self.name!r}: dtype {self.dtype} unsupported; use one of {sorted(DTYPES)}")
        self.staleness = parse_staleness(self.staleness)
        if self.refresh not in REFRESH_MODES:
            raise ValueError(f"table {self.name!r}: refresh must be one of {REFRESH_MODES}")

    def describe(self):
        """The part every rank must agree on (``init`` is code, not compared)."""
        return {"name": self.name, "rows": self.rows, "cols": self.cols, "dtype": self.dtype,
                "staleness": str(self.staleness), "refresh": self.refresh}

    def initial_rows(self, row_ids):
        """Initial values of ``row_ids`` (used by servers)."""
        n = len(row_ids)
        if self.init is None:
            return np.zeros((n, self.cols), self.dtype)
        if np.isscalar(self.init):
            return np.full((n, self.cols), self.init, self.dtype)
        vals = np.asarray(self.init(np.asarray(row_ids, np.int64)))
        if vals.shape != (n, self.cols):
            raise ValueError(f"table {self.name!r}: init returned shape {vals.shape}, "
                             f"expected {(n, self.cols)}")
        return vals.astype(self.dtype, copy=False)


class WorkerTable:
    """A worker's process cache and oplog for one table."""

    def __init__(self, spec, window, worker):
        self.spec = spec
        self.name = spec.name
        self._window = window
        self._w = worker
        self._servers = worker.layout.servers
        n, k = spec.rows, spec.cols
        self.replica = aligned_zeros((n, k), spec.dtype)
        self._delta = aligned_zeros((n, k), spec.dtype)
        # clearing the oplog: C memset at a cached address (a large block
        # twice as fast as NumPy's fill; ``ndarray.ctypes`` costs ~5 us a call)
        self._delta_addr = self._delta.ctypes.data
        self._row_bytes = k * self._delta.itemsize
        self._stage = np.zeros((0, k), spec.dtype)
        self.freshness = Freshness(n)
        self._rowsets = {}
        self._readers = {}                   # row set -> its _mover (read)
        self._pushers = {}                   # row set -> its _mover (push)
        self._all = self._rowset(None)
        self._default = self._all
        self._delta_clean = True
        self._pending = None
        self._unscanned_pushes = 0
        self._staleness = spec.staleness
        self._refresh_each_clock = spec.refresh == "clock"

    @property
    def fetch_clock(self):
        """Per row, the server clock its cached value is at least as new as
        (-1: never fetched).  A new array: for inspection and tests."""
        return self.freshness.per_row()[0]

    def invalidate(self):
        """Forget when rows were fetched: the next read of any row fetches it."""
        self.freshness.forget()

    @property
    def delta(self):
        """The oplog.  Whoever takes it may add increments, so taking it
        marks the oplog as possibly non-empty (read-my-writes stays exact)."""
        if self._delta_clean:
            self._dirtied()
        return self._delta

    def _dirtied(self):
        """The oplog may hold increments from now on: the worker's next
        ``clock()`` pushes this table (it pushes only the tables listed)."""
        self._delta_clean = False
        self._w.dirty_tables.append(self)

    def _staging(self, rows):
        if self._stage.shape[0] < rows:
            self._stage = np.zeros((rows, self.spec.cols), self.spec.dtype)
            self._readers.clear()           # their views are of the old stage
            self._pushers.clear()
        return self._stage

    def _reader(self, rs):
        """The function that reads ``rs`` into the replica.  When the row
        set can move its rows two ways (``RowSet.read_variants``: cover a
        server's range or not), its first ``2 * COVER_TRIALS`` reads
        alternate between them, each timed, and then the one with the
        faster best read is kept for good (``rs.use_read``): the machine,
        not a fixed rule, decides."""
        if len(rs.read_variants) == 1 or rs.read_chosen or COVER_TRIALS <= 0:
            return self._mover(rs.read_transfers, push=False)
        movers = [self._mover(v, push=False) for v in rs.read_variants]
        times = [[] for _ in movers]

        def trial():
            i = (len(times[0]) + len(times[1])) % 2
            rs.use_read(i)                  # _fetch re-applies increments over these rows
            t0 = perf_counter()
            movers[i]()
            times[i].append(perf_counter() - t0)
            if len(times[1]) >= COVER_TRIALS:
                best = faster_variant(times)
                rs.use_read(best)
                rs.read_chosen = True
                self._readers[rs] = movers[best]
                log.debug("table %r: %d rows read as %d (best of %d reads each: %s us)", self.name,
                          rs.rows.size, sum(t.count for t in rs.read_transfers), COVER_TRIALS,
                          " / ".join(f"{min(t) * 1e6:.0f}" for t in times))
        return trial

    def _mover(self, transfers, push):
        """A function that moves ``transfers`` (of one row set) from the
        shards into the replica (a read) or from the oplog into the shards
        (a push; the caller flushes).  Messages, targets and staging views
        are built here, once per row set, so that a call only posts the
        transfers: for a read of one block, one ``Rget_accumulate`` and its
        ``Wait`` and nothing else."""
        win = self._window.win
        flush, flush_all = win.Flush, win.Flush_all
        if push:
            delta, acc = self._delta, win.Accumulate
            batches = [self._post_list(group, delta) for group in self._groups(transfers)]
            several = len(batches) > 1          # then the stage is reused: flush between

            def push_rows():
                for ops, staged, one in batches:
                    for rows, stage in staged:
                        gather_rows(delta, rows, stage)
                    for msg, rank, target in ops:
                        acc(msg, rank, target, SUM)
                    if several:
                        flush(one)
            return push_rows
        # A read of one server's rows waits for its own request, not for a
        # Flush: the request of an Rget_accumulate completes once the data
        # is here, and waiting for it costs ~0.25 us less than a Flush
        # (MPICH, shared memory), a sixth of a 64 KB read.
        replica, get, rget = self.replica, win.Get_accumulate, win.Rget_accumulate
        batches = [self._post_list(group, replica) for group in self._groups(transfers)]
        if len(batches) == 1 and len(batches[0][0]) == 1 and not batches[0][1]:
            (msg, rank, target), = batches[0][0]

            def read_block():
                rget(msg, msg, rank, target, NO_OP).Wait()
            return read_block

        def read_rows():
            for ops, staged, one in batches:
                if one is None:
                    for msg, rank, target in ops:
                        get(msg, msg, rank, target, NO_OP)
                    flush_all()
                else:
                    for msg, rank, target in ops:      # one
                        rget(msg, msg, rank, target, NO_OP).Wait()
                for rows, stage in staged:
                    scatter_rows(replica, rows, stage)
        return read_rows

    def _groups(self, transfers):
        """``[[(transfer, stage view or None)]]``: one group when the staged
        transfers fit in ``STAGE_BYTES`` together, else one per transfer."""
        staged = [t for t in transfers if not t.direct]
        if sum(t.nbytes for t in staged) <= STAGE_BYTES:
            stage = self._staging(sum(t.count for t in staged))
            out, at = [], 0
            for t in transfers:
                if t.direct:
                    out.append((t, None))
                else:
                    out.append((t, stage[at:at + t.count]))
                    at += t.count
            return [out]
        stage = self._staging(max(t.count for t in staged))
        return [[(t, None if t.direct else stage[:t.count])] for t in transfers]

    def _post_list(self, group, array):
        ops, staged = [], []
        for t, stage in group:
            buf = array[t.rows] if t.direct else stage
            ops.append((t.spec(buf), self._servers[t.server], t.target()))
            if not t.direct:
                staged.append((t.global_rows, stage))
        one = self._servers[group[0][0].server] if len(group) == 1 else None
        return ops, staged, one

    # -- row sets ---------------------------------------------------------
    @staticmethod
    def _key(rows):
        return (rows.size,) + fingerprint(rows)

    def _rowset(self, rows):
        if rows is None:
            key = None
        elif isinstance(rows, RowSet):
            return rows
        else:
            rows = np.ascontiguousarray(rows, np.int64).ravel()
            key = self._key(rows)
        rs = self._rowsets.get(key)
        if rs is None:
            if len(self._rowsets) > 64:         # bound the cache of datatypes
                for old_key in [k for k, v in self._rowsets.items()
                                if k is not None and v is not self._default][:32]:
                    old = self._rowsets.pop(old_key)
                    self._readers.pop(old, None)
                    self._pushers.pop(old, None)
                    old.free()
            ids = np.arange(self.spec.rows) if rows is None else rows
            try:
                rs = RowSet(ids, self.spec.rows, self.spec.cols, self.spec.dtype,
                            len(self._servers))
            except IndexError as e:
                raise IndexError(f"table {self.name!r}: {e}") from None
            self._rowsets[key] = rs
        return rs

    def use_rows(self, rows):
        """Declare the rows this worker reads (``get()`` with no argument)."""
        self._default = self._rowset(rows)
        return self._default

    # -- SSP read ----------------------------------------------------------
    def get(self, rows=None):
        """Rows ``rows`` (default: the declared rows, else all) made valid
        under the SSP rule; returns the full replica array (index it by
        global row id).  May wait for slower workers; never busy-spins."""
        rs = self._default if rows is None else self._rowset(rows)
        if not rs.total_count:
            return self.replica
        w = self._w
        c = w.clock_value
        need = c - self._staleness            # -inf at staleness inf
        fr = self.freshness
        oldest, last = fr.whole if rs.is_all and fr.whole is not None else fr.oldest(rs)
        if oldest < 0 or oldest < need or (self._refresh_each_clock and last < c):
            # Stamp the rows with a server clock seen before the read and >=
            # need: the newest this worker knows if it will do (an SSP read
            # that needs no wait costs no board round trip), else wait for one.
            sc = w.known_server_clock
            self._fetch(rs, sc if sc >= need else w.wait_server_clock(need))
        if w.read_log is not None:
            w.record_read(self, rs, c)
        return self.replica

    def get_final(self):
        """All rows, once every worker has pushed every clock up to this
        worker's clock (call after the last ``clock()`` to read the result)."""
        server_clock = self._w.wait_server_clock(self._w.clock_value)
        self._fetch(self._all, server_clock)
        return self.replica

    def _fetch(self, rs, server_clock):
        """Bulk-read ``rs`` into the replica; ``server_clock`` was observed
        *before* the read, so the data holds every update of clocks below it.
        Reads use ``Get_accumulate(NO_OP)``: element-wise atomic against the
        accumulates other workers may be landing on the same rows.  The
        copies into place count as communication."""
        t0 = perf_counter()
        read = self._readers.get(rs)
        if read is None:
            read = self._readers[rs] = self._reader(rs)
        read()
        if not self._delta_clean:        # read-my-writes: re-apply unpushed increments
            for t in rs.read_transfers:
                if t.direct:
                    self.replica[t.rows] += self._delta[t.rows]
                else:
                    add_rows(self.replica, t.global_rows, self._delta)
        w = self._w
        w.stats.add_comm(perf_counter() - t0, rs.read_nbytes)
        self.freshness.mark(rs, server_clock, w.clock_value)

    # -- increments --------------------------------------------------------
    def inc(self, rows, values, cols=None):
        """Add ``values`` to rows ``rows`` (whole rows) or, with ``cols``, to
        the elements ``(rows[i], cols[i])``.  Repeated indices add up."""
        rows = np.asarray(rows, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= self.spec.rows):
            raise IndexError(f"table {self.name!r}: row ids must be in 0..{self.spec.rows - 1}")
        vals = np.asarray(values)
        if np.issubdtype(vals.dtype, np.floating) and np.issubdtype(self.replica.dtype, np.integer):
            raise TypeError(f"table {self.name!r} holds {self.spec.dtype}: increments must be integers")
        vals = vals.astype(self.replica.dtype, copy=False)
        index = rows if cols is None else (rows, np.asarray(cols, np.int64))
        np.add.at(self.replica, index, vals)
        np.add.at(self._delta, index, vals)
        if self._delta_clean:
            self._dirtied()

    # -- push (called by Worker.clock) ------------------------------------
    def push(self):
        """Accumulate the oplog's non-zero rows into the shards; returns bytes
        sent (0: nothing to push, the oplog is clean now).  The worker then
        calls ``complete_push`` on every table that sent something."""
        if self._delta_clean:
            return 0
        delta = self._delta
        rs = self._default
        if rs.is_all and self._unscanned_pushes > 0:
            self._unscanned_pushes -= 1
            return self._send(rs, temporary=False)
        dirty = dirty_rows(delta)
        if rs.is_all and dirty.size >= DENSE_PUSH * rs.rows.size:
            self._unscanned_pushes = RESCAN_EVERY - 1
        if not rs.is_all and dirty.size == rs.rows.size and np.array_equal(dirty, rs.rows):
            dirty = rs.rows
        if dirty.size == 0:
            self._delta_clean = True
            return 0
        if dirty.size == rs.rows.size and (rs.is_all or dirty is rs.rows):
            push_set, temporary = rs, False
        else:
            push_set = self._rowsets.get(self._key(dirty))    # a row set read before
            temporary = push_set is None
            if temporary:
                push_set = self._rowset_uncached(dirty)
        return self._send(push_set, temporary)

    def _send(self, push_set, temporary):
        if temporary:
            self._mover(push_set.transfers, push=True)()
        else:
            push = self._pushers.get(push_set)
            if push is None:
                push = self._pushers[push_set] = self._mover(push_set.transfers, push=True)
            push()
        self._pending = (push_set, temporary)
        return push_set.nbytes

    def _rowset_uncached(self, rows):
        return RowSet(rows, self.spec.rows, self.spec.cols, self.spec.dtype, len(self._servers))

    def complete_push(self):
        """Wait until the pushed increments are at the servers (no flush when
        nothing was pushed), then clear the oplog."""
        if self._pending is None:
            return
        self._window.win.Flush_all()
        push_set, temporary = self._pending
        if push_set.is_all:
            ctypes.memset(self._delta_addr, 0, self._delta.nbytes)
        else:
            for t in push_set.transfers:
                if t.direct:
                    ctypes.memset(self._delta_addr + t.rows.start * self._row_bytes, 0,
                                  t.count * self._row_bytes)
                else:
                    zero_rows(self._delta, t.global_rows)
        if temporary:
            push_set.free()
        self._pending = None
        self._delta_clean = True

    def free(self):
        self._readers, self._pushers = {}, {}
        for rs in self._rowsets.values():
            rs.free()
        self._rowsets = {}


def shard_shape(spec, layout, rank):
    """Local shard shape of ``spec`` on world rank ``rank``."""
    if rank not in layout.servers:
        return (0, spec.cols)
    s = layout.servers.index(rank)
    return (partition.shard_rows(spec.rows, layout.n_servers, s), spec.cols)
