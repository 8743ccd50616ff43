"""Staleness sweep after the SSP paper: time for jobs.mf to reach a target test RMSE with one worker slowed 2x.

    python -m benchmarks.mf_staleness [--staleness 0 1 3 inf] [--straggle 1:2.0] [--out out/bench/mf_staleness.png]

For each staleness s, ``jobs.mf`` runs with 3 ranks (1 server + 2 workers,
launched through ``ssp_mpi.launch.mpiexec``) on built-in synthetic planted
low-rank data, with worker 1 slowed by the job's straggler knob (``--straggle
1:2.0``: after its compute of each clock it sleeps as long again) and an
evaluation at every epoch boundary (``--eval-every 1``).  From ``metrics.jsonl``
it takes, per evaluation, the test RMSE and the time, and reports the time at
which the test RMSE first reaches the target (linear interpolation between the
two evaluations around the crossing).  Rounds repeat the sweep interleaved
(s=0, 1, 3, inf, then again); the table shows medians over the rounds and the
speed-up of the best s over s=0 is the median of the round-by-round ratios
(target >= 1.5x).  A PNG plots test RMSE against time for every s and round.

Time axis: the training time of the slowest worker up to the evaluation, i.e.
the sum of its clocks' ``compute_s + comm_s + wait_s`` (per worker in each
metrics record).  That equals the record's ``elapsed_s`` minus the workers'
set-up (data layout, tile order), which is the same at every s and would only
dilute the ratios; ``elapsed_s`` itself is kept in the JSON output.  Counted:
every SSP read, kernel, push, clock, wait, the straggler's sleep and the
evaluations of the earlier epochs (each is in the compute of the clock that
follows it).  Not counted: process and MPI start-up, data generation and the
split, set-up, the final evaluation and writing outputs.

What the test RMSE of a record is (the job's definition): each worker
evaluates its own users with its own replica when it starts the clock of an
epoch boundary, and the record sums the workers' parts for that clock; its time
is when the slowest worker got there.  At s=0 that is the synchronised model.
At s > 0 the fast worker reaches the clock earlier, so its part is older than
the record's time says (its own extra epochs by then are not credited to its
users); the straggler's part is evaluated with a replica that already holds
the fast worker's later item updates.  Each worker runs the same number of
epochs, so at s = inf the fast worker finishes early and idles: the training
time of the slowest worker is about the same at every s, and a speed-up shows
as the target being reached at an earlier clock.  The straggler knob is a
sleep, so the fast worker does not get the straggler's core.

Target: ``--target`` (absolute), else ``--target-factor`` x the synthetic noise
std (the best reachable test RMSE).  The default 1.15 x 0.25 = 0.2875: at the
default size (5000 users x 2000 items, 2M ratings, ~360 training ratings per
user, rank 16) the s=0 run levels off at ~1.12 x noise after 20 epochs, so
1.1 x noise is never reached; 1.15 x is reached at s=0 after about half the
epochs, well past the steep start of the curve.
"""
import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile


def job_argv(args, s, out):
    return ["--synthetic-users", str(args.users), "--synthetic-items", str(args.items),
            "--synthetic-ratings", str(args.ratings), "--synthetic-rank",
            str(args.synthetic_rank), "--synthetic-noise", str(args.noise),
            "--rank", str(args.rank), "--epochs", str(args.epochs),
            "--clocks-per-epoch", str(args.clocks_per_epoch), "--seed", str(args.seed),
            "--eval-every", "1", "--staleness", str(s), "--servers", "1",
            "--straggle", args.straggle, "--out", out] + list(args.job_arg)


def read_curve(out):
    """[(train_time_s, elapsed_s, epoch, test_rmse)] from metrics.jsonl, and summary.json."""
    with open(os.path.join(out, "summary.json")) as f:
        summ = json.load(f)
    curve = []
    cum = None
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            parts = [c + m + w for c, m, w in zip(rec["compute_s"], rec["comm_s"], rec["wait_s"])]
            cum = parts if cum is None else [a + b for a, b in zip(cum, parts)]
            if rec.get("test_rmse") is None:
                continue
            curve.append((max(cum), rec.get("elapsed_s"), rec["epoch"], rec["test_rmse"]))
    return curve, summ


def time_to(curve, target):
    """First time the test RMSE is <= target (linear between evaluations); None if never."""
    prev = None
    for t, _, _, r in curve:
        if r <= target:
            if prev is None or prev[1] == r:
                return t
            t0, r0 = prev
            return t0 + (t - t0) * (r0 - target) / (r0 - r)
        prev = (t, r)
    return None


def run_one(args, s, workdir, rnd):
    from ssp_mpi.launch import mpiexec
    out = os.path.join(workdir, f"s{s}-{rnd}")
    cp = mpiexec(3, ["-m", "jobs.mf"] + job_argv(args, s, out), timeout=args.timeout)
    if cp.returncode != 0:
        raise SystemExit(f"jobs.mf s={s} failed (exit {cp.returncode}"
                         f"{', timed out' if getattr(cp, 'timed_out', False) else ''}):\n"
                         f"{cp.stderr[-3000:]}")
    curve, summ = read_curve(out)
    return {"curve": curve, "final_rmse": summ["test_rmse"], "wait_s": summ["wait_s"],
            "wait_max_s": summ["wait_max_s"], "train_wall_s": summ["train_wall_s"],
            "noise": summ.get("synthetic_noise")}


def plot(path, runs, order, target, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, s in enumerate(order):
        for rnd, r in enumerate(runs[s]):
            xs = [p[0] for p in r["curve"]]
            ys = [p[3] for p in r["curve"]]
            ax.plot(xs, ys, marker="o", ms=2.5, lw=1.4 if rnd == 0 else 0.7,
                    alpha=1.0 if rnd == 0 else 0.5, color=colors[k % len(colors)],
                    label=f"s = {s}" if rnd == 0 else None)
    ax.axhline(target, color="grey", ls="--", lw=0.8, label=f"target {target:.3f}")
    ax.set_xlabel("training time of the slowest worker (s)")
    ax.set_ylabel("test RMSE")
    ax.set_title(title, fontsize=9)
    lo = min(p[3] for rs in runs.values() for r in rs for p in r["curve"])
    ax.set_ylim(min(lo, target) * 0.97, max(target * 2.0, lo * 1.5))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def median(xs):
    xs = [x for x in xs if x is not None and x == x]
    return statistics.median(xs) if xs else None


def fmt(x, spec, width=0):
    return format("never" if x is None else format(x, spec), f">{width}")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.mf_staleness",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--users", type=int, default=5_000, help="synthetic users")
    p.add_argument("--items", type=int, default=2_000, help="synthetic items")
    p.add_argument("--ratings", type=int, default=2_000_000,
                   help="synthetic ratings (10%% held out as the test set)")
    p.add_argument("--synthetic-rank", type=int, default=5, help="planted rank")
    p.add_argument("--noise", type=float, default=0.25,
                   help="synthetic noise std (the best reachable test RMSE)")
    p.add_argument("--rank", type=int, default=16, help="factor rank")
    p.add_argument("--epochs", type=int, default=20, help="epochs per run")
    p.add_argument("--clocks-per-epoch", type=int, default=4, help="SSP clocks per epoch")
    p.add_argument("--staleness", nargs="+", default=["0", "1", "3", "inf"],
                   help="staleness values (the first is the baseline of the speed-up)")
    p.add_argument("--straggle", default="1:2.0", help="the job's --straggle")
    p.add_argument("--target", type=float, default=None, help="target test RMSE (absolute)")
    p.add_argument("--target-factor", type=float, default=1.15,
                   help="without --target: target = this x --noise")
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds (the training is short next to the machine's "
                        "load swings: use several)")
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--job-arg", action="append", default=[],
                   help="extra jobs.mf argument (repeat; e.g. --job-arg=--lr=0.1)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per run")
    p.add_argument("--out", default="out/bench/mf_staleness.png", help="PNG plot")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--workdir", default=None,
                   help="keep the job outputs here (default: a temporary folder, removed)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    target = args.target if args.target is not None else args.target_factor * args.noise
    workdir = args.workdir or tempfile.mkdtemp(prefix="mf_staleness_")
    os.makedirs(workdir, exist_ok=True)
    print(f"data: synthetic {args.users} users x {args.items} items, {args.ratings:,} ratings, "
          f"planted rank {args.synthetic_rank}, noise {args.noise}; rank {args.rank}, "
          f"{args.epochs} epochs x {args.clocks_per_epoch} clocks; 1 server + 2 workers, "
          f"--straggle {args.straggle}; target test RMSE {target:.4f}; {args.rounds} rounds",
          flush=True)
    runs = {s: [] for s in args.staleness}
    try:
        for rnd in range(args.rounds):
            for s in args.staleness:
                r = run_one(args, s, workdir, rnd)
                r["time_to_target"] = time_to(r["curve"], target)
                runs[s].append(r)
                print(f"  round {rnd} s={s}: time to target {fmt(r['time_to_target'], '.2f')} (s), "
                      f"final test RMSE {r['final_rmse']:.4f}, training {r['train_wall_s']:.2f} s,"
                      f" wait {r['wait_s']:.2f} s (max {r['wait_max_s']:.2f})", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    base = args.staleness[0]
    print(f"\nmedians over {args.rounds} rounds; time = training time of the slowest worker; "
          f"wait_s = mean per worker (max)")
    print(f"{'s':>5s} {'time to target':>15s} {'final RMSE':>11s} {'wait_s':>7s} "
          f"{'(max)':>7s} {'train s':>8s} {'vs s=' + base:>8s}")
    table = []
    for s in args.staleness:
        rs = runs[s]
        ttt = median([r["time_to_target"] for r in rs]) if all(
            r["time_to_target"] is not None for r in rs) else None
        ratio = median([b["time_to_target"] / r["time_to_target"]
                        for b, r in zip(runs[base], rs)
                        if b["time_to_target"] is not None and r["time_to_target"]])
        row = dict(staleness=s, time_to_target=ttt,
                   final_rmse=median([r["final_rmse"] for r in rs]),
                   wait_s=median([r["wait_s"] for r in rs]),
                   wait_max_s=median([r["wait_max_s"] for r in rs]),
                   train_wall_s=median([r["train_wall_s"] for r in rs]), speedup=ratio)
        table.append(row)
        print(f"{s:>5s} {fmt(ttt, '.2f', 15)} {row['final_rmse']:11.4f} {row['wait_s']:7.2f} "
              f"{row['wait_max_s']:7.2f} {row['train_wall_s']:8.2f} "
              f"{fmt(ratio, '.2f') + ('x' if ratio is not None else ''):>8s}")
    cands = [r for r in table[1:] if r["speedup"] is not None]
    if cands and table[0]["time_to_target"] is not None:
        best = max(cands, key=lambda r: r["speedup"])
        pairs = [b["time_to_target"] / r["time_to_target"]
                 for b, r in zip(runs[base], runs[best["staleness"]])
                 if b["time_to_target"] is not None and r["time_to_target"]]
        rom = (table[0]["time_to_target"] / best["time_to_target"]
               if best["time_to_target"] else None)
        print(f"speed-up of the best s (s={best['staleness']}) over s={base}: "
              f"{best['speedup']:.2f}x (median of round-by-round ratios; target >= 1.5x); "
              f"rounds: {', '.join(f'{x:.2f}' for x in pairs)}; ratio of the medians: "
              f"{fmt(rom, '.2f')}")
    else:
        print(f"speed-up: undefined (s={base} or every other s never reached the target; "
              "lower --target-factor, or more --epochs)")
    plot(args.out, runs, args.staleness, target,
         f"jobs.mf, 1 server + 2 workers, --straggle {args.straggle}; "
         f"{args.ratings:,} ratings, rank {args.rank}")
    print(f"plot: {args.out}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "target": target, "runs": runs, "table": table},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
