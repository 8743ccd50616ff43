"""ssp-mpi: a Stale Synchronous Parallel parameter server on MPI RMA windows.

Public surface::

    Session, Config, TableSpec      the lifecycle, settings, tables
    RunResult, Worker               what run() gives back / what fn receives
    errors                          exceptions (subclasses of builtins)
    agree, run_main                 collective input checks, job entry point
"""
from . import mpienv

mpienv.prepare()

from . import errors  # noqa: E402
from .config import INF, Config, parse_staleness  # noqa: E402
from .failure import agree, run_main  # noqa: E402
from .session import RunResult, Session  # noqa: E402
from .table import TableSpec  # noqa: E402
from .worker import Worker  # noqa: E402

__all__ = ["Session", "Config", "TableSpec", "RunResult", "Worker", "errors",
           "agree", "run_main", "parse_staleness", "INF"]
__version__ = "0.1.0"
