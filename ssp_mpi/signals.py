"""Signals that ask the job to checkpoint (and stop) at the next clock boundary.

| signal  | effect |
|---------|--------|
| SIGTERM | checkpoint at the next common clock boundary, then every rank exits with status 75 |
| SIGUSR1 | the same (SLURM sends it before a time limit with ``--signal=USR1@secs``) |
| SIGUSR2 | checkpoint at the next common clock boundary and carry on |

The handler only records the request; the worker (or server) loop turns it
into a flag on the control board, so one signalled rank is enough.
"""
import signal

CHECKPOINT = 1
STOP = 2

_pending = 0
_installed = False


def _handler(signum, frame):
    global _pending
    kind = CHECKPOINT if signum == signal.SIGUSR2 else STOP
    _pending = max(_pending, kind)


def install():
    """Install the handlers (main thread only; idempotent)."""
    global _installed
    if _installed:
        return
    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _handler)
    _installed = True


def take():
    """The strongest request received since the last call (0: none)."""
    global _pending
    kind, _pending = _pending, 0
    return kind
