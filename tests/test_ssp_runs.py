"""Multi-rank tests of the SSP contract (DESIGN section 4), as subprocesses.

Each test launches ``mpiexec -n N`` on a program in tests/progs with a
timeout, then checks the exit code and the output.
"""
import json
import os
import subprocess
import time

import pytest

from ssp_mpi.launch import mpiexec

pytestmark = pytest.mark.mpi
PROGS = "tests/progs"


def run(n, prog, *args, timeout=90, env=None):
    cp = mpiexec(n, [f"{PROGS}/{prog}", *args], timeout=timeout, env=env)
    assert not cp.timed_out, f"{prog} timed out\n{cp.stdout}\n{cp.stderr}"
    return cp


def results(cp):
    return [json.loads(l.split(" ", 1)[1]) for l in cp.stdout.splitlines() if l.startswith("RESULT ")]


@pytest.mark.parametrize("n,servers", [(2, 1), (3, 1), (4, 2), (5, 2)])
@pytest.mark.parametrize("staleness", ["0", "1", "3", "inf"])
def test_staleness_bound_and_read_my_writes(n, servers, staleness):
    cp = run(n, "counter.py", "--staleness", staleness, "--servers", str(servers))
    assert cp.returncode == 0, cp.stderr
    res = results(cp)
    assert len(res) == n - servers and all(r["reads"] == 12 for r in res)
    if staleness == "inf":
        assert all(r["wait_s"] == 0.0 for r in res), "s=inf must never wait"
    if staleness == "0":
        assert all(r["stale_reads"] == 0 for r in res)


@pytest.mark.parametrize("n,servers,staleness,refresh",
                         [(3, 1, "0", "lazy"), (4, 2, "2", "lazy"), (5, 2, "0", "clock")])
def test_staleness_bound_on_scattered_row_sets(n, servers, staleness, refresh):
    """Reads of random row sets (scattered, covering, alternating sets) obey
    the same bound and read-my-writes (lazy refresh: only the fetch clocks
    decide what is refetched)."""
    cp = run(n, "counter.py", "--staleness", staleness, "--servers", str(servers), "--rows", "300",
             "--subsets", "4", "--clocks", "16", "--refresh", refresh)
    assert cp.returncode == 0, cp.stderr
    res = results(cp)
    assert len(res) == n - servers and all(r["reads"] == 16 for r in res)
    if staleness == "0":
        assert all(r["stale_reads"] == 0 for r in res)


def test_staleness_check_can_fail():
    """With s=3 some reads are stale; checking them against s=0 must fail,
    so the checker above really sees staleness."""
    cp = run(4, "counter.py", "--staleness", "3", "--check-staleness", "0", "--max-delay", "0.05")
    assert cp.returncode != 0
    assert "staleness bound broken" in cp.stderr or "BSP broken" in cp.stderr


def test_straggler_knob_stretches_compute():
    cp = run(4, "counter.py", "--staleness", "inf", "--fixed-delay", "0.05", "--straggle", "1:3.0")
    assert cp.returncode == 0, cp.stderr
    comp = {r["worker"]: r["compute_s"] for r in results(cp)}
    assert 2.5 < comp[1] / comp[0] < 3.5 and 2.5 < comp[1] / comp[2] < 3.5, comp


def test_lazy_refresh_at_inf_fetches_once():
    cp = run(3, "counter.py", "--staleness", "inf", "--refresh", "lazy")
    assert cp.returncode == 0, cp.stderr
    assert sum(r["stale_reads"] for r in results(cp)) > 0


@pytest.mark.parametrize("n,servers,staleness", [(2, 1, "0"), (4, 1, "inf"), (5, 2, "2"), (6, 3, "inf")])
def test_exact_sums_under_contention(n, servers, staleness):
    cp = run(n, "contention.py", "--servers", str(servers), "--staleness", staleness)
    assert cp.returncode == 0, cp.stderr
    assert "EXACT" in cp.stdout


@pytest.mark.parametrize("n,servers", [(3, 1), (5, 2)])
def test_bsp_equals_serial_and_is_reproducible(n, servers):
    digests = []
    for _ in range(2):
        cp = run(n, "bsp_serial.py", "--servers", str(servers))
        assert cp.returncode == 0, cp.stdout + cp.stderr
        line = next(l for l in cp.stdout.splitlines() if l.startswith("SERIAL"))
        assert "ints_equal=True" in line
        digests.append(line.split("digest=")[1])
    assert digests[0] == digests[1]


def test_serial_check_can_fail():
    """At s=2 the schedule is not BSP: the serial comparison must notice."""
    cp = run(5, "bsp_serial.py", "--servers", "1", "--staleness", "2")
    assert cp.returncode != 0 and "ints_equal=False" in cp.stdout


def test_world_too_small():
    t = time.monotonic()
    cp = run(2, "counter.py", "--servers", "2")
    assert cp.returncode == 2 or cp.returncode != 0
    assert "start at least 3 ranks" in cp.stderr
    assert time.monotonic() - t < 30


def test_config_mismatch_names_option():
    cp = run(3, "faults.py", "--mode", "mismatch")
    assert cp.returncode == 2, cp.stderr
    assert "config.seed" in cp.stderr and "rank(s) 1" in cp.stderr
    assert cp.stderr.count("ssp-mpi: error:") == 1


def _leftovers(marker):
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if marker in l and "ps -eo" not in l]


def test_exception_on_one_worker_ends_job():
    t = time.monotonic()
    cp = run(4, "faults.py", "--mode", "raise", timeout=60)
    elapsed = time.monotonic() - t
    assert cp.returncode != 0
    assert "deliberate failure in worker 1" in cp.stderr
    assert "(worker 1)" in cp.stderr
    assert elapsed < 20, f"took {elapsed:.1f}s to end the job"
    time.sleep(0.5)
    assert not _leftovers("faults.py --mode raise")


def test_idle_server_is_polite():
    cp = run(3, "faults.py", "--mode", "idle", "--seconds", "3")
    assert cp.returncode == 0, cp.stderr
    usage = [json.loads(l[6:]) for l in cp.stdout.splitlines() if l.startswith("USAGE ")]
    servers = [u for u in usage if u["role"] == "server"]
    assert servers and all(u["wall_s"] > 2.0 for u in servers)
    for u in servers:
        assert u["cpu_s"] / u["wall_s"] < 0.10, u


@pytest.mark.parametrize("prog,args", [
    ("counter.py", ["--staleness", "1", "--servers", "2"]),
    ("contention.py", ["--servers", "2", "--rows", "1000"]),
])
def test_network_path_without_shared_memory(prog, args):
    """MPIR_CVAR_NOLOCAL=1 makes ranks talk as across nodes (see docs/mpich-network.md)."""
    cp = run(4, prog, *args, env={"MPIR_CVAR_NOLOCAL": "1"}, timeout=120)
    assert cp.returncode == 0, cp.stderr
