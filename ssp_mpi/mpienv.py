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


def _loaded_libmpi():
    """Real path of the libmpi this process has mapped, or None."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1] if line.strip() else ""
                if "/libmpi" in path and ".so" in path:
                    return os.path.realpath(path)
    except OSError:
        pass
    return None


def _is_mpich_wheel(MPI):
    """True when the loaded MPI is the MPICH wheel from PyPI: an MPICH whose
    libmpi is one of the files of the installed ``mpich`` distribution."""
    try:
        if "MPICH" not in MPI.Get_library_version():
            return False
        from importlib import metadata
        dist = metadata.distribution("mpich")
        lib = _loaded_libmpi()
        if lib is None:
            return False
        files = {os.path.realpath(dist.locate_file(f)) for f in (dist.files or [])
                 if "libmpi" in str(f)}
        return lib in files
    except Exception:       # no wheel, no metadata, an unusual MPI: change nothing
        return False


def prepare():
    """Set per-rank environment and initialise MPI; idempotent.  Call it
    before anything imports ``mpi4py.MPI`` (``import ssp_mpi`` does)."""
    global _PREPARED
    if _PREPARED:
        return
    _PREPARED = True
    threads = os.environ.get("SSP_MPI_NUMBA_THREADS") or "1"
    os.environ.setdefault("NUMBA_NUM_THREADS", threads)
    if "mpi4py.MPI" in sys.modules:      # the caller initialised MPI already
        return
    import mpi4py
    # No thread of ours calls MPI concurrently; "multiple" would make MPICH
    # take a global lock around every RMA call.
    level = os.environ.get("MPI4PY_RC_THREAD_LEVEL", "funneled")
    mpi4py.rc.thread_level = level
    mpi4py.rc.initialize = False     # load the library, look at it, then initialise
    mpi4py.rc.finalize = True
    from mpi4py import MPI
    if not MPI.Is_initialized():
        if _is_mpich_wheel(MPI):
            for key, value in MPICH_WHEEL_DEFAULTS.items():
                os.environ.setdefault(key, value)
        levels = {"single": MPI.THREAD_SINGLE, "funneled": MPI.THREAD_FUNNELED,
                  "serialized": MPI.THREAD_SERIALIZED, "multiple": MPI.THREAD_MULTIPLE}
        MPI.Init_thread(levels.get(level, MPI.THREAD_FUNNELED))


# Applied only when the MPICH wheel from PyPI is the loaded MPI and the
# variable is unset.  Why: docs/mpich-network.md (the ucx module can lose
# completions of ANY_SOURCE receives on ranks that own windows and accumulate).
MPICH_WHEEL_DEFAULTS = {"MPIR_CVAR_CH4_NETMOD": "ofi"}


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


def server_poll_interval(local=False):
    """Longest sleep of an idle server between progress polls (seconds).

    Over a network, an accumulate completes when its target next polls, so
    this bounds the latency a flush may see (docs/mpich-network.md): 1 ms.
    ``local`` (see ``shared_memory_rma``): the workers' reads and accumulates
    complete without the server, which then only answers its own messages
    (signals, checkpoint requests, the end of the run): ``LOCAL_SERVER_POLL``.
    ``SSP_MPI_SERVER_POLL`` overrides both."""
    value = os.environ.get("SSP_MPI_SERVER_POLL")
    if value:
        return float(value)
    return LOCAL_SERVER_POLL if local else 0.001


# An idle server's longest sleep when no RMA needs it (``shared_memory_rma``).
# Each poll wakes the server on a core a worker computes on (on a node with
# as many ranks as cores, every poll preempts a worker); 20 ms keeps that to
# ~50 wake-ups per second, and bounds how late a signal or checkpoint request
# is seen.
LOCAL_SERVER_POLL = 0.02

_NOLOCAL_VARS = ("MPIR_CVAR_NOLOCAL", "MPICH_NOLOCAL", "MPIR_PARAM_NOLOCAL")
_SHM_VARS = ("MPIR_CVAR_CH4_SHM", "MPICH_CH4_SHM", "MPIR_PARAM_CH4_SHM")


def shared_memory_rma(n_nodes):
    """True when one-sided operations need no progress from their target:
    the job's ranks are all on one node (``n_nodes``, e.g.
    ``Layout.n_nodes``) and the MPI is MPICH with its shared-memory module in
    its default setting.  The origin then reads and accumulates into the
    target's window memory itself: with a server that made no MPI call for
    1 s, a 3-rank ``jobs.mf`` run's flushes took as long as with one polling
    every 1 ms, while over the network modules such a server stalls every
    flush (docs/mpich-network.md).  Any other MPI, ``MPIR_CVAR_NOLOCAL`` set
    (ranks talk as across nodes) or the shared-memory module chosen by hand:
    False."""
    if int(n_nodes) != 1:
        return False
    from mpi4py import MPI
    try:
        if "MPICH" not in MPI.Get_library_version():
            return False
    except Exception:           # noqa: BLE001 - an unusual MPI: assume it needs progress
        return False
    if any(os.environ.get(v, "0").strip().lower() not in ("", "0", "no", "false")
           for v in _NOLOCAL_VARS):
        return False
    return not any(os.environ.get(v) for v in _SHM_VARS)


def wait(request, backoff=None, poll=None):
    """Complete ``request`` by testing and sleeping; never spins.  ``poll``
    (if given) is called between tests, while the request is pending."""
    backoff = backoff or Backoff()
    while not request.Test():
        if poll is not None:
            poll()
        backoff.sleep()


def barrier(comm, backoff=None, poll=None):
    """A barrier that sleeps while it waits (``Ibarrier`` + polite test)."""
    wait(comm.Ibarrier(), backoff, poll)


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
