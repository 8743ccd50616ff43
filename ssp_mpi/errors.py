"""Exceptions of ssp-mpi.  Each subclasses a builtin and says what to do."""


class SSPError(RuntimeError):
    """Base class of every error raised by ssp-mpi."""


class LayoutError(SSPError, ValueError):
    """The MPI world cannot be split into servers and workers as asked
    (e.g. too few ranks).  Start more ranks or ask for fewer servers.
    Every rank computes the same layout, so every rank raises it."""
    collective = True


class ConfigMismatchError(SSPError, ValueError):
    """Ranks were started with different global settings (options, table
    shapes).  Start every rank with the same command line.  Raised on every
    rank after comparing all ranks' settings."""
    collective = True


class InputError(SSPError, ValueError):
    """Malformed input: the message names the file and line or the option.

    ``collective`` is True when every rank raised it together (after an
    agreement step), so the job may exit cleanly with a message printed once
    instead of aborting the MPI world.
    """

    def __init__(self, message, *, collective=False):
        super().__init__(message)
        self.collective = collective


class UsageError(SSPError):
    """The library was used in the wrong order (e.g. a table read after the
    session was closed).  The message says which call to make first."""
