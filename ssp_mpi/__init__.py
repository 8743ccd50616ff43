"""ssp-mpi: a Stale Synchronous Parallel parameter server on MPI RMA windows.

Public surface::

    Session, Config, TableSpec      the lifecycle, settings, tables
    RunResult, Worker               what run() gives back / what fn receives
    errors                          exceptions (subclasses of builtins)
    agree, run_main                 collective input checks, job entry point

Importing the package does not start MPI (so ``ssp_mpi.errors`` or
``ssp_mpi.checkpoint`` can be used by tools that never launch ranks); the
names below load on first use, and MPI starts when a module that needs it is
imported (after ``mpienv.prepare()`` has set the environment).
"""
import importlib

__version__ = "0.1.0"

_LAZY = {
    "Session": "session", "RunResult": "session",
    "Config": "config", "INF": "config", "parse_staleness": "config",
    "TableSpec": "table", "Worker": "worker",
    "agree": "failure", "run_main": "failure",
}

__all__ = sorted(_LAZY) + ["errors"]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "errors":
        return importlib.import_module(".errors", __name__)
    raise AttributeError(f"module 'ssp_mpi' has no attribute {name!r}")
