#!/usr/bin/env python3
"""Check that this MPI's passive-target RMA accumulates give exact sums.

Run under your launcher, e.g.

    tools/netns-run mpiexec -n 3 python tools/rma_check.py --dtype float64 --n 1000
    srun -n 4 python tools/rma_check.py --mode indexed --get

The first ``--servers`` ranks (default 1) allocate a window with
``MPI.Win.Allocate`` and only wait, politely (non-blocking test + sleep) while
driving MPI progress.  Every other rank ("worker") opens a ``Lock_all`` epoch
and, for ``--iters`` iterations, ``Accumulate(SUM)``s known integer-valued
increments into every server's window, flushing after each iteration (as an
SSP ``clock()`` does).  With ``--mode indexed`` the increments go to random
runs of rows through an indexed derived datatype (one call moves many rows);
``--mode block`` uses an indexed-block type of single rows; ``--mode all``
cycles through contig/indexed/block.  With ``--get`` each worker also reads
random rows with ``Get_accumulate(NO_OP)`` while the others are writing and
checks each value is integral, never below the worker's own flushed
contributions (read-my-writes) and never above the final value.
``--servers-accumulate`` makes the window owners accumulate too (into their own
and each other's windows); ``--recv any`` makes them wait for the workers'
"done" messages with one ``Irecv(ANY_SOURCE)`` instead of one receive per
worker (the pattern that hangs on MPICH 5.0.2 ch4:ucx with
``MPIR_CVAR_NOLOCAL=1``, see docs/mpich-network.md).

Every increment is a small integer, so float sums are exact: the final window
must equal the expected array bit for bit.  Each rank can recompute every
worker's increments from the seed, so no extra communication is needed.

Prints one line ``PASS ...`` or ``FAIL ...`` (with the first wrong index and
values) from rank 0 and exits 0 / 1.  The run is bounded: ``--timeout``
seconds, after which the process dumps its stack and exits (the launcher then
ends the others); an exception on any rank calls ``Abort``.

``--latency`` measures instead the round trip of a small accumulate + flush
while the server sleeps ``--sleep-us`` between progress polls, and the
server's CPU time per wall second (see docs/mpich-network.md).
"""

import argparse
import faulthandler
import json
import os
import signal
import sys
import time

import numpy as np

TAG_DONE = 7701
DTYPES = {"int64": "INT64_T", "int32": "INT32_T", "float64": "DOUBLE", "float32": "FLOAT"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="float64")
    p.add_argument("--n", type=int, default=1000, help="window elements per server")
    p.add_argument("--cols", type=int, default=8, help="row width for indexed modes")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--mode", choices=["contig", "indexed", "block", "all"], default="contig")
    p.add_argument("--chunk", type=int, default=0,
                   help="contig mode: elements per Accumulate call (0 = whole window)")
    p.add_argument("--frac", type=float, default=0.25,
                   help="indexed modes: fraction of rows touched per iteration")
    p.add_argument("--get", action="store_true",
                   help="race Get_accumulate(NO_OP) reads with the accumulates")
    p.add_argument("--servers", type=int, default=1, help="ranks that own a window")
    p.add_argument("--servers-accumulate", action="store_true",
                   help="servers also accumulate (into their own and the other windows)")
    p.add_argument("--unlock-early", action="store_true",
                   help="accumulating servers close their Lock_all epoch before waiting")
    p.add_argument("--progress", choices=["irecv", "iprobe", "sleep", "spin"], default="irecv",
                   help="how an idle server drives progress (sleep = no MPI call)")
    p.add_argument("--recv", choices=["any", "each"], default="each",
                   help="server's pending receive: one Irecv(ANY_SOURCE) or one per worker")
    p.add_argument("--sleep-us", type=float, default=200.0, help="server sleep between polls")
    p.add_argument("--info", action="append", default=[], metavar="KEY=VALUE",
                   help="window info hint (repeatable), e.g. accumulate_ordering=none")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--latency", action="store_true",
                   help="measure accumulate+flush latency and idle server CPU instead")
    p.add_argument("--lat-reps", type=int, default=300)
    p.add_argument("--idle-seconds", type=float, default=2.0)
    p.add_argument("--json", action="store_true", help="also print a JSON result line")
    p.add_argument("--verbose", action="store_true")
    return p.parse_args(argv)


# ---------------------------------------------------------------- increments
def contig_inc(n, rank, it, dtype):
    j = np.arange(n, dtype=np.int64)
    return (((3 * j + 5 * rank + it) % 7) + 1).astype(dtype)


def row_runs(nrows, rank, it, seed, frac):
    """Sorted random rows for (rank, it), grouped into runs [(start, length)]."""
    rng = np.random.default_rng([seed, rank, it])
    k = max(1, int(nrows * frac))
    rows = np.sort(rng.choice(nrows, size=min(k, nrows), replace=False))
    brk = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate(([0], brk))
    ends = np.concatenate((brk, [len(rows)]))
    return rows, [(int(rows[a]), int(b - a)) for a, b in zip(starts, ends)]


def iter_mode(args, it):
    if args.mode != "all":
        return args.mode
    return ("contig", "indexed", "block")[it % 3]


def worker_step(args, rank, it, n, dtype):
    """(mode, rows, runs, packed values) of worker `rank` at iteration `it`."""
    mode = iter_mode(args, it)
    if mode == "contig":
        return mode, None, None, contig_inc(n, rank, it, dtype)
    nrows = n // args.cols
    rows, runs = row_runs(nrows, rank, it, args.seed, args.frac)
    vals = (((rows[:, None] * 11 + np.arange(args.cols)[None, :] + 3 * rank + it) % 5) + 1)
    return mode, rows, runs, vals.astype(dtype).ravel()


def expected_final(args, workers, n, dtype):
    acc = initial_values(n).astype(np.float64 if dtype.kind == "f" else np.int64)
    for r in workers:
        for it in range(args.iters):
            mode, rows, _, vals = worker_step(args, r, it, n, dtype)
            if mode == "contig":
                acc += vals
            else:
                idx = (rows[:, None] * args.cols + np.arange(args.cols)[None, :]).ravel()
                acc[idx] += vals
    return acc


def initial_values(n):
    return (np.arange(n, dtype=np.int64) % 5)


# ---------------------------------------------------------------- helpers
def polite_wait(MPI, req, args, deadline, what):
    """Complete a request by Test + sleep (never a blocking, spinning Wait)."""
    while not req.Test():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(args.sleep_us * 1e-6)


def make_info(MPI, pairs):
    if not pairs:
        return MPI.INFO_NULL
    info = MPI.Info.Create()
    for kv in pairs:
        k, _, v = kv.partition("=")
        info.Set(k, v)
    return info


def server_idle(MPI, comm, args, expect_msgs, deadline, sources=None):
    """Wait for `expect_msgs` DONE messages while sleeping between polls."""
    if args.recv == "each" and sources:
        bufs = [np.zeros(1, dtype=np.int64) for _ in sources]
        reqs = [comm.Irecv([b, MPI.INT64_T], source=src, tag=TAG_DONE)
                for b, src in zip(bufs, sources)]
        polls = 0
        while not MPI.Request.Testall(reqs):
            polls += 1
            if time.monotonic() > deadline:
                left = sum(1 for r in reqs if r != MPI.REQUEST_NULL)
                raise TimeoutError(f"server waited too long ({len(reqs) - left}/{len(reqs)} "
                                   "workers done)")
            if args.progress != "spin":
                time.sleep(args.sleep_us * 1e-6)
        return polls
    buf = np.zeros(1, dtype=np.int64)
    got = 0
    polls = 0
    req = comm.Irecv([buf, MPI.INT64_T], source=MPI.ANY_SOURCE, tag=TAG_DONE)
    while got < expect_msgs:
        if args.progress == "iprobe":
            flag = comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_DONE)
            if flag:
                req.Wait()
                got += 1
                if got < expect_msgs:
                    req = comm.Irecv([buf, MPI.INT64_T], source=MPI.ANY_SOURCE, tag=TAG_DONE)
                continue
        elif args.progress == "sleep":
            # No MPI call while idle; only look now and then (every ~0.2 s).
            if polls % max(1, int(0.2 / max(args.sleep_us * 1e-6, 1e-6))) == 0 and req.Test():
                got += 1
                if got < expect_msgs:
                    req = comm.Irecv([buf, MPI.INT64_T], source=MPI.ANY_SOURCE, tag=TAG_DONE)
                continue
        elif req.Test():
            got += 1
            if got < expect_msgs:
                req = comm.Irecv([buf, MPI.INT64_T], source=MPI.ANY_SOURCE, tag=TAG_DONE)
            continue
        polls += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"server waited too long ({got}/{expect_msgs} workers done)")
        if args.progress != "spin":
            time.sleep(args.sleep_us * 1e-6)
    return polls


def first_mismatch(got, exp):
    bad = np.flatnonzero(got.astype(np.float64) != exp.astype(np.float64))
    return bad


# ---------------------------------------------------------------- main check
def run_check(MPI, comm, args):
    rank, size = comm.Get_rank(), comm.Get_size()
    ns = args.servers
    if size < ns + (0 if args.servers_accumulate else 1) or ns < 1:
        raise SystemExit(f"need at least {ns + 1} ranks (servers={ns}), have {size}")
    servers = list(range(ns))
    workers = list(range(0 if args.servers_accumulate else ns, size))
    is_server = rank < ns
    is_worker = rank in workers
    dtype = np.dtype(args.dtype)
    mdt = getattr(MPI, DTYPES[args.dtype])
    n = args.n
    if args.mode != "contig" and n % args.cols:
        raise SystemExit("--n must be a multiple of --cols for indexed modes")
    deadline = time.monotonic() + args.timeout - 5.0

    info = make_info(MPI, args.info)
    win = MPI.Win.Allocate(n * dtype.itemsize if is_server else 0, dtype.itemsize,
                           info=info, comm=comm)
    if is_server:
        local = np.frombuffer(win.tomemory(), dtype=dtype, count=n)
        local[:] = initial_values(n).astype(dtype)
    polite_wait(MPI, comm.Ibarrier(), args, deadline, "start barrier")

    t0 = time.perf_counter()
    win.Lock_all()
    stats = {"acc_calls": 0, "reads": 0, "read_errors": 0}
    read_errors = []
    if is_worker:
        exp_final = expected_final(args, workers, n, dtype)
        mine = np.zeros(n, dtype=np.float64)  # own flushed contributions
        rng = np.random.default_rng([args.seed, rank, 99])
        types = []
        for it in range(args.iters):
            mode, rows, runs, vals = worker_step(args, rank, it, n, dtype)
            for s in servers:
                if mode == "contig":
                    step = args.chunk or n
                    for a in range(0, n, step):
                        b = min(n, a + step)
                        win.Accumulate([vals[a:b], mdt], s, target=(a, b - a, mdt), op=MPI.SUM)
                        stats["acc_calls"] += 1
                else:
                    if mode == "indexed":
                        t = mdt.Create_indexed([ln * args.cols for _, ln in runs],
                                               [st * args.cols for st, _ in runs])
                    else:
                        t = mdt.Create_indexed_block(args.cols, [int(r) * args.cols for r in rows])
                    t.Commit()
                    types.append(t)
                    win.Accumulate([vals, mdt], s, target=(0, 1, t), op=MPI.SUM)
                    stats["acc_calls"] += 1
            win.Flush_all()
            for t in types:
                t.Free()
            types.clear()
            if mode == "contig":
                mine += vals
            else:
                idx = (rows[:, None] * args.cols + np.arange(args.cols)[None, :]).ravel()
                mine[idx] += vals
            if args.get:
                s = servers[it % ns]
                a = int(rng.integers(0, max(1, n - 64)))
                ln = min(64, n - a)
                out = np.empty(ln, dtype=dtype)
                win.Get_accumulate([np.zeros(ln, dtype=dtype), mdt], [out, mdt], s, target=(a, ln, mdt), op=MPI.NO_OP)
                win.Flush(s)
                stats["reads"] += 1
                o = out.astype(np.float64)
                lo = initial_values(n)[a:a + ln] + mine[a:a + ln]
                hi = exp_final[a:a + ln]
                bad = np.flatnonzero((o != np.round(o)) | (o < lo) | (o > hi))
                if bad.size:
                    stats["read_errors"] += 1
                    if len(read_errors) < 3:
                        k = int(bad[0])
                        read_errors.append(
                            f"read it={it} server={s} idx={a + k} got={o[k]!r} "
                            f"allowed=[{lo[k]!r},{hi[k]!r}]")
        if not is_server or args.unlock_early:
            win.Unlock_all()
        sreqs = [comm.Isend([np.array([rank], dtype=np.int64), MPI.INT64_T], s, tag=TAG_DONE)
                 for s in servers if s != rank]
        for r in sreqs:
            polite_wait(MPI, r, args, deadline, "done message")
    if is_server:
        others = [w for w in workers if w != rank]
        polls = server_idle(MPI, comm, args, len(others), deadline, others)
        if args.unlock_early and is_worker:
            win.Lock_all()
        win.Sync()
        win.Unlock_all()
        stats["polls"] = polls
    t_acc = time.perf_counter() - t0

    # ---- verification on servers
    result = {"rank": rank, "ok": True, "detail": ""}
    if is_server:
        got = np.array(local, copy=True)
        exp = expected_final(args, workers, n, dtype)
        bad = first_mismatch(got, exp)
        if bad.size:
            k = int(bad[0])
            result["ok"] = False
            result["detail"] = (f"server {rank}: {bad.size}/{n} wrong, first idx {k} "
                                f"(byte {k * dtype.itemsize}) got {got[k]!r} expected {exp[k]!r}; "
                                f"wrong idx range [{int(bad[0])},{int(bad[-1])}]")
    if stats["read_errors"]:
        result["ok"] = False
        result["detail"] += f"worker {rank}: {stats['read_errors']} bad reads: " + "; ".join(read_errors)
    result["t"] = t_acc
    result["stats"] = stats
    results = gather_polite(MPI, comm, result, args, deadline)
    win.Free()
    return results


def gather_polite(MPI, comm, obj, args, deadline):
    req = comm.igather(obj, root=0) if hasattr(comm, "igather") else None
    if req is None:
        return comm.gather(obj, root=0)
    while True:
        done, val = req.test()
        if done:
            return val
        if time.monotonic() > deadline:
            raise TimeoutError("timed out gathering results")
        time.sleep(args.sleep_us * 1e-6)


# ---------------------------------------------------------------- latency mode
def run_latency(MPI, comm, args):
    """Rank 0 owns a window and idles; rank 1 times accumulate+flush round trips.

    Phase 1: nobody talks for --idle-seconds: rank 0's CPU/wall while polling.
    Phase 2: rank 1 does --lat-reps (Accumulate of one 8-element row + Flush),
    spaced 1 ms apart, with rank 0 sleeping --sleep-us between polls.
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    dtype = np.dtype(args.dtype)
    mdt = getattr(MPI, DTYPES[args.dtype])
    deadline = time.monotonic() + args.timeout - 5.0
    win = MPI.Win.Allocate(args.n * dtype.itemsize if rank == 0 else 0, dtype.itemsize,
                           info=make_info(MPI, args.info), comm=comm)
    if rank == 0:
        np.frombuffer(win.tomemory(), dtype=dtype, count=args.n)[:] = 0
    polite_wait(MPI, comm.Ibarrier(), args, deadline, "start barrier")
    win.Lock_all()
    res = {}
    if rank == 0:
        buf = np.zeros(1, dtype=np.int64)
        req = comm.Irecv([buf, MPI.INT64_T], source=MPI.ANY_SOURCE, tag=TAG_DONE)
        c0, w0 = time.process_time(), time.perf_counter()
        t_end = w0 + args.idle_seconds
        polls = 0
        while time.perf_counter() < t_end:
            req.Test()
            polls += 1
            time.sleep(args.sleep_us * 1e-6)
        c1, w1 = time.process_time(), time.perf_counter()
        res["idle_cpu_frac"] = (c1 - c0) / (w1 - w0)
        res["idle_poll_hz"] = polls / (w1 - w0)
        busy = size - 1
        got = 0
        c0, w0 = time.process_time(), time.perf_counter()
        while got < busy:
            if req.Test():
                got += 1
                if got < busy:
                    req = comm.Irecv([buf, MPI.INT64_T], source=MPI.ANY_SOURCE, tag=TAG_DONE)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError("latency server timed out")
            time.sleep(args.sleep_us * 1e-6)
        c1, w1 = time.process_time(), time.perf_counter()
        res["busy_cpu_frac"] = (c1 - c0) / (w1 - w0)
        win.Sync()
        win.Unlock_all()
        local = np.frombuffer(win.tomemory(), dtype=dtype, count=args.n)
        want = float(args.lat_reps * (size - 1))
        res["sum_ok"] = bool(np.all(local[:8].astype(np.float64) == want))
        if not res["sum_ok"]:
            res["sum_got"] = repr(local[:8].tolist())
    else:
        ones = np.ones(8, dtype=dtype)
        # let the server finish its idle phase
        time.sleep(args.idle_seconds + 0.1)
        lat = []
        for i in range(args.lat_reps):
            t = time.perf_counter()
            win.Accumulate([ones, mdt], 0, target=(0, 8, mdt), op=MPI.SUM)
            win.Flush(0)
            lat.append(time.perf_counter() - t)
            time.sleep(0.001)
        win.Unlock_all()
        r = polite_wait(MPI, comm.Isend([np.array([rank], dtype=np.int64), MPI.INT64_T], 0,
                                        tag=TAG_DONE), args, deadline, "done")
        lat = np.array(lat) * 1e6
        res["lat_us_median"] = float(np.median(lat))
        res["lat_us_p90"] = float(np.percentile(lat, 90))
        res["lat_us_max"] = float(lat.max())
    results = gather_polite(MPI, comm, res, args, deadline)
    win.Free()
    return results


def describe_env():
    keys = ("MPIR_CVAR_NOLOCAL", "MPIR_CVAR_CH4_NETMOD", "FI_PROVIDER", "UCX_TLS")
    return " ".join(f"{k}={os.environ[k]}" for k in keys if k in os.environ) or "(defaults)"


def main(argv=None):
    args = parse_args(argv)
    faulthandler.enable()
    faulthandler.dump_traceback_later(args.timeout, exit=True)
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints where a rank is
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    t_start = time.perf_counter()
    try:
        results = (run_latency if args.latency else run_check)(MPI, comm, args)
    except SystemExit as e:
        if rank == 0:
            print(f"rma_check: {e}", file=sys.stderr, flush=True)
        comm.Abort(2)
        return 2
    except BaseException as e:  # noqa: BLE001 - any error must end the whole job
        print(f"rma_check: rank {rank}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        comm.Abort(1)
        return 1
    wall = time.perf_counter() - t_start
    code = 0
    if rank == 0:
        env = describe_env()
        if args.latency:
            merged = {}
            for r in results:
                merged.update(r)
            line = (f"LATENCY sleep_us={args.sleep_us:g} " +
                    " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in sorted(merged.items())) + f" | {env}")
            print(line, flush=True)
            if args.json:
                print(json.dumps({"latency": merged, "sleep_us": args.sleep_us, "env": env}))
        else:
            bad = [r for r in results if not r["ok"]]
            t_acc = max(r["t"] for r in results)
            nbytes = sum(r["stats"].get("acc_calls", 0) for r in results)
            desc = (f"dtype={args.dtype} n={args.n} iters={args.iters} mode={args.mode} "
                    f"ranks={comm.Get_size()} servers={args.servers} get={int(args.get)} "
                    f"sacc={int(args.servers_accumulate)} "
                    f"acc_s={t_acc:.3f} wall_s={wall:.3f} | {env}")
            if bad:
                code = 1
                print("FAIL " + desc, flush=True)
                for r in bad:
                    print("  " + r["detail"], flush=True)
            else:
                print("PASS " + desc, flush=True)
            if args.json:
                print(json.dumps({"ok": not bad, "acc_s": t_acc, "wall_s": wall, "env": env,
                                  "details": [r["detail"] for r in bad], "calls": nbytes}))
    code = comm.bcast(code, root=0)
    faulthandler.cancel_dump_traceback_later()
    return code


if __name__ == "__main__":
    sys.exit(main())
