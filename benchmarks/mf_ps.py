"""Parameter-server efficiency of jobs.mf: ratings/s per worker, 1 server + 2 workers, vs the standalone kernel.

    python -m benchmarks.mf_ps [--ratings 3000000] [--rank 32] [--epochs 30] [--staleness 0 1 3]

For each staleness s, ``jobs.mf`` is launched with 3 ranks (1 server, 2
workers) through ``ssp_mpi.launch.mpiexec`` on built-in synthetic data, and a
standalone run of the same kernel is timed in one process (also started inside
the loopback-only namespace, with ``NUMBA_NUM_THREADS=1`` like the ranks) on
the same data: the same train/test split, the same two per-worker shares of
the ratings (``jobs.mf.user_bounds`` for 2 workers), the same tile order
(``jobs.mf.MfWorker``), rank, step-size schedule and clocks per epoch.  The
standalone run processes share 0 and then share 1, clock slice by clock slice,
and its per-worker rate is (ratings of both shares x epochs) / (time of both).
Rounds interleave the job runs and the standalone run (s=0, s=1, s=3,
standalone, then again), so a busy spell of the shared machine hits all of
them; the table shows the median of each figure over the rounds and the
median of the round-by-round ratios job / standalone (target >= 0.9 at s >= 1).

What is counted
  job, wall:   ``summary.json`` ``ratings_per_s_per_worker`` = n_train x epochs /
               training-loop wall time of the slowest worker / workers.  The loop
               includes every SSP read (fetch of item rows), the kernel, the
               oplog push + flush + clock, and waiting for the other worker.
               The job runs with ``--eval-every 0``, so there is no evaluation
               inside the loop.
  job, compute: per-worker ratings x epochs / ``compute_s`` (mean over workers of
               the clock time that is neither communication nor waiting:
               the kernel plus Python glue).  ``comm_s`` and ``wait_s`` are the
               other parts of each worker's clocks (means over workers).
  job, CPU:    per-worker ratings x epochs / CPU seconds (``time.process_time``)
               the worker spent in its clocks.  ``summary.json`` has no CPU
               time, so the ranks run ``jobs.mf.main`` through a thin wrapper in
               this module that reads ``process_time()`` when the job calls
               ``ClockStats.restart_clock`` (start of training) and at the end
               of the last clock, and writes it to a file beside the outputs.
  standalone:  only the kernel calls (``MfWorker.step``: ``kernels.mf.sgd_epoch``
               on the slice of each clock), wall (``perf_counter``) and CPU
               (``process_time``); zeroing the delta array between clocks is
               not timed, and one untimed slice first loads the kernel from
               Numba's cache (in the job that load falls in clock 0: a one-off
               ~0.1-0.5 s that matters only for tiny runs).
What is not counted (anywhere): process start, imports, MPI start-up, window
allocation, generating the synthetic data, the split, the tile ordering,
the final evaluation and gathering, writing outputs.

Run length: at the defaults each job launch takes ~20-25 s on the 2-core
development machine, of which ~3-7 s are training; the rest is start-up (each
of the 3 ranks generates the synthetic data) and is not counted.

Noise: the machine is shared; on 2 cores the two workers of the job run on
both cores at once while the standalone run uses one, so the job also feels
the other engineers' load (and the shared L3 / memory bandwidth) more.  A
second baseline, "standalone x2", runs one standalone process per share at the
same time (launched with mpiexec, no communication) to show that part; the
target ratio is against the one-process baseline.  Look at the per-round lines
and the spread.
"""
import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

DEFAULT_STALENESS = ["0", "1", "3"]


def job_argv(args, staleness, out):
    return ["--synthetic-users", str(args.users), "--synthetic-items", str(args.items),
            "--synthetic-ratings", str(args.ratings), "--rank", str(args.rank),
            "--epochs", str(args.epochs), "--clocks-per-epoch", str(args.clocks_per_epoch),
            "--seed", str(args.seed), "--eval-every", "0", "--staleness", str(staleness),
            "--servers", "1", "--out", out]


# ------------------------------------------------------------------ inside a rank
def _as_job_rank(argv):
    """``--as-job-rank CPUFILE JOBARGS...``: run ``jobs.mf.main(JOBARGS)`` and
    record this rank's CPU seconds of the training loop in ``CPUFILE.<rank>``."""
    cpu_file, job_args = argv[0], argv[1:]
    import ssp_mpi  # noqa: F401
    from ssp_mpi import run_main
    from ssp_mpi import stats as st
    import jobs.mf as mf
    rec = {}
    orig_restart, orig_end = st.ClockStats.restart_clock, st.ClockStats.end_clock

    def restart_clock(self):
        rec["cpu0"] = time.process_time()
        rec["wall0"] = time.perf_counter()
        return orig_restart(self)

    def end_clock(self, clock):
        r = orig_end(self, clock)
        rec["cpu1"] = time.process_time()
        rec["wall1"] = time.perf_counter()
        rec["clocks"] = rec.get("clocks", 0) + 1
        return r

    st.ClockStats.restart_clock = restart_clock
    st.ClockStats.end_clock = end_clock
    code = run_main(mf.main, job_args)
    if "cpu0" in rec and "cpu1" in rec:
        from mpi4py import MPI
        with open(f"{cpu_file}.{MPI.COMM_WORLD.Get_rank()}", "w") as f:
            json.dump({"cpu_s": rec["cpu1"] - rec["cpu0"], "wall_s": rec["wall1"] - rec["wall0"],
                       "clocks": rec["clocks"]}, f)
    return code


def _as_standalone(argv):
    """``--as-standalone N_WORKERS SHARES JOBARGS...``: time the kernel on the
    shares ``SHARES`` (``all``, or ``rank``: the share of this MPI rank)."""
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    n_workers, which, job_args = int(argv[0]), argv[1], argv[2:]
    if which == "all":
        shares = list(range(n_workers))
    else:
        shares = [int(os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0")))]
    import numpy as np
    import jobs.mf as mf
    from kernels import mf as K
    args = mf.build_parser().parse_args(job_args)
    train, test, _ = mf.load_data(args)
    opts = mf.job_options(args, train)
    dt = np.dtype(args.dtype)
    nu, ni, k = train.n_users, train.n_items, args.rank
    bounds = mf.user_bounds(train.users, nu, n_workers)
    n_clocks = args.epochs * args.clocks_per_epoch
    wall = cpu = 0.0
    n = 0
    first = True
    for w in shares:
        me = mf.MfWorker(train, test, bounds[w], bounds[w + 1], opts)
        P = mf.initial_factors(nu, k, args.seed, 1, args.init_scale, dt)
        Q = mf.initial_factors(ni, k, args.seed, 2, args.init_scale, dt)
        Qd = K.aligned_zeros(Q.shape, dt)
        bu, bi, bid = np.zeros(nu, dt), np.zeros(ni, dt), np.zeros(ni, dt)
        if first:       # load the kernel from Numba's cache outside the timing
            first = False
            me.step(0, P.copy(), None, K.aligned_copy(Q), K.aligned_zeros(Q.shape, dt),
                    bu.copy(), None, bi.copy(), bid.copy())
        for c in range(n_clocks):
            Qd.fill(0)
            bid.fill(0)
            t, p = time.perf_counter(), time.process_time()
            me.step(c, P, None, Q, Qd, bu, None, bi, bid)
            wall += time.perf_counter() - t
            cpu += time.process_time() - p
        n += len(me.r) * args.epochs
    print(json.dumps({"ratings": n, "wall_s": wall, "cpu_s": cpu, "shares": shares}),
          flush=True)
    return 0


# ------------------------------------------------------------------ driver
def run_job(args, s, workdir, tag):
    from ssp_mpi.launch import mpiexec
    out = os.path.join(workdir, f"job-s{s}-{tag}")
    cpu_file = out + ".cpu"
    cp = mpiexec(1 + args.workers, ["-m", "benchmarks.mf_ps", "--as-job-rank", cpu_file]
                 + job_argv(args, s, out), timeout=args.timeout)
    if cp.returncode != 0:
        raise SystemExit(f"jobs.mf s={s} failed (exit {cp.returncode}"
                         f"{', timed out' if getattr(cp, 'timed_out', False) else ''}):\n"
                         f"{cp.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        summ = json.load(f)
    cpus = []
    for r in range(1 + args.workers):
        path = f"{cpu_file}.{r}"
        if os.path.exists(path):
            with open(path) as f:
                cpus.append(json.load(f)["cpu_s"])
    per_worker = summ["n_train"] * summ["epochs"] / summ["workers"]
    return {"wall": summ["ratings_per_s_per_worker"],
            "compute": per_worker / summ["compute_s"] if summ["compute_s"] > 0 else float("nan"),
            "cpu": per_worker / statistics.mean(cpus) if cpus else float("nan"),
            "compute_s": summ["compute_s"], "comm_s": summ["comm_s"], "wait_s": summ["wait_s"],
            "train_wall_s": summ["train_wall_s"], "cpu_s": statistics.mean(cpus) if cpus else None}


def run_standalone(args, concurrent=False):
    """One process over every share (the baseline), or (``concurrent``) one
    process per share, all at once (as many busy cores as the job's workers)."""
    from ssp_mpi.launch import mpiexec, run
    if concurrent:
        cp = mpiexec(args.workers, ["-m", "benchmarks.mf_ps", "--as-standalone",
                                    str(args.workers), "rank"] + job_argv(args, 0, "unused"),
                     timeout=args.timeout)
    else:
        cp = run([sys.executable, "-m", "benchmarks.mf_ps", "--as-standalone", str(args.workers),
                  "all"] + job_argv(args, 0, "unused"), timeout=args.timeout)
    if cp.returncode != 0:
        raise SystemExit(f"standalone run failed (exit {cp.returncode}):\n{cp.stderr[-3000:]}")
    ds = [json.loads(line) for line in cp.stdout.splitlines() if line.startswith("{")]
    n = sum(d["ratings"] for d in ds)
    wall = sum(d["wall_s"] for d in ds)
    cpu = sum(d["cpu_s"] for d in ds)
    return {"wall": n / wall, "cpu": n / cpu, "compute": n / wall,
            "wall_s": wall / args.workers}


def median(xs):
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mf_ps",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--users", type=int, default=10_000, help="synthetic users")
    p.add_argument("--items", type=int, default=4_000, help="synthetic items")
    p.add_argument("--ratings", type=int, default=3_000_000,
                   help="synthetic ratings (90%% train); sets the run length")
    p.add_argument("--rank", type=int, default=32, help="factor rank")
    p.add_argument("--epochs", type=int, default=30, help="epochs per run")
    p.add_argument("--clocks-per-epoch", type=int, default=4, help="SSP clocks per epoch")
    p.add_argument("--staleness", nargs="+", default=DEFAULT_STALENESS,
                   help="staleness values to run")
    p.add_argument("--workers", type=int, default=2, help="workers of the job (plus 1 server)")
    p.add_argument("--rounds", type=int, default=3,
                   help="interleaved rounds (every s and the standalone run once per round)")
    p.add_argument("--no-concurrent", dest="concurrent", action="store_false",
                   help="skip the second baseline: one standalone process per share, all at "
                        "once (as many busy cores as the job's workers; shows how much of the "
                        "gap is the two workers sharing the machine)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--timeout", type=float, default=600, help="seconds per launched run")
    p.add_argument("--workdir", default=None, help="keep the job outputs here (default: a "
                                                   "temporary folder, removed)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    return p.parse_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--as-job-rank"]:
        return _as_job_rank(argv[1:])
    if argv[:1] == ["--as-standalone"]:
        return _as_standalone(argv[1:])
    args = parse(argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="mf_ps_")
    os.makedirs(workdir, exist_ok=True)
    print(f"data: synthetic {args.users} users x {args.items} items, {args.ratings:,} ratings "
          f"(90% train), rank {args.rank}, {args.epochs} epochs x {args.clocks_per_epoch} "
          f"clocks; job: 1 server + {args.workers} workers; {args.rounds} interleaved rounds",
          flush=True)
    jobs = {s: [] for s in args.staleness}
    alone, alone2 = [], []
    try:
        for rnd in range(args.rounds):
            for s in args.staleness:
                jobs[s].append(run_job(args, s, workdir, rnd))
                j = jobs[s][-1]
                print(f"  round {rnd} job s={s}: {j['wall'] / 1e6:.2f}M/s wall, "
                      f"{j['cpu'] / 1e6:.2f}M/s cpu; per worker compute {j['compute_s']:.2f}s "
                      f"comm {j['comm_s']:.2f}s wait {j['wait_s']:.2f}s", flush=True)
            for conc, lst in ((False, alone), (True, alone2)):
                if conc and not args.concurrent:
                    continue
                lst.append(run_standalone(args, conc))
                print(f"  round {rnd} standalone{' x' + str(args.workers) if conc else ''}: "
                      f"{lst[-1]['wall'] / 1e6:.2f}M/s wall, {lst[-1]['cpu'] / 1e6:.2f}M/s cpu",
                      flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    print(f"\nratings/s per worker (M), medians over {args.rounds} rounds; ratio = median of the "
          "round-by-round job / standalone (1 process) ratios; target >= 0.9 at s >= 1")
    print(f"{'run':14s} {'wall':>7s} {'cpu':>7s} {'compute':>8s} {'ratio wall':>11s} "
          f"{'ratio cpu':>10s} {'compute_s':>10s} {'comm_s':>7s} {'wait_s':>7s}")

    def base_row(name, lst):
        rw = median([x["wall"] / a["wall"] for x, a in zip(lst, alone)])
        rc = median([x["cpu"] / a["cpu"] for x, a in zip(lst, alone)])
        print(f"{name:14s} {median([x['wall'] for x in lst]) / 1e6:7.2f} "
              f"{median([x['cpu'] for x in lst]) / 1e6:7.2f} "
              f"{median([x['wall'] for x in lst]) / 1e6:8.2f} {rw:11.2f} {rc:10.2f} "
              f"{median([x['wall_s'] for x in lst]):10.2f} {'-':>7s} {'-':>7s}")
    base_row("standalone", alone)
    if alone2:
        base_row(f"standalone x{args.workers}", alone2)
    results = []
    for s in args.staleness:
        js = jobs[s]
        rw = median([j["wall"] / a["wall"] for j, a in zip(js, alone)])
        rc = median([j["cpu"] / a["cpu"] for j, a in zip(js, alone)])
        row = dict(staleness=s, wall=median([j["wall"] for j in js]),
                   cpu=median([j["cpu"] for j in js]), compute=median([j["compute"] for j in js]),
                   ratio_wall=rw, ratio_cpu=rc,
                   ratio_wall_vs_concurrent=median([j["wall"] / a["wall"]
                                                    for j, a in zip(js, alone2)]),
                   compute_s=median([j["compute_s"] for j in js]),
                   comm_s=median([j["comm_s"] for j in js]),
                   wait_s=median([j["wait_s"] for j in js]))
        results.append(row)
        print(f"{'job s=' + str(s):14s} {row['wall'] / 1e6:7.2f} {row['cpu'] / 1e6:7.2f} "
              f"{row['compute'] / 1e6:8.2f} {rw:11.2f} {rc:10.2f} {row['compute_s']:10.2f} "
              f"{row['comm_s']:7.2f} {row['wait_s']:7.2f}")
    print("(compute_s/comm_s/wait_s: seconds per worker; standalone: kernel seconds per share"
          + (f"; standalone x{args.workers}: one process per share, all at once" if alone2
             else "") + ")")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "jobs": jobs, "standalone": alone,
                       "standalone_concurrent": alone2,
                       "table": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
