"""Checkpoint / resume test program (run under mpiexec).

A deterministic SSP algorithm with local worker state: at every clock each
worker reads the tables, draws from its own RNG (state saved in checkpoints)
and adds increments that depend on what it read and on its running local sum.
Worker 0 prints a digest of the final tables and of every worker's local state.

--clocks N           train until clock N (counted from the start, also on resume)
--resume [PATH]      continue from the newest checkpoint in --checkpoint-dir (or PATH)
--pid-dir DIR        every rank writes DIR/rank-<r>.pid (for tests that send signals)
--sleep S            sleep S seconds per clock (gives a signal time to land)
--allreduce          an allreduce among the workers after every read (as a job's
                     evaluation does)
--signal-at C        worker 0 sends itself SIGUSR1 late in clock C, after the
                     others have passed that clock's boundary
"""
import argparse
import hashlib
import os
import signal
import time

import numpy as np

from ssp_mpi import Config, Session, TableSpec, run_main
from ssp_mpi.checkpoint import resolve

p = argparse.ArgumentParser()
p.add_argument("--clocks", type=int, default=8)
p.add_argument("--staleness", default="0")
p.add_argument("--servers", type=int, default=1)
p.add_argument("--checkpoint-dir", default=None)
p.add_argument("--checkpoint-every", type=int, default=0)
p.add_argument("--keep", type=int, default=3)
p.add_argument("--resume", nargs="?", const="latest", default=None)
p.add_argument("--pid-dir", default=None)
p.add_argument("--sleep", type=float, default=0.0)
p.add_argument("--allreduce", action="store_true")
p.add_argument("--signal-at", type=int, default=None)
args = p.parse_args()
ROWS, COLS = 50, 3


def main(argv=None):
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.rank
    if args.pid_dir:
        with open(os.path.join(args.pid_dir, f"rank-{rank}.pid"), "w") as f:
            f.write(str(os.getpid()))
    resume = None
    if args.resume:
        resume = resolve(True if args.resume == "latest" else args.resume, args.checkpoint_dir)
    cfg = Config(servers=args.servers, checkpoint_dir=args.checkpoint_dir,
                 checkpoint_every=args.checkpoint_every, keep=args.keep,
                 job={"clocks": args.clocks})
    tables = [TableSpec("ints", ROWS, COLS, "int64", staleness=args.staleness),
              TableSpec("floats", ROWS, COLS, "float64", staleness=args.staleness)]

    def train(w):
        ti, tf = w.table("ints"), w.table("floats")
        rng = np.random.default_rng([3, w.index])
        local = 0.0
        if w.resumed is not None:
            st = w.resumed.worker_state(w.index)
            raw = st["rng"].tobytes()
            pcg = rng.bit_generator.state
            pcg["state"] = {"state": int.from_bytes(raw[:16], "little"),
                            "inc": int.from_bytes(raw[16:32], "little")}
            pcg["has_uint32"] = int(raw[32])                 # the buffered 32-bit half
            pcg["uinteger"] = int.from_bytes(raw[33:37], "little")
            rng.bit_generator.state = pcg
            local = float(st["local"])

        def state():
            full = rng.bit_generator.state
            s = full["state"]
            raw = (s["state"].to_bytes(16, "little") + s["inc"].to_bytes(16, "little")
                   + bytes([full["has_uint32"]]) + int(full["uinteger"]).to_bytes(4, "little"))
            return {"rng": np.frombuffer(raw, np.uint8).copy(), "local": np.float64(local)}
        w.set_state(state)
        while w.clock_value < args.clocks:
            c = w.clock_value
            vi, vf = ti.get(), tf.get()
            if args.allreduce:
                w.allreduce(np.float64(vf.sum()))
            rows = rng.choice(ROWS, size=10, replace=False)
            di = (vi[rows] * (w.index + 2) + c) % 7 - 3
            df = np.cos(vf[rows]) + 0.01 * local
            local += float(df.sum())
            ti.inc(rows, di)
            tf.inc(rows, df)
            if args.sleep:
                time.sleep(args.sleep)
            if c == args.signal_at and w.index == 0:
                time.sleep(0.3)        # the others wait for this clock meanwhile
                os.kill(os.getpid(), signal.SIGUSR1)
            w.clock()
            if args.pid_dir and w.is_leader:
                with open(os.path.join(args.pid_dir, "clock"), "w") as f:
                    f.write(str(w.clock_value))
        final_i, final_f = ti.get_final().copy(), tf.get_final().copy()
        locals_ = w.gather(local)
        return final_i, final_f, locals_

    with Session(cfg, tables=tables, resume=resume) as ps:
        res = ps.run(train)
        if res.worker is not None and res.worker.is_leader:
            if res.stopped:
                print(f"STOPPED at clock {res.worker.clock_value}", flush=True)
            else:
                fi, ff, locals_ = res.value
                h = hashlib.sha256(fi.tobytes() + np.round(ff, 8).tobytes()).hexdigest()[:16]
                print(f"FINAL clock={res.worker.clock_value} digest={h} "
                      f"locals={','.join(f'{x:.6f}' for x in locals_)}", flush=True)
        stopped = res.stopped
    return 75 if stopped else 0


raise SystemExit(run_main(main))
