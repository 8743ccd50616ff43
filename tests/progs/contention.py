"""Exact sums under contention (run under mpiexec).

Every worker adds seeded random values to the same rows at every clock --
scattered row subsets and whole-table increments -- for an int64 table (the
final sums must be exact) and a float64 table (to rounding).  Worker 0 checks
the final tables against the sums recomputed from every worker's seed.
"""
import argparse

import numpy as np

from ssp_mpi import Config, Session, TableSpec

p = argparse.ArgumentParser()
p.add_argument("--staleness", default="inf")
p.add_argument("--servers", type=int, default=1)
p.add_argument("--clocks", type=int, default=10)
p.add_argument("--rows", type=int, default=2000)
p.add_argument("--cols", type=int, default=7)
args = p.parse_args()


def increments(worker, clock):
    """What ``worker`` adds at ``clock``: (rows, int values, float values)."""
    rng = np.random.default_rng([11, worker, clock])
    rows = rng.choice(args.rows, size=rng.integers(1, args.rows), replace=True)
    iv = rng.integers(-1000, 1000, size=(rows.size, args.cols))
    fv = rng.standard_normal((rows.size, args.cols))
    return rows, iv, fv


def train(w):
    ti, tf = w.table("ints"), w.table("floats")
    for c in range(args.clocks):
        ti.get()
        tf.get()
        rows, iv, fv = increments(w.index, c)
        ti.inc(rows, iv)
        tf.inc(rows, fv)
        w.clock()
    return ti.get_final().copy(), tf.get_final().copy()


with Session(Config(servers=args.servers),
             tables=[TableSpec("ints", args.rows, args.cols, "int64", staleness=args.staleness),
                     TableSpec("floats", args.rows, args.cols, "float64", staleness=args.staleness)]) as ps:
    res = ps.run(train)
    if res.worker is not None and res.worker.is_leader:
        want_i = np.zeros((args.rows, args.cols), np.int64)
        want_f = np.zeros((args.rows, args.cols))
        for wk in range(ps.layout.n_workers):
            for c in range(args.clocks):
                rows, iv, fv = increments(wk, c)
                np.add.at(want_i, rows, iv)
                np.add.at(want_f, rows, fv)
        got_i, got_f = res.value
        if not np.array_equal(got_i, want_i):
            bad = np.argwhere(got_i != want_i)[0]
            raise AssertionError(f"int64 sums differ at {tuple(bad)}: {got_i[tuple(bad)]} != {want_i[tuple(bad)]}")
        err = np.abs(got_f - want_f).max()
        if err > 1e-9 * max(1.0, np.abs(want_f).max()):
            raise AssertionError(f"float64 sums differ by {err}")
        print(f"EXACT ints={int(np.abs(want_i).sum())} float_err={err:.3g} "
              f"workers={ps.layout.n_workers} servers={ps.layout.n_servers}", flush=True)
