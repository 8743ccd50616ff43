"""How long an idle server sleeps between progress polls (ssp_mpi.mpienv,
ssp_mpi.server): 1 ms when one-sided operations may need the server's
progress, longer when every rank is on one node and MPICH's shared-memory
path does them without it."""
import time

import pytest

from ssp_mpi import mpienv
from ssp_mpi.launch import mpiexec

mpienv.prepare()
from mpi4py import MPI  # noqa: E402

MPICH = "MPICH" in MPI.Get_library_version()


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("SSP_MPI_SERVER_POLL",) + mpienv._NOLOCAL_VARS + mpienv._SHM_VARS:
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_poll_interval_defaults_and_override(clean_env):
    assert mpienv.server_poll_interval() == 0.001
    assert mpienv.server_poll_interval(local=True) == mpienv.LOCAL_SERVER_POLL
    assert mpienv.LOCAL_SERVER_POLL > 0.001
    clean_env.setenv("SSP_MPI_SERVER_POLL", "0.005")
    assert mpienv.server_poll_interval() == 0.005
    assert mpienv.server_poll_interval(local=True) == 0.005


def test_several_nodes_need_the_server(clean_env):
    assert not mpienv.shared_memory_rma(2)


@pytest.mark.skipif(not MPICH, reason="the shared-memory rule is only known for MPICH")
def test_one_node_mpich_shared_memory(clean_env):
    assert mpienv.shared_memory_rma(1)
    clean_env.setenv("MPIR_CVAR_NOLOCAL", "0")
    assert mpienv.shared_memory_rma(1)
    clean_env.setenv("MPIR_CVAR_NOLOCAL", "1")
    assert not mpienv.shared_memory_rma(1)        # ranks talk as across nodes
    clean_env.delenv("MPIR_CVAR_NOLOCAL")
    clean_env.setenv("MPIR_CVAR_CH4_SHM", "posix")
    assert not mpienv.shared_memory_rma(1)        # chosen by hand: do not guess


@pytest.mark.mpi
@pytest.mark.parametrize("prog,args", [
    ("counter.py", ["--staleness", "1", "--servers", "1", "--clocks", "12"]),
    ("contention.py", ["--servers", "2", "--rows", "1000"]),
])
def test_one_node_runs_without_server_progress(prog, args):
    """The reason for the long sleep: on one node (MPICH's shared-memory
    path) workers read, accumulate and flush without the server's progress.
    With servers that call MPI only every 0.5 s, the runs still give exact
    sums and read-my-writes, and do not take a poll interval per flush."""
    t = time.monotonic()
    cp = mpiexec(4, [f"tests/progs/{prog}", *args], timeout=120,
                 env={"SSP_MPI_SERVER_POLL": "0.5"})
    elapsed = time.monotonic() - t
    assert not cp.timed_out and cp.returncode == 0, cp.stderr
    # ~10-12 clocks with a few flushes each: at 0.5 s per flush this would take
    # far longer than start-up plus the final barrier (one poll)
    assert elapsed < 40, f"{elapsed:.1f} s"
