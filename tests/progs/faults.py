"""Failure and politeness scenarios (run under mpiexec).

--mode mismatch   rank 1 starts with another seed -> ConfigMismatchError on every rank
--mode raise      worker 1 raises at clock 3 while the others keep working
--mode idle       workers compute (no communication) for --seconds; every
                  server reports the CPU seconds it used over that wall time
"""
import argparse
import json
import time

import numpy as np

from ssp_mpi import Config, Session, TableSpec, run_main

p = argparse.ArgumentParser()
p.add_argument("--mode", required=True, choices=["plain", "mismatch", "raise", "idle"])
p.add_argument("--servers", type=int, default=1)
p.add_argument("--seconds", type=float, default=2.0)
args = p.parse_args()


def main(argv=None):
    from mpi4py import MPI
    rank = MPI.COMM_WORLD.rank
    seed = rank if args.mode == "mismatch" else 0
    tables = [TableSpec("t", 100, 4, "float64", staleness=1)]

    def train(w):
        t = w.table("t")
        for c in range(6):
            t.get()
            if args.mode == "raise" and w.index == 1 and c == 3:
                raise RuntimeError("deliberate failure in worker 1")
            if args.mode == "idle":
                end = time.perf_counter() + args.seconds / 4
                x = 0.0
                while time.perf_counter() < end:       # pure computation
                    x += float(np.sum(np.sqrt(np.arange(1000.0))))
            t.inc([c], np.ones((1, 4)))
            w.clock()
            if args.mode == "raise":
                time.sleep(0.2)
        return c

    with Session(Config(servers=args.servers, seed=seed), tables=tables) as ps:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        ps.run(train)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        role = "server" if ps.layout.is_server else "worker"
        report = MPI.COMM_WORLD.gather((role, cpu, wall), root=0)
        if rank == 0:
            for r, (role, cpu, wall) in enumerate(report):
                print("USAGE " + json.dumps({"rank": r, "role": role, "cpu_s": cpu, "wall_s": wall}),
                      flush=True)
    return 0


raise SystemExit(run_main(main))
