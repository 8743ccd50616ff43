"""RMA windows and the datatypes that move many rows in one operation.

``ShardWindow`` owns one ``MPI.Win.Allocate`` window (``Win.Create`` stalls
without target progress under MPICH).  Ranks differ only in the size they
allocate: a server allocates its shard, a worker allocates nothing.

``RowTransfer`` describes, for one server, a set of table rows as a pair of
MPI datatypes: the rows' places in the worker's full-size replica (origin)
and in the server's shard (target).  One ``Get_accumulate`` or ``Accumulate``
then moves all of them, however scattered, straight between the replica and
the shard: no packing in Python, never one call per row.
"""
import os
from contextlib import contextmanager

import numpy as np
from . import mpienv

mpienv.prepare()          # before MPI_Init: see ssp_mpi/mpienv.py
from mpi4py import MPI  # noqa: E402

from . import partition
from .errors import UsageError

MPI_TYPES = {
    np.dtype(np.float32): MPI.FLOAT,
    np.dtype(np.float64): MPI.DOUBLE,
    np.dtype(np.int32): MPI.INT32_T,
    np.dtype(np.int64): MPI.INT64_T,
}


def mpi_type(dtype):
    try:
        return MPI_TYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"unsupported table dtype {dtype}; use float32, float64, int32 or int64") from None


class ShardWindow:
    """One window, allocated collectively over ``comm``.

    ``shape`` is this rank's local shard shape (``(0, cols)`` on workers).
    Use ``free()`` or a ``with`` block; any use after ``free()`` raises.
    """

    def __init__(self, shape, dtype, *, comm, info=MPI.INFO_NULL):
        self.dtype = np.dtype(dtype)
        self.shape = tuple(int(x) for x in shape)
        nbytes = int(np.prod(self.shape)) * self.dtype.itemsize
        self._win = MPI.Win.Allocate(nbytes, self.dtype.itemsize, info=info, comm=comm)
        self._local = np.frombuffer(self._win.tomemory(), self.dtype).reshape(self.shape)

    @property
    def win(self):
        if self._win is None:
            raise UsageError("this window was freed; create the session's tables again")
        return self._win

    @property
    def local(self):
        """This rank's shard as a NumPy array (touch it only in a local epoch)."""
        if self._win is None:
            raise UsageError("this window was freed; create the session's tables again")
        return self._local

    @contextmanager
    def local_epoch(self, rank, shared=False):
        """Access to this rank's own memory: exclusive (initial values,
        restore) or shared (reading it while workers hold their epochs)."""
        self.win.Lock(rank, MPI.LOCK_SHARED if shared else MPI.LOCK_EXCLUSIVE)
        try:
            yield self._local
        finally:
            self.win.Unlock(rank)

    @contextmanager
    def access_all(self):
        """Passive-target epoch on every rank; ``Unlock_all`` always runs."""
        self.win.Lock_all(MPI.MODE_NOCHECK)
        try:
            yield self.win
        finally:
            self.win.Unlock_all()

    def free(self):
        if self._win is not None:
            self._local = None
            self._win.Free()
            self._win = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.free()


def _rows_type(rowtype, idx):
    """A datatype selecting rows ``idx`` (sorted) of an array of ``rowtype``,
    and the first row it starts at."""
    idx = np.asarray(idx, dtype=np.int64)
    n = idx.size
    if n == 0:
        return None, 0
    step = np.diff(idx)
    if n == 1 or np.all(step == step[0]):
        stride = int(step[0]) if n > 1 else 1
        dt = rowtype.Create_contiguous(n) if stride == 1 else rowtype.Create_vector(n, 1, stride)
        return dt, int(idx[0])
    starts, lengths = partition.runs(idx)
    base = int(starts[0])
    if np.all(lengths == 1):
        dt = rowtype.Create_indexed_block(1, (starts - base).astype(np.int32).tolist())
    else:
        dt = rowtype.Create_indexed(lengths.astype(np.int32).tolist(),
                                    (starts - base).astype(np.int32).tolist())
    return dt, base


def _as_slice(idx):
    """``idx`` as a slice when it is an arithmetic progression, else None."""
    if idx.size == 0:
        return slice(0, 0)
    if idx.size == 1:
        return slice(int(idx[0]), int(idx[0]) + 1)
    step = np.diff(idx)
    if np.all(step == step[0]):
        return slice(int(idx[0]), int(idx[-1]) + 1, int(step[0]))
    return None


class RowTransfer:
    """The rows of one row set that live on one server.

    On the server side the rows are plain elements when they form a block,
    else a derived datatype over the shard (a vector or an indexed type).  On the
    worker side the data always travels through a contiguous buffer: MPICH
    moves a derived *origin* datatype many times slower than a contiguous
    one, so a scattered set is gathered/scattered by compiled loops
    (``kernels/rows.py``) instead -- and a
    contiguous set (one server, a block of rows) goes straight to and from
    the replica with no copy at all.
    """

    def __init__(self, server, global_rows, local_rows, rowtype, cols, itemsize, base):
        self.server = server          # server index (not world rank)
        self.cols = cols
        self.count = int(len(global_rows))
        self.nbytes = self.count * cols * itemsize
        self.global_rows = np.ascontiguousarray(global_rows, np.int64)
        self.rows = _as_slice(global_rows)          # a slice when possible (cheap copies)
        if self.rows is None:
            self.rows = global_rows
        self.direct = self.rows.__class__ is slice and (self.rows.step or 1) == 1
        self.base = base                           # MPI type of one element
        self.target_row = int(local_rows[0])
        if local_rows[-1] - local_rows[0] + 1 == self.count:     # a block: plain elements
            self.target_type = None
            self._target = (self.target_row * cols, self.count * cols, base)
        else:
            self.target_type, self.target_row = _rows_type(rowtype, local_rows)
            self.target_type.Commit()
            self._target = (self.target_row * self.cols, 1, self.target_type)

    def target(self):
        """Target spec; displacements count elements (disp_unit = itemsize)."""
        return self._target

    def buffer(self, array, stage):
        """The contiguous buffer of this transfer: a view of ``array`` when
        the rows are contiguous, else the front of ``stage``."""
        if self.direct:
            return array[self.rows]
        return stage[:self.count]

    def spec(self, buf):
        return [buf, self.count * self.cols, self.base]

    def free(self):
        if self.target_type is not None:
            self.target_type.Free()
        self.target_type = None


# A scattered row costs more than its bytes: MPICH's datatype engine pays per
# block of an indexed type, and the staging buffer is scattered row by row.
# Reading (or pushing) every row between a server's first and last requested
# row instead moves more bytes but in one block.  A transfer covers its range when the
# extra bytes are at most COVER_BYTES x (blocks + rows).  Measured on the
# 2-core development machine (MPICH shared memory, 2026-11-27, float32 rows
# of 16 columns, random row sets of 1-30 %): a scattered row cost about as
# much as 700 contiguous bytes once the range outgrew the caches (shards of
# 6.4 and 64 MB), and about 300 within them (640 KB), where a scattered row
# is cheap; covering paid from ~1 in 10 rows (large ranges) and ~1 in 4
# (small ones).  Hence COVER_BYTES for ranges over COVER_CACHED_SPAN bytes and
# COVER_BYTES_CACHED for the others.  0 turns covering off.
#
# The same machine on another day (2026-12-08) read 10^4 scattered rows of a
# 6.4 MB shard in 53 us and the whole range in 120-150 us: a scattered row
# cost ~140 bytes, not ~700.  No fixed bound follows a machine's mood, so
# reads try both ways (``RowSet.read_variants``, ``COVER_TRIALS``): for a
# part of a row set whose extra bytes are within COVER_TRY x the bound
# either way (a set of 97 % of a range is no doubt), the first reads
# alternate between the rule's choice and the other one, and the faster is
# kept (``table.WorkerTable``).  Pushes keep the rule's choice.
COVER_BYTES = int(os.environ.get("SSP_MPI_COVER_BYTES", 384))
COVER_BYTES_CACHED = int(os.environ.get("SSP_MPI_COVER_BYTES_CACHED", 150))
COVER_CACHED_SPAN = 2 << 20
COVER_TRY = 4


def _cover_terms(local_rows, row_bytes, cover_bytes):
    """``(extra bytes, bound)`` of covering ``local_rows``'s range: covering
    when ``extra <= bound``; None when the rows are contiguous already."""
    count = local_rows.size
    span = int(local_rows[-1] - local_rows[0]) + 1
    if span == count:
        return None
    if cover_bytes is None:
        cover_bytes = COVER_BYTES if span * row_bytes > COVER_CACHED_SPAN else COVER_BYTES_CACHED
    blocks = partition.runs(local_rows)[0].size
    return (span - count) * row_bytes, cover_bytes * (blocks + count)


def covering(local_rows, row_bytes, cover_bytes=None):
    """Whether to move the whole range ``local_rows[0] .. local_rows[-1]``
    instead of the scattered rows themselves."""
    terms = _cover_terms(local_rows, row_bytes, cover_bytes)
    return terms is not None and terms[0] <= terms[1]


def cover_in_doubt(local_rows, row_bytes, cover_bytes=None):
    """Whether the rule's choice for ``local_rows`` is close enough (the
    extra bytes within COVER_TRY x the bound either way) to be worth timing
    both ways."""
    terms = _cover_terms(local_rows, row_bytes, cover_bytes)
    if terms is None:
        return False
    extra, bound = terms                  # extra > 0: a bound of 0 (covering off) is no doubt
    return bound <= COVER_TRY * extra and extra <= COVER_TRY * bound


class RowSet:
    """A sorted set of global rows of one table, split into per-server
    transfers.  Built once and reused (datatypes stay committed).

    A server's part may be moved as the whole range between its first and
    last row (see ``covering``): a read then also refreshes the rows in
    between (fresher values are always allowed; the reader re-applies its own
    unpushed increments to every row it overwrites), a push also sends the
    rows in between (their oplog rows are zero or their own increments).

    ``transfers`` follow the rule and serve pushes.  ``read_variants`` are
    the ways a read may move the rows: the rule's, and -- when some part's
    choice is in doubt (``cover_in_doubt``) -- the same with those parts'
    choice flipped.  ``read_transfers`` / ``read_nbytes`` are the variant
    reads use now (``use_read``)."""

    def __init__(self, rows, n_rows, cols, dtype, n_servers, cover_bytes=None):
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size and (rows[0] < 0 or rows[-1] >= n_rows):
            bad = rows[0] if rows[0] < 0 else rows[-1]
            raise IndexError(f"row {bad} is outside the table (0..{n_rows - 1})")
        self.rows = rows
        self.is_all = rows.size == n_rows
        self.rowtype = mpi_type(dtype).Create_contiguous(cols)
        self.rowtype.Commit()
        itemsize = np.dtype(dtype).itemsize
        base = mpi_type(dtype)
        row_bytes = cols * itemsize

        def transfer(s, g, l, cover):
            if cover:
                l = np.arange(l[0], l[-1] + 1, dtype=np.int64)
                g = partition.global_index(l, n_servers, s)
            return RowTransfer(s, g, l, self.rowtype, cols, itemsize, base)

        self.transfers, flipped = [], []
        for s, (g, l) in enumerate(partition.split_by_server(rows, n_servers)):
            if not g.size:
                continue
            cover = covering(l, row_bytes, cover_bytes)
            t = transfer(s, g, l, cover)
            self.transfers.append(t)
            flipped.append(transfer(s, g, l, not cover) if cover_in_doubt(l, row_bytes, cover_bytes)
                           else t)
        self.read_variants = [self.transfers]
        if any(f is not t for f, t in zip(flipped, self.transfers)):
            self.read_variants.append(flipped)
        self.max_count = max((t.count for t in self.transfers), default=0)
        self.total_count = sum(t.count for t in self.transfers)
        self.nbytes = sum(t.nbytes for t in self.transfers)     # bytes one transfer of the set moves
        self.read_chosen = len(self.read_variants) == 1     # set once reads have picked a variant
        self.use_read(0)

    def use_read(self, variant):
        """Reads move the rows as ``read_variants[variant]`` from now on."""
        self.read_transfers = self.read_variants[variant]
        self.read_nbytes = sum(t.nbytes for t in self.read_transfers)

    def free(self):
        for t in {id(t): t for v in self.read_variants for t in v}.values():
            t.free()
        self.transfers = self.read_transfers = []
        self.read_variants = [[]]
        self.nbytes = self.read_nbytes = 0
        if self.rowtype is not None:
            self.rowtype.Free()
            self.rowtype = None
