"""Process environment and polite waiting.

``prepare()`` runs before ``mpi4py.MPI`` is first imported (i.e. before
``MPI_Init``): it pins Numba to one thread per rank and applies the MPI
settings the project relies on (see docs/mpich-network.md).  Nothing here is
specific to one MPI: a setting for the MPICH wheel is applied only when that
wheel is what mpi4py will load, and never overrides a variable the user set.

Waiting never spins: ``Backoff`` sleeps between non-blocking tests, so a rank
that waits yields its core (tests here run more ranks than cores).
"""
import os
import sys
import time

_PREPARED = False


def _uses_mpich_wheel():
    """True when mpi4py will load the MPICH wheel from PyPI."""
    try:
        from importlib import metadata
        metadata.distribution("mpich")
    except Exception:
        return False
    try:
        import mpi4py
        cfg = mpi4py.get_config()
        # mpi4py built against a system MPI (an mpicc on the cluster) does
        # not load the wheel's library even when the wheel is installed.
        mpicc = str(cfg.get("mpicc", ""))
        return not mpicc or "site-packages" in mpicc or sys.prefix in mpicc
    except Exception:
        return True


def prepare():
    """Set per-rank environment; idempotent; call before importing MPI."""
    global _PREPARED
    if _PREPARED:
        return
    _PREPARED = True
    threads = os.environ.get("SSP_MPI_NUMBA_THREADS") or "1"
    os.environ.setdefault("NUMBA_NUM_THREADS", threads)
    if "mpi4py.MPI" not in sys.modules:
        import mpi4py
        # No thread of ours calls MPI concurrently; "multiple" would make
        # MPICH take a global lock around every RMA call.
        mpi4py.rc.thread_level = os.environ.get("MPI4PY_RC_THREAD_LEVEL", "funneled")
        if _uses_mpich_wheel():
            for key, value in MPICH_WHEEL_DEFAULTS.items():
                os.environ.setdefault(key, value)


# Applied only when the MPICH wheel from PyPI is in use and the variable is
# unset.  Why each one is needed: docs/mpich-network.md.
MPICH_WHEEL_DEFAULTS = {}


class Backoff:
    """Exponential back-off sleeper: ``first`` seconds doubling to ``maximum``."""

    def __init__(self, first=20e-6, maximum=1e-3):
        self.first = first
        self.maximum = maximum
        self.delay = first

    def reset(self):
        self.delay = self.first

    def sleep(self):
        time.sleep(self.delay)
        self.delay = min(self.delay * 2.0, self.maximum)


def server_poll_interval():
    """Longest sleep of an idle server between progress polls (seconds)."""
    return float(os.environ.get("SSP_MPI_SERVER_POLL", "0.001"))


def wait(request, backoff=None):
    """Complete ``request`` by testing and sleeping; never spins."""
    backoff = backoff or Backoff()
    while not request.Test():
        backoff.sleep()


def barrier(comm, backoff=None):
    """A barrier that sleeps while it waits (``Ibarrier`` + polite test)."""
    wait(comm.Ibarrier(), backoff)


def compile_once(comm, fn):
    """Run ``fn`` (e.g. a Numba ``warmup``) on one rank per node first, then
    on the node's other ranks, which then load the on-disk cache instead of
    all compiling at once (seconds per rank when ranks outnumber cores).
    Collective over ``comm``."""
    from mpi4py import MPI
    node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.rank)
    try:
        if node.rank == 0:
            fn()
            barrier(node)
        else:
            barrier(node)
            fn()
    finally:
        node.Free()
