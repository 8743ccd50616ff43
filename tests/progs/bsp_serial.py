"""s = 0 equals a serial simulation of the same BSP schedule (under mpiexec).

At every clock each worker reads the whole table and adds an increment that
depends non-linearly on what it read, so any read of the wrong version
changes the result.  Worker 0 replays the same schedule serially: at clock c
every worker sees exactly the table after clocks 0..c-1.  Integer table:
equal exactly; float table: equal to rounding.  Prints a digest so that two
runs can be compared for reproducibility.
"""
import argparse
import hashlib

import numpy as np

from ssp_mpi import Config, Session, TableSpec

p = argparse.ArgumentParser()
p.add_argument("--servers", type=int, default=1)
p.add_argument("--clocks", type=int, default=8)
p.add_argument("--rows", type=int, default=300)
p.add_argument("--cols", type=int, default=5)
p.add_argument("--staleness", default="0")
args = p.parse_args()


def step(ints, floats, worker, clock):
    """Increments of ``worker`` at ``clock`` given the values it read."""
    rng = np.random.default_rng([5, worker, clock])
    rows = np.unique(rng.choice(args.rows, size=args.rows // 3))
    di = (ints[rows] * (worker + 3) + clock) % 11 - 5
    df = np.sin(floats[rows] * (worker + 1) + clock) + ints[rows] * 1e-3
    return rows, di.astype(np.int64), df


def init(ids):
    return np.outer(ids % 13, np.arange(1, args.cols + 1)).astype(np.float64)


def train(w):
    ti, tf = w.table("ints"), w.table("floats")
    for c in range(args.clocks):
        rows, di, df = step(ti.get().copy(), tf.get().copy(), w.index, c)
        ti.inc(rows, di)
        tf.inc(rows, df)
        w.clock()
    return ti.get_final().copy(), tf.get_final().copy()


with Session(Config(servers=args.servers),
             tables=[TableSpec("ints", args.rows, args.cols, "int64", staleness=args.staleness,
                               init=lambda ids: init(ids).astype(np.int64)),
                     TableSpec("floats", args.rows, args.cols, "float64", staleness=args.staleness,
                               init=init)]) as ps:
    res = ps.run(train)
    if res.worker is not None and res.worker.is_leader:
        ints = init(np.arange(args.rows)).astype(np.int64)
        floats = init(np.arange(args.rows))
        for c in range(args.clocks):
            snap_i, snap_f = ints.copy(), floats.copy()
            for wk in range(ps.layout.n_workers):
                rows, di, df = step(snap_i, snap_f, wk, c)
                ints[rows] += di
                floats[rows] += df
        got_i, got_f = res.value
        same_i = np.array_equal(got_i, ints)
        ferr = float(np.abs(got_f - floats).max())
        digest = hashlib.sha256(got_i.tobytes()).hexdigest()[:16]
        print(f"SERIAL ints_equal={same_i} float_err={ferr:.3g} digest={digest}", flush=True)
        if not same_i or ferr > 1e-9:
            raise SystemExit(3)
