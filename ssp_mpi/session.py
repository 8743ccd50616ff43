"""The session: the whole parameter-server lifecycle in one context manager.

::

    with Session(config, tables=[TableSpec("W", 1000, 16)]) as ps:
        result = ps.run(train)          # train(worker) runs on every worker

``Session(...)`` (collective over ``comm``, default ``COMM_WORLD``):

1. duplicates the communicator (the caller's is never used directly);
2. decides every rank's role (``Layout``), raising ``LayoutError`` on every
   rank when the world is too small -- before anything is allocated;
3. checks that the global configuration and the table specs are identical
   on every rank (``ConfigMismatchError`` otherwise);
4. allocates one window per table (shards on servers, nothing on workers)
   and the control board, and writes the initial values.

``run(fn)`` runs ``fn(worker)`` on the workers while the servers serve, and
ends when every worker returned.  Leaving the ``with`` block frees every
window and communicator.  An exception on any rank aborts the whole job.
"""
import logging
from dataclasses import dataclass

from . import failure, mpienv

mpienv.prepare()
from mpi4py import MPI  # noqa: E402  (after the environment is prepared)

from . import checkpoint, signals  # noqa: E402
from .board import Board  # noqa: E402
from .cut import Cutter, StopTraining  # noqa: E402
from .config import Config, check_agreement  # noqa: E402
from .errors import UsageError  # noqa: E402
from .layout import Layout  # noqa: E402
from .server import Server  # noqa: E402
from .table import TableSpec, shard_shape  # noqa: E402
from .window import ShardWindow  # noqa: E402
from . import partition  # noqa: E402
from .worker import Worker  # noqa: E402

log = logging.getLogger("ssp_mpi.session")


@dataclass
class RunResult:
    """What ``Session.run`` returns on every rank.

    value    the worker function's return value (None on servers)
    summary  aggregated compute/comm/wait seconds and bytes over all workers
             (on workers; None on servers)
    worker   the Worker object (on workers; None on servers)
    """
    value: object
    summary: dict
    worker: object = None
    stopped: bool = False        # True when a stop request ended the run (after a checkpoint)
    checkpoints: tuple = ()      # folders of the checkpoints this run wrote


class Session:
    """See the module docstring.  ``resume``: a checkpoint folder (or a
    ``checkpoint.Checkpoint``, or ``"latest"``: the newest complete one in
    ``config.checkpoint_dir``) to start from instead of the initial values:
    tables are loaded (resharded onto this run's servers) and the clocks
    start at the checkpoint's clock; workers find it in ``worker.resumed``."""

    def __init__(self, config=None, tables=(), *, comm=None, resume=None):
        failure.install_excepthook()
        signals.install()
        self.config = config if config is not None else Config()
        specs = [t if isinstance(t, TableSpec) else TableSpec(**t) for t in tables]
        names = [t.name for t in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"table names must be unique, got {names}")
        self.specs = {t.name: t for t in specs}
        base = MPI.COMM_WORLD if comm is None else comm
        if base == MPI.COMM_NULL:
            raise ValueError("comm must be a valid communicator, not COMM_NULL")
        self.comm = base.Dup()
        self.windows = {}
        self.board = None
        self.cut_comm = None
        self._closed = False
        self._ran = False
        try:
            self.layout = Layout.from_comm(self.comm, self.config.servers)
            self.resume = failure.agree(self.comm, self._open_resume, resume)
            self.start_clock = self.resume.clock if self.resume is not None else 0
            failure.set_role(f"{'server' if self.layout.is_server else 'worker'} "
                             f"{self.layout.server_index if self.layout.is_server else self.layout.worker_index}")
            check_agreement(self.comm, {"config": self.config.to_dict(),
                                        "tables": [t.describe() for t in specs],
                                        "world_size": self.comm.size})
            self.role_comm = self.comm.Split(0 if self.layout.is_worker else 1, self.comm.rank)
            self.cut_comm = self.comm.Dup()
            self._allocate()
            self.cutter = Cutter(self)
        except BaseException:
            self._free()
            raise

    # -- set-up -----------------------------------------------------------
    def _open_resume(self, resume):
        """Open (rank 0 also verifies) the checkpoint and check its tables."""
        if resume is None:
            return None
        if isinstance(resume, checkpoint.Checkpoint):
            resume = resume.path
        if resume in (True, "latest"):
            if not self.config.checkpoint_dir:
                raise checkpoint.CheckpointError("--resume needs a checkpoint folder "
                                                 "(--checkpoint-dir, or --resume PATH)")
            resume = checkpoint.resolve(True, self.config.checkpoint_dir).path
        ck = checkpoint.Checkpoint.open(resume, verify=self.comm.rank == 0)
        for name, spec in self.specs.items():
            t = ck.tables.get(name)
            if t is None:
                raise checkpoint.CheckpointError(f"{ck.path}: has no table {name!r} "
                                                 f"(it has {sorted(ck.tables)})")
            if (t["rows"], t["cols"], t["dtype"]) != (spec.rows, spec.cols, spec.dtype):
                raise checkpoint.CheckpointError(
                    f"{ck.path}: table {name!r} is {t['rows']} x {t['cols']} {t['dtype']} there "
                    f"but {spec.rows} x {spec.cols} {spec.dtype} now; resume with the same options")
        return ck

    def _allocate(self):
        rank = self.comm.rank
        from kernels import oplog, rows as row_kernels
        mpienv.compile_once(self.comm, lambda: (oplog.warmup(), row_kernels.warmup()))
        for name, spec in self.specs.items():
            self.windows[name] = ShardWindow(shard_shape(spec, self.layout, rank), spec.dtype,
                                             comm=self.comm)
        self.board = Board(self.layout, comm=self.comm, clock=self.start_clock)
        if self.layout.is_server:
            s, n = self.layout.server_index, self.layout.n_servers
            for name, spec in self.specs.items():
                rows = partition.global_rows(spec.rows, n, s)
                values = (spec.initial_rows(rows) if self.resume is None
                          else self.resume.read_rows(name, s, n))
                with self.windows[name].local_epoch(rank) as mem:
                    mem[...] = values
        mpienv.barrier(self.comm)

    def shard(self, name):
        """(global row ids, local shard array) of table ``name`` on this
        server; use inside ``window.local_epoch`` when workers are active."""
        spec = self.specs[name]
        rows = partition.global_rows(spec.rows, self.layout.n_servers, self.layout.server_index)
        return rows, self.windows[name].local

    # -- running ----------------------------------------------------------
    def run(self, fn):
        """Run ``fn(worker)`` on every worker rank; servers serve meanwhile."""
        if self._closed:
            raise UsageError("this session is closed; create a new Session")
        if self._ran:
            raise UsageError("Session.run may be called once; create a new Session for another run")
        self._ran = True
        if self.layout.is_server:
            server = Server(self)
            server.hooks.append(self.cutter.server_hook)
            with self.board.window.access_all():      # servers may raise flags (signals)
                server.serve(self.comm.Ibarrier())
            return RunResult(None, None, None, stopped=self.cutter.stopped,
                             checkpoints=tuple(self.cutter.written))
        worker = Worker(self, self.role_comm)
        wins = [w.win for w in self.windows.values()] + [self.board.window.win]
        for win in wins:
            win.Lock_all(MPI.MODE_NOCHECK)
        stopped = False
        try:
            try:
                value = fn(worker)
            except StopTraining:
                value, stopped = None, True
            worker.cuts.finished()
        except BaseException as e:          # noqa: BLE001 - one rank's error ends the job
            if getattr(e, "collective", False):    # raised on every rank together
                for win in wins:
                    win.Unlock_all()
                raise
            failure.abort(e)
        for win in wins:
            win.Unlock_all()
        summary = worker.summary()
        mpienv.wait(self.comm.Ibarrier())
        return RunResult(value, summary, worker, stopped=stopped,
                         checkpoints=tuple(self.cutter.written))

    # -- tear-down --------------------------------------------------------
    def _free(self):
        for w in self.windows.values():
            w.free()
        self.windows = {}
        if self.board is not None:
            self.board.free()
            self.board = None
        for c in ("cut_comm", "role_comm", "comm"):
            comm = getattr(self, c, None)
            if comm is not None and comm != MPI.COMM_NULL:
                comm.Free()
            setattr(self, c, None)

    def close(self):
        """Free every window and communicator (collective)."""
        if not self._closed:
            self._closed = True
            if self.comm is not None:
                mpienv.barrier(self.comm)
            self._free()

    def __enter__(self):
        return self

    def __exit__(self, etype, exc, tb):
        if exc is not None and not getattr(exc, "collective", False):
            failure.abort(exc)
        if exc is None:
            self.close()
        else:
            self._free()
