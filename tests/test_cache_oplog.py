"""Process cache and oplog bookkeeping, in one process (MPI singleton).

A fake worker controls the server clock; one real ``Win.Allocate`` window on
``COMM_SELF`` plays the single server's shard.  This checks which reads
fetch, which wait and for what, what is pushed, and read-my-writes, without
launching ranks.
"""
import math
import itertools
import types

import numpy as np
import pytest

from ssp_mpi import mpienv

mpienv.prepare()  # the MPI environment, before mpi4py.MPI is imported
from mpi4py import MPI

from ssp_mpi.stats import ClockStats
from ssp_mpi.table import TableSpec, WorkerTable
from ssp_mpi import window
from ssp_mpi.window import RowSet, ShardWindow


class FakeWorker:
    read_log = None

    def __init__(self):
        self.dirty_tables = []
        self.layout = types.SimpleNamespace(servers=(0,))
        self.clock_value = 0
        self.stats = ClockStats()
        self.sclock = 0
        self.waited_for = []

    def server_clock(self):
        return self.sclock

    @property
    def known_server_clock(self):
        return self.sclock

    def wait_server_clock(self, target):
        self.waited_for.append(target)
        self.sclock = max(self.sclock, target)   # pretend the others caught up
        return self.sclock

    def record_read(self, *a):
        pass


@pytest.fixture
def table():
    spec = TableSpec("t", 10, 3, "int64", staleness=2, refresh="lazy")
    win = ShardWindow((10, 3), np.int64, comm=MPI.COMM_SELF)
    with win.local_epoch(0) as mem:
        mem[:] = np.arange(30).reshape(10, 3)
    w = FakeWorker()
    t = WorkerTable(spec, win, w)
    win.win.Lock_all(MPI.MODE_NOCHECK)
    yield t, w, win
    win.win.Unlock_all()
    t.free()
    win.free()


def server_values(win):
    win.win.Flush_all()
    out = np.zeros((10, 3), np.int64)
    win.win.Get_accumulate([out, MPI.INT64_T], [out, MPI.INT64_T], 0, op=MPI.NO_OP)
    win.win.Flush(0)
    return out


def test_first_read_fetches_without_waiting(table):
    t, w, win = table
    v = t.get()
    assert np.array_equal(v, np.arange(30).reshape(10, 3))
    assert w.waited_for == [] and np.all(t.fetch_clock == 0)


def test_lazy_cache_refetches_only_when_too_stale(table):
    t, w, win = table
    t.get()
    add = np.full((10, 3), 100, np.int64)  # another worker's update lands
    win.win.Accumulate([add, MPI.INT64_T], 0, op=MPI.SUM)
    win.win.Flush(0)
    for c in (1, 2):                        # c - s <= 0 = fetch clock: cache valid
        w.clock_value = c
        assert t.get()[0, 0] == 0
    assert w.waited_for == []
    w.clock_value = 3                       # needs server clock >= 1: wait, refetch
    assert t.get()[0, 0] == 100
    assert w.waited_for == [1] and np.all(t.fetch_clock == 1)


def test_invalidate_forces_the_next_read_to_fetch(table):
    t, w, win = table
    t.get()
    add = np.full((10, 3), 100, np.int64)
    win.win.Accumulate([add, MPI.INT64_T], 0, op=MPI.SUM)
    win.win.Flush(0)
    assert t.get()[0, 0] == 0               # lazy, same clock: the cache answers
    t.invalidate()
    assert t.get()[0, 0] == 100 and w.waited_for == []


def test_read_my_writes_survives_refetch(table):
    t, w, win = table
    t.get()
    t.inc([2, 2, 5], np.array([[1, 1, 1], [2, 2, 2], [5, 0, 0]]))
    assert t.replica[2].tolist() == [9, 10, 11] and t.delta[5].tolist() == [5, 0, 0]
    w.clock_value = 3
    v = t.get()                             # refetch: server value + own unpushed delta
    assert v[2].tolist() == [9, 10, 11] and v[5].tolist() == [20, 16, 17]


def test_push_sends_only_dirty_rows_and_clears_oplog(table):
    t, w, win = table
    t.get()
    t.inc([7], np.array([[1, 2, 3]]))
    sent = t.push()
    assert sent == 3 * 8                    # one row of three int64
    t.complete_push()
    assert not t.delta.any()
    got = server_values(win)
    assert got[7].tolist() == [22, 24, 26] and got[6].tolist() == [18, 19, 20]
    assert t.push() == 0                    # nothing new to push


def test_push_reuses_a_row_set_read_before(table):
    """Dirty rows equal to a row set already built push through it (no new
    datatypes per clock), and it stays usable afterwards."""
    t, w, win = table
    rs = t.use_rows([1, 4])
    t.get()
    t.use_rows(None)
    t.inc([1, 4], np.ones((2, 3), np.int64))
    t.push()
    assert t._pending == (rs, False)
    t.complete_push()
    assert rs.transfers and server_values(win)[[1, 4]].tolist() == [[4, 5, 6], [13, 14, 15]]


def test_dense_oplog_pushes_skip_the_scan_then_rescan(table):
    """After a push finding most rows dirty, pushes send every row (zeros
    add nothing) without scanning; every RESCAN_EVERY-th push scans again."""
    from ssp_mpi.table import RESCAN_EVERY
    t, w, win = table
    t.get()
    full = 10 * 3 * 8

    def push_one(rows, value):
        t.inc(rows, np.full((len(rows), 3), value, np.int64))
        sent = t.push()
        t.complete_push()
        assert not t.delta.any()
        return sent

    assert push_one(list(range(10)), 1) == full          # dense: scanned, all dirty
    expect = np.arange(30).reshape(10, 3) + 1
    sizes = []
    for i in range(RESCAN_EVERY + 1):
        sizes.append(push_one([4], 2))                   # one dirty row each time
        expect[4] += 2
        assert np.array_equal(server_values(win), expect)
    assert sizes[:RESCAN_EVERY - 1] == [full] * (RESCAN_EVERY - 1)
    assert sizes[RESCAN_EVERY - 1:] == [3 * 8, 3 * 8]     # rescanned: sparse again


def test_scattered_rowset_roundtrip(table, monkeypatch):
    monkeypatch.setattr(window, "COVER_BYTES", 0)          # scattered rows only
    monkeypatch.setattr(window, "COVER_BYTES_CACHED", 0)
    t, w, win = table
    rows = [9, 1, 4, 5, 6]
    v = t.get(rows)
    assert np.array_equal(v[[1, 4, 5, 6, 9]], np.arange(30).reshape(10, 3)[[1, 4, 5, 6, 9]])
    assert np.all(t.replica[[0, 2, 3, 7, 8]] == 0)      # rows not asked for are not fetched
    assert np.all(t.fetch_clock[[0, 2]] == -1)


def test_covering_read_keeps_own_increments_and_fetch_clocks(table):
    """A covering read also overwrites the rows between the requested ones:
    with the server's values plus this worker's unpushed increments; their
    fetch clocks stay as they were."""
    t, w, win = table
    t.inc([3], np.array([[1, 1, 1]]))
    v = t.get([1, 6])
    assert t._rowset([1, 6]).transfers[0].count == 6     # rows 1..6 moved
    base = np.arange(30).reshape(10, 3)
    assert np.array_equal(v[1:7], base[1:7] + np.array([[0], [0], [1], [0], [0], [0]]))
    assert np.all(v[[0, 7, 8, 9]] == 0)
    assert t.fetch_clock.tolist() == [-1, 0, -1, -1, -1, -1, 0, -1, -1, -1]


def test_inc_rejects_bad_input(table):
    t, w, win = table
    with pytest.raises(IndexError, match="table 't'"):
        t.inc([10], np.ones((1, 3), np.int64))
    with pytest.raises(TypeError, match="integers"):
        t.inc([0], np.ones((1, 3)))


@pytest.mark.parametrize("cover", [0, 30, 10 ** 6])
@pytest.mark.parametrize("servers", [1, 2, 3])
@pytest.mark.parametrize("rows", [[0], [3, 4, 5], [0, 2, 4, 6], [1, 2, 7, 11, 12, 13]])
def test_rowset_datatypes_select_the_right_rows(servers, rows, cover):
    """Each server's datatypes pick exactly its rows from a full replica and
    its shard (checked with local windows standing in for servers); covering
    transfers pick every row of that server between its first and last.
    Every way a read may move the set does (``read_variants``): the rule's,
    and the one with the rule's choice flipped where it is in doubt."""
    from ssp_mpi import partition
    n, k = 14, 4
    rs = RowSet(rows, n, k, np.float64, servers, cover_bytes=cover)
    full = np.arange(n * k, dtype=np.float64).reshape(n, k)
    parts = {s: (g, l) for s, (g, l) in enumerate(partition.split_by_server(np.array(rows), servers))
             if g.size}
    rule = {s: window.covering(l, k * 8, cover) for s, (g, l) in parts.items()}
    doubt = {s: window.cover_in_doubt(l, k * 8, cover) for s, (g, l) in parts.items()}
    assert len(rs.read_variants) == (2 if any(doubt.values()) else 1)
    for v, variant in enumerate(rs.read_variants):
        got = np.full((n, k), -1.0)
        want = np.full((n, k), -1.0)
        for tr in variant:
            shard_rows = np.arange(tr.server, n, servers)
            win = ShardWindow((len(shard_rows), k), np.float64, comm=MPI.COMM_SELF)
            with win.local_epoch(0) as mem:
                mem[:] = full[shard_rows]
            win.win.Lock_all()
            buf = np.empty((tr.count, k))
            win.win.Get_accumulate(tr.spec(buf), tr.spec(buf), 0, target=tr.target(), op=MPI.NO_OP)
            win.win.Unlock_all()
            got[tr.rows] = buf
            win.free()
            g = parts[tr.server][0]
            covers = rule[tr.server] != (v == 1 and doubt[tr.server])     # the flip where in doubt
            moved = np.arange(g[0], g[-1] + 1, servers) if covers else g
            want[moved] = full[moved]
        assert np.array_equal(got, want)
    rs.free()


def test_faster_variant_takes_the_best_read_and_the_rule_on_a_tie():
    from ssp_mpi.table import faster_variant
    assert faster_variant([[5.0, 1.0, 9.0], [2.0, 2.0, 2.0]]) == 0      # best reads: 1 < 2
    assert faster_variant([[5.0, 3.0], [2.0, 9.0]]) == 1
    assert faster_variant([[2.0], [2.0]]) == 0


def test_reads_time_both_ways_then_keep_the_faster(table, monkeypatch):
    """A row set whose covering is in doubt is read both ways in turn for
    the first 2 x COVER_TRIALS reads, then the way ``faster_variant`` names
    is kept; under either way the rows read hold the server's values, and a
    covering read also lands the rows between them with this worker's
    unpushed increments re-applied (read-my-writes)."""
    from ssp_mpi import table as table_mod
    chose = []
    monkeypatch.setattr(table_mod, "faster_variant",
                        lambda times: chose.append([len(x) for x in times]) or 1)
    t, w, win = table
    rs = t._rowset([0, 9])
    assert [v[0].count for v in rs.read_variants] == [10, 2]          # cover 0..9, or rows 0 and 9
    t.inc([3], np.array([[1, 1, 1]]))
    used = []
    trials = table_mod.COVER_TRIALS
    for c in range(2 * trials + 3):
        add = np.full((10, 3), 100, np.int64)                          # another worker's update
        win.win.Accumulate([add, MPI.INT64_T], 0, op=MPI.SUM)
        win.win.Flush(0)
        before = t.replica[3].copy()
        t.invalidate()
        v = t.get([0, 9])
        server = server_values(win)
        used.append(rs.read_transfers[0].count)
        assert np.array_equal(v[[0, 9]], server[[0, 9]])
        if used[-1] == 10:
            assert np.array_equal(v[3], server[3] + 1)
        else:
            assert np.array_equal(v[3], before)                        # not read
    assert used == [10, 2] * trials + [2, 2, 2]
    assert chose == [[trials, trials]] and rs.read_chosen


def test_no_trial_when_the_rule_is_clear_or_trials_are_off(table, monkeypatch):
    from ssp_mpi import table as table_mod
    t, w, win = table
    assert len(t._rowset([2, 3, 4]).read_variants) == 1               # contiguous: nothing to choose
    assert len(t._rowset([1, 6]).read_variants) == 1                  # 2 of 6 rows: cover, no doubt
    monkeypatch.setattr(table_mod, "COVER_TRIALS", 0)
    rs = t._rowset([0, 9])
    assert len(rs.read_variants) == 2
    for c in range(3):
        t.invalidate()
        t.get([0, 9])
        assert rs.read_transfers is rs.transfers and not rs.read_chosen


def test_covering_doubt_is_two_sided():
    from ssp_mpi.window import cover_in_doubt
    big = 10**5
    assert cover_in_doubt(np.arange(0, big, 10), 64)               # 10%: 9 x 64 B ~ 2 x 384 x 0.75
    assert not cover_in_doubt(np.delete(np.arange(big), np.arange(0, big, 30)), 64)   # 97%: cover
    assert not cover_in_doubt(np.arange(0, big, 100), 64)          # 1%: scattered
    assert not cover_in_doubt(np.arange(0, big, 10), 64, cover_bytes=0)
    assert not cover_in_doubt(np.arange(5), 64)                    # contiguous


def test_covering_rule():
    from ssp_mpi.window import covering
    assert not covering(np.array([2, 3, 4]), 64)                   # contiguous already
    big = 10**5                                                    # 6.4 MB ranges: outgrow caches
    assert covering(np.arange(0, big, 10), 64)                     # 10%: 9 x 64 B < 2 x 384
    assert not covering(np.arange(0, big, 30), 64)                 # 3%
    assert not covering(np.arange(0, 10**4, 10), 64)               # 640 KB: scattered rows cheap
    assert covering(np.arange(0, 10**4, 3), 64)                    # ... but 33% is covered
    assert not covering(np.arange(0, big, 10), 64, cover_bytes=0)


def test_table_spec_validation():
    with pytest.raises(ValueError, match="rows and cols"):
        TableSpec("x", 0, 3)
    with pytest.raises(TypeError, match="unsupported"):
        TableSpec("x", 2, 3, dtype="complex64")
    with pytest.raises(ValueError, match="staleness"):
        TableSpec("x", 2, 3, staleness=-1)
    assert math.isinf(TableSpec("x", 2, 3, staleness="inf").staleness)
    spec = TableSpec("x", 3, 2, init=lambda ids: np.stack([ids, ids * 2], 1))
    assert spec.initial_rows(np.array([2])).tolist() == [[2.0, 4.0]]
    with pytest.raises(ValueError, match="init returned shape"):
        TableSpec("x", 3, 2, init=lambda ids: np.zeros(len(ids))).initial_rows(np.arange(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_dirty_rows_matches_reference(dtype):
    from kernels.oplog import dirty_rows, dirty_rows_reference
    rng = np.random.default_rng(3)
    d = np.zeros((500, 7), dtype)
    idx = rng.integers(0, 500, 60), rng.integers(0, 7, 60)
    d[idx] = 1
    d[3, 6] = -1
    assert np.array_equal(dirty_rows(d), dirty_rows_reference(d))
    assert dirty_rows(np.zeros((4, 3), dtype)).size == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_row_kernels_match_reference(dtype):
    from kernels import rows as R
    rng = np.random.default_rng(4)
    full = rng.integers(-50, 50, (300, 5)).astype(dtype)
    ids = np.sort(rng.choice(300, 40, replace=False)).astype(np.int64)
    src = rng.integers(-50, 50, (40, 5)).astype(dtype)
    for fn, ref, args in ((R.scatter_rows, R.scatter_rows_reference, (ids, src)),
                          (R.add_rows, R.add_rows_reference, (ids, full[::-1].copy())),
                          (R.zero_rows, R.zero_rows_reference, (ids,))):
        a, b = full.copy(), full.copy()
        fn(a, *args)
        ref(b, *args)
        assert np.array_equal(a, b), fn.__name__
        assert not np.array_equal(a, full), fn.__name__      # it did something
    a, b = np.zeros_like(src), np.zeros_like(src)
    R.gather_rows(full, ids, a)
    R.gather_rows_reference(full, ids, b)
    assert np.array_equal(a, b) and np.array_equal(a, full[ids])


def test_fingerprint_names_a_set_of_rows():
    from kernels.rows import fingerprint, fingerprint_reference
    rng = np.random.default_rng(5)
    ids = rng.choice(10**6, 1000, replace=False).astype(np.int64)
    assert fingerprint(ids) == fingerprint_reference(ids)
    assert fingerprint(ids) == fingerprint(np.sort(ids))           # a set: order-free
    keys = {fingerprint(np.delete(ids, i)) for i in range(ids.size)}
    keys |= {fingerprint(np.append(ids[1:], ids[0] + 1))}
    assert len(keys) == ids.size + 1                               # neighbours differ
    assert fingerprint(np.arange(5)) != fingerprint(np.arange(1, 6))


def test_replica_and_oplog_rows_are_cache_line_aligned(table):
    t, w, win = table
    assert t.replica.ctypes.data % 64 == 0 and t.delta.ctypes.data % 64 == 0
    assert t.replica.flags.c_contiguous and not t.replica.any()


def test_declared_rows_survive_the_row_set_cache_bound(table):
    t, w, win = table
    declared = t.use_rows([2, 5, 7])
    for rows in itertools.combinations(range(10), 3):                 # 120 other row sets
        t.get(list(rows))
    assert len(t._rowsets) <= 66 and declared.transfers        # bounded, declared kept
    w.clock_value += 5
    assert np.array_equal(t.get()[[2, 5, 7]], np.arange(30).reshape(10, 3)[[2, 5, 7]])


def test_clock_stats_sample_cpu_without_losing_it():
    import time as _time
    st = ClockStats()
    cpu0 = _time.process_time()
    for i in range(400):
        x = 0
        for j in range(200 * (i % 7)):       # short clocks, some over a millisecond
            x += j
        st.add_comm(1e-6, in_bytes=3, out_bytes=5)
        st.end_clock(i)
    spent = _time.process_time() - cpu0
    tot = st.totals()
    assert tot["clocks"] == 400 and tot["bytes_in"] == 1200 and tot["bytes_out"] == 2000
    assert abs(tot["comm_s"] - 400e-6) < 1e-9
    assert spent - 0.0015 <= tot["cpu_s"] <= spent + 1e-9      # at most the last ms missing
    assert any(r["cpu_s"] == 0 for r in st.records)             # short clocks skip the call
