"""Unit tests without MPI ranks: partitioner, layout planning, configuration."""
import math

import numpy as np
import pytest

from ssp_mpi import partition
from ssp_mpi.config import (Config, first_difference, parse_staleness, parse_straggle)
from ssp_mpi.errors import LayoutError
from ssp_mpi.layout import Layout, plan_layout


# -- partition -------------------------------------------------------------
@pytest.mark.parametrize("rows,servers", [(1, 1), (10, 3), (1000, 7), (5, 8)])
def test_partition_is_a_bijection(rows, servers):
    seen = np.zeros(rows, int)
    for s in range(servers):
        g = partition.global_rows(rows, servers, s)
        assert len(g) == partition.shard_rows(rows, servers, s)
        assert np.all(partition.server_of(g, servers) == s)
        assert np.array_equal(partition.local_index(g, servers), np.arange(len(g)))
        assert np.array_equal(partition.global_index(np.arange(len(g)), servers, s), g)
        seen[g] += 1
    assert np.all(seen == 1)


def test_partition_spreads_zipf_access():
    """Frequent rows (low ids, as in frequency-sorted vocabularies) must not
    pile onto one server: the busiest server carries at most one hottest
    row's load more than the mean (the best any whole-row split can promise)."""
    rows = 50_000
    for servers in (2, 3, 4, 8):
        for power in (0.8, 1.0, 1.2):
            freq = np.arange(1, rows + 1) ** -power          # Zipf
            load = np.bincount(partition.server_of(np.arange(rows), servers), weights=freq,
                               minlength=servers)
            assert load.max() <= load.mean() + freq.max()
            # a contiguous split (the naive alternative) fails this check
            naive = np.bincount(np.arange(rows) * servers // rows, weights=freq, minlength=servers)
            assert naive.max() > naive.mean() + freq.max()


def test_partition_spreads_any_id_range():
    for lo, hi in [(0, 17), (1000, 1100), (3, 4)]:
        counts = np.bincount(partition.server_of(np.arange(lo, hi), 5), minlength=5)
        assert counts.max() - counts.min() <= 1


def test_split_by_server_and_runs():
    rows = np.array([9, 0, 3, 4, 5, 8, 3])
    parts = partition.split_by_server(rows, 2)
    assert [g.tolist() for g, _ in parts] == [[0, 4, 8], [3, 5, 9]]
    assert [l.tolist() for _, l in parts] == [[0, 2, 4], [1, 2, 4]]
    starts, lengths = partition.runs(np.array([1, 2, 3, 7, 9, 10]))
    assert starts.tolist() == [1, 7, 9] and lengths.tolist() == [3, 1, 2]
    assert partition.runs(np.array([], np.int64))[0].size == 0


def test_partition_rejects_bad_server_counts():
    with pytest.raises(ValueError):
        partition.server_of([1], 0)
    with pytest.raises(ValueError):
        partition.shard_rows(10, 2, 2)


# -- layout ----------------------------------------------------------------
def test_default_layout_one_server_per_node():
    nodes = [0, 0, 0, 1, 1, 1]
    assert plan_layout(nodes) == [0, 3]
    lay = Layout.plan(nodes, rank=4)
    assert lay.is_worker and lay.worker_index == 2 and lay.n_workers == 4 and lay.leader == 1


def test_explicit_servers_spread_over_nodes():
    nodes = [0, 0, 0, 1, 1, 1]
    assert plan_layout(nodes, 3) == [0, 1, 3]
    assert plan_layout([0, 0, 0, 0], 2) == [0, 1]


def test_world_too_small_says_what_to_do():
    with pytest.raises(LayoutError, match="start at least 2 ranks"):
        plan_layout([0])
    with pytest.raises(LayoutError, match="start at least 4 ranks.*--servers 2"):
        plan_layout([0, 0, 0], 3)
    with pytest.raises(LayoutError, match="at least 1"):
        plan_layout([0, 0], 0)


# -- config ----------------------------------------------------------------
def test_parse_staleness():
    assert parse_staleness("0") == 0 and parse_staleness(3) == 3
    assert math.isinf(parse_staleness("inf")) and math.isinf(parse_staleness(math.inf))
    for bad in ("-1", "x", "1.5", -2, True):
        with pytest.raises(ValueError):
            parse_staleness(bad)


def test_parse_straggle():
    assert parse_straggle("1:2.0,3:1.5") == {1: 2.0, 3: 1.5}
    assert parse_straggle("") == {}
    for bad in ("1", "a:2", "1:0.5", "-1:2"):
        with pytest.raises(ValueError):
            parse_straggle(bad)


def test_first_difference_names_the_key():
    a = Config(seed=1, job={"rank": 8}).to_dict()
    b = Config(seed=1, job={"rank": 16}).to_dict()
    assert first_difference(a, b) == "job.rank"
    assert first_difference(a, a) is None
    assert first_difference({"t": [{"rows": 1}]}, {"t": [{"rows": 2}]}) == "t.0.rows"
