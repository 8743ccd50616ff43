"""Staleness sweep after the SSP paper: jobs.lda log-likelihood against time, s in {0, 1, 3, inf}, with and without a 2x straggler.

    python -m benchmarks.lda_staleness [--staleness 0 1 3 inf] [--straggle 1:2.0] [--out out/bench/lda_staleness.png]

For each staleness s and each straggler setting (off, then ``--straggle``:
worker 1 sleeps after its compute of each clock as long again), ``jobs.lda``
runs with 3 ranks (1 server + 2 workers, launched through
``ssp_mpi.launch.mpiexec``) on its built-in synthetic corpus (``--docs``
documents drawn from LDA's generative process, ~100 tokens each).  From
``metrics.jsonl`` it takes, per iteration, the log-likelihood per token and the
time, and reports the time at which loglik/token first reaches the target
(linear interpolation between the two iterations around the crossing).  Rounds
repeat the sweep interleaved (s=0 off, s=0 on, s=1 off, ...); the table shows
medians over the rounds.  Every worker runs the same number of sweeps, so with
the straggler the slowest worker's time is about the same at every s; a gain
shows as the target being reached at an earlier sweep.  A PNG plots loglik/token against time, one panel per
straggler setting, every s and round.

Time axis: the record's ``elapsed_s``, the time of the slowest worker at the
end of that sweep, counted from when its clock statistics started (so it
includes the workers' set-up -- splitting the corpus, small and the same at
every s -- but not process/MPI start-up, corpus generation or writing outputs).
The straggler's sleep, SSP waits, and each iteration's log-likelihood
evaluation (in the compute of the clock that follows it) are counted.
"wall" in the table is the job's ``train_wall_s`` (training loop of the
slowest worker).

What the per-iteration loglik is (the job's definition): the complete-data
log p(w, z) of the state after that many sweeps, computed when each worker
starts the next clock, each worker adding its terms (a disjoint set of word
rows, its own documents) from its own replica.  At s=0 every replica is the
synchronised table and the value is exact; at s > 0 a replica may miss
in-flight updates of the other worker, so the value is approximate.  The last
point of every curve (and "final" in the table) is the exact loglik/token of
the final tables from ``summary.json``.

Target: ``--target`` (absolute loglik/token), else the value reached after
``--target-frac`` of the improvement of the baseline run (first s, no
straggler; median over rounds) from its first record (the random
initialisation) to its final loglik/token.  The default 0.95 lies on the
flattening part of the curve, reached by the baseline in its last third.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from benchmarks._sweep import add_run_options, save_figure
from benchmarks.mf_staleness import fmt, median, time_to


def job_argv(args, s, straggle, out):
    argv = ["--synthetic-docs", str(args.docs), "--topics", str(args.topics),
            "--iterations", str(args.iterations), "--sampler", args.sampler,
            "--seed", str(args.seed), "--staleness", str(s), "--servers", "1", "--out", out]
    if straggle:
        argv += ["--straggle", args.straggle]
    return argv + list(args.job_arg)


def read_curve(out):
    """[(time_s, iteration, loglik_per_token, exact)] from metrics.jsonl, and summary.json.

    The iteration-0 record (after the random initialisation) has no time and
    is returned separately as the starting value."""
    with open(os.path.join(out, "summary.json")) as f:
        summ = json.load(f)
    curve, start = [], None
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("elapsed_s") is None:
                if rec["iteration"] == 0:
                    start = rec["loglik_per_token"]
                continue
            curve.append((rec["elapsed_s"], rec["iteration"], rec["loglik_per_token"],
                          bool(rec.get("final"))))
    return curve, start, summ


def time_to_ll(curve, target):
    """First time loglik/token >= target (linear between iterations); None if never."""
    return time_to([(t, None, None, -ll) for t, _, ll, _ in curve], -target)


def run_one(args, s, straggle, workdir, rnd):
    from ssp_mpi.launch import mpiexec
    out = os.path.join(workdir, f"s{s}-{'strag' if straggle else 'even'}-{rnd}")
    cp = mpiexec(3, ["-m", "jobs.lda"] + job_argv(args, s, straggle, out), timeout=args.timeout)
    if cp.returncode != 0:
        raise SystemExit(f"jobs.lda s={s} straggler={'on' if straggle else 'off'} failed (exit "
                         f"{cp.returncode}{', timed out' if getattr(cp, 'timed_out', False) else ''}"
                         f"):\n{cp.stderr[-3000:]}")
    curve, start, summ = read_curve(out)
    return {"curve": curve, "start": start, "final": summ["loglik_per_token"],
            "wait_s": summ["wait_s"], "wait_max_s": summ["wait_max_s"],
            "train_wall_s": summ["train_wall_s"], "tokens": summ["tokens"],
            "vocabulary": summ["vocabulary"]}


def plot(path, runs, order, target, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110, sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    finals = [r["final"] for rs in runs.values() for r in rs]
    for ax, straggle in zip(axes, (False, True)):
        for k, s in enumerate(order):
            for rnd, r in enumerate(runs[(s, straggle)]):
                xs = [p[0] for p in r["curve"]]
                ys = [p[2] for p in r["curve"]]
                ax.plot(xs, ys, marker="o", ms=2, lw=1.4 if rnd == 0 else 0.7,
                        alpha=1.0 if rnd == 0 else 0.5, color=colors[k % len(colors)],
                        label=f"s = {s}" if rnd == 0 else None)
        ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target {target:.3f}")
        ax.set_xlabel("time of the slowest worker (s)")
        ax.set_title("no straggler" if not straggle else "straggler " + title[1], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("log-likelihood per token")
    hi = max(finals)
    span = max(hi - target, 0.05)
    axes[0].set_ylim(target - 12 * span, hi + 2 * span)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(title[0], fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.lda_staleness",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--docs", type=int, default=4000,
                   help="documents of the built-in synthetic corpus (~100 tokens each)")
    p.add_argument("--topics", "-K", type=int, default=20, help="number of topics K")
    p.add_argument("--iterations", type=int, default=40, help="Gibbs sweeps per run")
    p.add_argument("--sampler", default="auto", help="the job's --sampler (auto: what jobs.lda runs by default)")
    p.add_argument("--staleness", nargs="+", default=["0", "1", "3", "inf"],
                   help="staleness values (the first, without straggler, is the baseline)")
    p.add_argument("--straggle", default="1:2.0", help="the job's --straggle in the straggler runs")
    p.add_argument("--target", type=float, default=None,
                   help="target loglik/token (absolute)")
    p.add_argument("--target-frac", type=float, default=0.95,
                   help="without --target: target = start + this x (final - start) of the "
                        "baseline run")
    p.add_argument("--rounds", type=int, default=2,
                   help="interleaved rounds (one run trains for a few seconds, less than the "
                        "machine's load swings: use several; ~2.5 min per round here)")
    p.add_argument("--seed", type=int, default=0, help="the job's --seed")
    add_run_options(p, "jobs.lda", "--alpha=0.5", "out/bench/lda_staleness.png")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    workdir = args.workdir or tempfile.mkdtemp(prefix="lda_staleness_")
    os.makedirs(workdir, exist_ok=True)
    print(f"data: synthetic corpus, {args.docs} documents; K={args.topics}, {args.iterations} "
          f"iterations, sampler {args.sampler}; 1 server + 2 workers; straggler runs: --straggle "
          f"{args.straggle}; {args.rounds} round(s)", flush=True)
    keys = [(s, st) for s in args.staleness for st in (False, True)]
    runs = {k: [] for k in keys}
    try:
        for rnd in range(args.rounds):
            for s, st in keys:
                r = run_one(args, s, st, workdir, rnd)
                runs[(s, st)].append(r)
                print(f"  round {rnd} s={s} straggler {'on ' if st else 'off'}: final loglik/token "
                      f"{r['final']:.4f}, training {r['train_wall_s']:.2f} s, wait "
                      f"{r['wait_s']:.2f} s (max {r['wait_max_s']:.2f})", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    base = runs[(args.staleness[0], False)]
    if args.target is not None:
        target = args.target
        how = "--target"
    else:
        start = median([r["start"] for r in base])
        final = median([r["final"] for r in base])
        target = start + args.target_frac * (final - start)
        how = (f"{args.target_frac} of the way from {start:.4f} to {final:.4f} "
               f"(s={args.staleness[0]}, no straggler)")
    for rs in runs.values():
        for r in rs:
            r["time_to_target"] = time_to_ll(r["curve"], target)

    r0 = base[0]
    print(f"\ncorpus: {r0['tokens']:,} tokens, vocabulary {r0['vocabulary']}; target loglik/token "
          f"{target:.4f} ({how})")
    print(f"medians over {args.rounds} round(s); time = elapsed time of the slowest worker; "
          f"wall = training wall time; wait_s = mean per worker (max)")
    print(f"{'s':>5s} {'straggler':>9s} {'wall s':>7s} {'time to target':>15s} "
          f"{'final ll/tok':>13s} {'wait_s':>7s} {'(max)':>7s}")
    table = []
    for s, st in keys:
        rs = runs[(s, st)]
        ttt = median([r["time_to_target"] for r in rs]) if all(
            r["time_to_target"] is not None for r in rs) else None
        row = dict(staleness=s, straggler=st, train_wall_s=median([r["train_wall_s"] for r in rs]),
                   time_to_target=ttt, final=median([r["final"] for r in rs]),
                   wait_s=median([r["wait_s"] for r in rs]),
                   wait_max_s=median([r["wait_max_s"] for r in rs]))
        table.append(row)
        print(f"{s:>5s} {'on' if st else 'off':>9s} {row['train_wall_s']:7.3f} "
              f"{fmt(ttt, '.2f', 15)} {row['final']:13.4f} {row['wait_s']:7.2f} "
              f"{row['wait_max_s']:7.2f}")
    for st in (False, True):
        rows = [r for r in table if r["straggler"] == st and r["time_to_target"] is not None]
        if rows:
            best = min(rows, key=lambda r: r["time_to_target"])
            b0 = [r for r in table if r["straggler"] == st][0]
            ratio = (b0["time_to_target"] / best["time_to_target"]
                     if b0["time_to_target"] is not None else None)
            print(f"fastest to target, straggler {'on' if st else 'off'}: s={best['staleness']} "
                  f"({best['time_to_target']:.2f} s"
                  + (f", {ratio:.2f}x s={b0['staleness']})" if ratio else ")"))
        else:
            print(f"fastest to target, straggler {'on' if st else 'off'}: none reached it")
    plot(args.out, runs, args.staleness, target,
         (f"jobs.lda, 1 server + 2 workers, {r0['tokens']:,} tokens, K={args.topics}, "
          f"{args.sampler} sampler; per-iteration loglik at s>0 from stale replicas, last point "
          f"exact", args.straggle))
    print(f"plot: {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "target": target,
                       "runs": {f"s={s} straggler={'on' if st else 'off'}": v
                                for (s, st), v in runs.items()}, "table": table},
                      f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
