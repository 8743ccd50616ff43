"""Staleness test program (run under mpiexec).

Every worker adds 1 to its own column of every row at every clock, sleeping a
seeded random time first.  Every read is recorded and checked:

* read-my-writes: the worker's own column equals its clock exactly;
* SSP bound: every other column is >= c - s (all their clocks < c - s seen);
* at s = 0 (strict BSP): every other column equals c exactly.

With ``--subsets K`` each read is of one of K seeded random row sets (or of
all rows), chosen at random every clock: scattered and covering transfers,
and the fetch-clock bookkeeping of row sets, under the same checks.

Worker 0 prints one JSON line per worker with read statistics; any violation raises
(which aborts the job: non-zero exit).
"""
import argparse
import json
import math
import time

import numpy as np

from ssp_mpi import Config, Session, TableSpec, parse_staleness
from ssp_mpi.config import parse_straggle

p = argparse.ArgumentParser()
p.add_argument("--staleness", default="0")
p.add_argument("--servers", type=int, default=1)
p.add_argument("--clocks", type=int, default=12)
p.add_argument("--rows", type=int, default=10)
p.add_argument("--max-delay", type=float, default=0.02)
p.add_argument("--refresh", default="clock")
p.add_argument("--fixed-delay", type=float, default=None, help="sleep exactly this long per clock")
p.add_argument("--straggle", default="", help="WORKER:FACTOR (the library's straggler knob)")
p.add_argument("--subsets", type=int, default=0, help="read one of this many random row sets per clock")
p.add_argument("--check-staleness", default=None,
               help="bound to check (default: the table's); a smaller one must make the check fail")
args = p.parse_args()
table_s = parse_staleness(args.staleness)
s = table_s if args.check_staleness is None else parse_staleness(args.check_staleness)


def train(w):
    t = w.table("counter")
    rng = np.random.default_rng([7, w.index])
    w.read_log = []
    stale_reads = 0
    sets = [None] + [np.sort(rng.choice(args.rows, size=int(rng.integers(1, args.rows // 2 + 2)),
                                        replace=False)) for _ in range(args.subsets)]
    for c in range(args.clocks):
        time.sleep(args.fixed_delay if args.fixed_delay is not None else rng.uniform(0, args.max_delay))
        rows = sets[int(rng.integers(len(sets)))]
        if rows is None:
            view = t.get()[:, :w.n_workers]
        else:
            view = t.get(rows)[rows, :w.n_workers]
        mine = view[:, w.index]
        if not np.all(mine == c):
            raise AssertionError(f"read-my-writes broken: worker {w.index} at clock {c} sees {mine}")
        others = np.delete(view, w.index, axis=1)
        floor = c - s if not math.isinf(s) else 0
        if others.size and others.min() < floor:
            raise AssertionError(f"staleness bound broken: worker {w.index} at clock {c}, s={s}, "
                                 f"sees {others.min()} < {floor}")
        if s == 0 and others.size and not np.all(others == c):
            raise AssertionError(f"BSP broken: worker {w.index} at clock {c} sees {others}")
        if others.size and others.min() < c:
            stale_reads += 1
        t.inc(np.arange(args.rows), np.ones(args.rows, np.int64), cols=np.full(args.rows, w.index))
        w.clock()
    final = t.get_final()[:, :w.n_workers]
    if not np.all(final == args.clocks):
        raise AssertionError(f"final table wrong: {final}")
    tot = w.stats.totals()
    return w.gather({"worker": w.index, "stale_reads": stale_reads, "wait_s": tot["wait_s"],
                     "compute_s": tot["compute_s"], "reads": len(w.read_log)})


MAX_WORKERS = 16
with Session(Config(servers=args.servers, straggle=parse_straggle(args.straggle)),
             tables=[TableSpec("counter", args.rows, MAX_WORKERS, "int64", staleness=table_s,
                               refresh=args.refresh)]) as ps:
    res = ps.run(train)
    if res.worker is not None and res.worker.is_leader:
        for r in res.value:
            print("RESULT " + json.dumps(r), flush=True)
