"""One rank's failure ends the whole job: no rank is left hanging.

* ``abort(exc)`` prints the failing rank, its role and the error once (from
  that rank) and calls ``MPI.COMM_WORLD.Abort``, which ends every rank.
* ``agree(comm, fn)`` runs ``fn`` on every rank and, if it failed anywhere,
  raises the same ``InputError`` on every rank (naming the first failing
  rank), so a bad input file never leaves ranks waiting in a collective.
* ``run_main(main)`` is the entry point of every job: collective errors exit
  with status 2 and one message; any other exception aborts the world.
"""
import os
import socket
import sys
import time
import traceback

from . import mpienv
from .errors import InputError, SSPError

EXIT_INPUT = 2          # bad input / options / layout, reported on every rank
EXIT_ABORT = 1          # an unexpected exception on some rank
EXIT_STOPPED = 75       # stopped on a signal after writing a checkpoint (EX_TEMPFAIL: resume it)
ABORT_GRACE_S = 0.3     # between printing a failure and aborting (see abort)

_role = "rank"


def set_role(role):
    global _role
    _role = role


def launcher_rank():
    """World rank as told by the launcher's environment (no MPI call)."""
    for key in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID", "MPI_LOCALRANKID"):
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                pass
    return 0


def _world_rank():
    if "mpi4py.MPI" in sys.modules:
        MPI = sys.modules["mpi4py.MPI"]
        if MPI.Is_initialized() and not MPI.Is_finalized():
            return MPI.COMM_WORLD.rank
    return launcher_rank()


def abort(exc, code=EXIT_ABORT):
    """Report ``exc`` from this rank and end the whole MPI job."""
    rank = _world_rank()
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(f"ssp-mpi: rank {rank} ({_role}) on {socket.gethostname()} failed: "
                     f"{type(exc).__name__}: {exc}\n{text}")
    sys.stderr.flush()
    sys.stdout.flush()
    # The launcher forwards a rank's output from a pipe; Abort makes it kill
    # every rank, and a forwarder not yet scheduled to drain that pipe loses
    # the message (seen once in CI: a failed run with empty stderr, on a
    # loaded 2-core machine).  A moment's grace lets it drain.
    time.sleep(ABORT_GRACE_S)
    mpienv.prepare()
    from mpi4py import MPI
    if MPI.Is_initialized() and not MPI.Is_finalized():
        MPI.COMM_WORLD.Abort(code)
    os._exit(code)


def _excepthook(etype, value, tb):
    if isinstance(value, SSPError) and getattr(value, "collective", False):
        if _world_rank() == 0:
            sys.stderr.write(f"ssp-mpi: error: {value}\n")
        return
    abort(value)


def install_excepthook():
    sys.excepthook = _excepthook


def agree(comm, fn, *args, **kwargs):
    """Run ``fn`` on every rank of ``comm``; if any rank failed, raise an
    ``InputError`` on all of them with the first failure's message."""
    try:
        result, err = fn(*args, **kwargs), None
    except (InputError, ValueError, OSError, KeyError, TypeError, IndexError) as e:
        result, err = None, f"{e}" if isinstance(e, (InputError, ValueError)) else f"{type(e).__name__}: {e}"
    errors = comm.allgather(err)
    failed = [r for r, e in enumerate(errors) if e is not None]
    if failed:
        r = failed[0]
        where = "" if len(failed) == comm.size else f" (on rank {r})"
        raise InputError(f"{errors[r]}{where}", collective=True)
    return result


def run_main(main, argv=None):
    """Call ``main(argv)`` and turn its outcome into an exit status."""
    install_excepthook()
    try:
        code = main(argv)
    except SSPError as e:
        if getattr(e, "collective", False):
            if _world_rank() == 0:
                sys.stderr.write(f"ssp-mpi: error: {e}\n")
                sys.stderr.flush()
            return EXIT_INPUT
        abort(e)
    except SystemExit:
        raise
    except BaseException as e:          # noqa: BLE001 - any failure ends the job
        abort(e)
    return int(code or 0)
