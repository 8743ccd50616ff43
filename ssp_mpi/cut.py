"""Consistent cuts: when every worker stands at the same clock boundary.

Periodic checkpoints are cut at every clock ``T`` with ``T % every == 0``:
every worker knows ``T`` in advance.  A request (a signal on any rank) is
agreed through the control board, so that no worker passes the cut clock:

1. a rank that got a signal raises ``FLAG_REQUEST = (generation << 2) | kind``;
2. each worker, at its next clock boundary (after publishing its clock),
   sees the request, records the clock it stands at, and waits until every
   worker has recorded one; the cut clock ``T`` is the largest of them.
   A worker that is waiting elsewhere -- for an SSP read, or in a collective
   among workers such as a job's evaluation ``allreduce`` -- answers from
   there, recording the next boundary it will reach;
3. workers behind ``T`` keep training until they reach it.  Nobody is ahead.

A worker waiting in step 2 never blocks the others' reads: it has already
published its clock, so no SSP read waits on it.  A collective does wait for
it, which is why waiting in a collective answers the request too.  If some
worker's run has ended the request is dropped (the job is finishing anyway).

At the cut (server clock == T: every increment of clocks < T is at the
servers, none of clock T is) all ranks write the checkpoint together on a
communicator of their own, then training resumes or, for a stop request,
ends everywhere at once.
"""
import logging
import os
from pathlib import Path

from . import checkpoint, mpienv, signals
from .board import DONE, FLAG_REQUEST
from .errors import SSPError

log = logging.getLogger("ssp_mpi.cut")
TAG_CUT = 701


class StopTraining(SSPError):
    """Raised on every worker after a stop request's checkpoint was written."""
    collective = True


def _fault_injection(clock, server):
    """Tests only: ``SSP_MPI_FAULT_KILL_IN_CHECKPOINT=<clock>`` makes server 0
    die by SIGKILL right after writing its shard of that clock's checkpoint,
    as a crash in the middle of a checkpoint would."""
    target = os.environ.get("SSP_MPI_FAULT_KILL_IN_CHECKPOINT")
    if target is not None and server == 0 and int(target) == clock:
        import signal
        os.kill(os.getpid(), signal.SIGKILL)


class Cutter:
    """Writes checkpoints collectively over ``session.cut_comm``."""

    def __init__(self, session):
        self.session = session
        self.comm = session.cut_comm
        self.layout = session.layout
        cfg = session.config
        self.root = Path(cfg.checkpoint_dir) if cfg.checkpoint_dir else None
        self.every = int(cfg.checkpoint_every or 0)
        self.keep = int(cfg.keep or 1)
        self.generation = 0
        self.written = []            # paths of the checkpoints written by this run

    # -- the collective write -----------------------------------------------
    def _sync(self):
        mpienv.barrier(self.comm)

    def write(self, clock, kind, items):
        """Collective: write the checkpoint of ``clock``; returns (path, kind).
        ``items``: on servers {table: (global rows, values)}, on workers the
        job's state dict.  The leader's ``kind`` is the one everyone uses."""
        leader = self.layout.leader
        token = None
        if self.comm.rank == leader and self.root is not None:
            try:
                token = os.urandom(6).hex()
                checkpoint.begin(self.root, clock, token)
            except OSError as e:
                token = ("error", f"cannot create a checkpoint in {self.root}: {e}")
        self._sync()
        token, kind = self.comm.bcast((token, kind), root=leader)
        if self.root is None:
            return None, kind
        if isinstance(token, tuple):
            raise checkpoint.CheckpointError(token[1])
        tmp = self.root / f"{checkpoint.name_for(clock)}.tmp-{token}"
        try:
            if self.layout.is_server:
                sums = checkpoint.write_shard(tmp, self.layout.server_index, items)
                _fault_injection(clock, self.layout.server_index)
            else:
                sums = checkpoint.write_worker(tmp, self.layout.worker_index, items)
            err = None
        except Exception as e:          # noqa: BLE001 - reported collectively below
            sums, err = None, f"rank {self.comm.rank}: {type(e).__name__}: {e}"
        self._sync()
        results = self.comm.gather((sums, err), root=leader)
        outcome = None
        if self.comm.rank == leader:
            errors = [e for _, e in results if e]
            if errors:
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
                outcome = ("error", "checkpoint not written: " + "; ".join(errors))
            else:
                merged = {}
                for s, _ in results:
                    merged.update(s)
                try:
                    final = checkpoint.finish(tmp, self._meta(clock), merged, self.keep)
                    outcome = ("ok", str(final))
                except Exception as e:  # noqa: BLE001
                    outcome = ("error", f"checkpoint not written: {type(e).__name__}: {e}")
        self._sync()
        status, text = self.comm.bcast(outcome, root=leader)
        if status != "ok":
            raise checkpoint.CheckpointError(text)
        self.written.append(text)
        return text, kind

    def _meta(self, clock):
        lay = self.layout
        return {"clock": int(clock),
                "config": self.session.config.to_dict(),
                "layout": {"n_servers": lay.n_servers, "n_workers": lay.n_workers,
                           "servers": list(lay.servers), "workers": list(lay.workers)},
                "tables": {name: {"rows": s.rows, "cols": s.cols, "dtype": s.dtype,
                                  "staleness": str(s.staleness)}
                           for name, s in self.session.specs.items()}}

    # -- server side ----------------------------------------------------------
    def server_items(self):
        out = {}
        for name in self.session.specs:
            rows, _ = self.session.shard(name)
            win = self.session.windows[name]
            with win.local_epoch(self.comm.rank, shared=True) as mem:
                out[name] = (rows, mem.copy())
        return out

    def server_hook(self):
        """Poll for a cut message and for signals; returns True if it acted."""
        acted = False
        kind = signals.take()
        if kind:
            self.session.board.raise_flag(FLAG_REQUEST, ((self.generation + 1) << 2) | kind)
            acted = True
        if self.comm.iprobe(source=self.layout.leader, tag=TAG_CUT):
            clock, kind, requested = self.comm.recv(source=self.layout.leader, tag=TAG_CUT)
            _, kind = self.write(clock, kind, self.server_items())
            if requested:
                self.generation += 1
            if kind == signals.STOP:
                self.stopped = True
            acted = True
        return acted

    stopped = False


class WorkerCuts:
    """The worker's side of cuts.

    ``note`` is called with every board snapshot a waiting worker reads;
    ``boundary`` at every clock boundary.  A worker answers a request by
    publishing the earliest boundary it can still stop at: the one it stands
    at, or -- when it answers from inside a wait -- the next one.
    """

    def __init__(self, cutter, worker, board):
        self.cutter = cutter
        self.w = worker
        self.board = board
        self.target = None            # agreed cut clock of a request
        self.seen = 0                 # newest request generation answered
        self.state_fn = None
        self.ended = False            # finished(): the run is over, no more answers

    def note(self, snapshot, stop_at):
        gen = self.board.flag(FLAG_REQUEST, snapshot) >> 2
        if gen > self.cutter.generation and gen > self.seen:
            self.board.publish_seen(self.w.index, (gen << 32) | stop_at)
            self.seen = gen

    def boundary(self, snapshot):
        """Called right after the worker published clock ``c``, with the
        board as read in the same round trip."""
        w, board = self.w, self.board
        c = w.clock_value
        kind = signals.take()
        if kind:
            board.raise_flag(FLAG_REQUEST, ((self.cutter.generation + 1) << 2) | kind)
            snapshot = None                 # read again: the flag just raised
        elif (self.target is None and not self.cutter.every
              and board.flag(FLAG_REQUEST, snapshot) >> 2 <= self.cutter.generation):
            return                          # the common case: nothing to do here
        if self.target is None:
            if snapshot is None:
                with w.stats.comm():
                    snapshot = board.read()
            self.note(snapshot, c)
            if self.seen > self.cutter.generation:
                self._agree(self.seen)
        requested = self.target is not None and self.target == c
        periodic = self.cutter.every and c % self.cutter.every == 0
        if requested or periodic:
            self._cut(c, requested)

    def _agree(self, gen):
        """Wait until every worker answered request ``gen``; the cut clock is
        the latest boundary any of them named."""
        backoff = mpienv.Backoff()
        with self.w.stats.wait():
            while True:
                seen = self.board.requests_seen()
                if (seen == DONE).any():           # a worker finished: drop it
                    self.cutter.generation = gen
                    return
                if ((seen >> 32) == gen).all():
                    self.target = int((seen & 0xFFFFFFFF).max())
                    return
                backoff.sleep()

    def _cut(self, clock, requested):
        w, board = self.w, self.board
        with w.stats.wait():                       # every worker at the boundary
            backoff = mpienv.Backoff()
            while board.server_clock() < clock:
                if (board.requests_seen() == DONE).any():
                    raise SSPError(f"a worker ended its run before clock {clock}: every "
                                   "worker must run the same number of clocks for checkpoints")
                backoff.sleep()
        kind = signals.CHECKPOINT
        if requested:
            kind = board.flag(FLAG_REQUEST) & 3
        comm = self.cutter.comm
        if w.is_leader:
            for s in self.cutter.layout.servers:
                comm.send((clock, kind, requested), dest=s, tag=TAG_CUT)
        state = self.state_fn() if self.state_fn is not None else {}
        with w.stats.comm():
            path, kind = self.cutter.write(clock, kind, state)
        if requested:
            self.cutter.generation += 1
            self.target = None
        if path:
            log.info("checkpoint at clock %d: %s", clock, path)
            if w.is_leader:
                print(f"checkpoint: clock {clock} -> {path}", flush=True)
        if kind == signals.STOP:
            raise StopTraining(f"stopped at clock {clock} on request; resume with --resume")

    def in_collective(self):
        """Called while the worker waits in a collective among workers
        (barrier, allreduce, ...).  A worker standing at its clock boundary
        waits for every worker's answer to a request before it goes on, and
        it may be the one this collective waits for: so answer here, naming
        the next boundary, or the two would wait for each other for ever."""
        if not self.ended:
            self.note(self.board.read(), self.w.clock_value + 1)

    def finished(self):
        """The worker's run ended: never wait for it in a request again."""
        self.ended = True
        self.board.publish_seen(self.w.index, DONE)
