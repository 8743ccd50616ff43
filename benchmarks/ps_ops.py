"""Cost of parameter-server operations against raw mpi4py RMA moving the same bytes.

    python -m benchmarks.ps_ops [--ranks 2] [--sizes 1000,10000,100000,1000000] [--cols 16]

Started without mpiexec it launches itself (``--ranks`` ranks, inside the
loopback-only namespace).  For each table size, worker 0 measures, in the
same run and against the same server:

* get    -- an SSP read of all rows at a new clock (it must fetch) vs one
            raw ``Get_accumulate(NO_OP)`` + ``Flush`` of the same bytes; ("vs
            Rget") vs the same raw read waiting for its request
            (``Rget_accumulate`` + ``Wait``, the cheaper completion the
            library itself uses for reads of one server);
* push   -- ``clock()`` with every row of the oplog non-zero (find dirty
            rows, push, flush, clear the oplog, publish the clock) vs raw
            ``Accumulate(SUM)`` + ``Flush`` of the same bytes; ("push vs
            acc+reset") vs what a raw program pushing its own increment
            buffer does each clock: that ``Accumulate`` + ``Flush``, then
            zeroing the buffer for the next clock (C ``memset``, as the
            library does); and ("push vs raw clock") vs a whole raw SSP
            clock moving the same bytes as the library: accumulate + flush +
            reset, then publish the worker's clock (``Accumulate(REPLACE)``
            of one int64) and read every worker's clock
            (``Get_accumulate(NO_OP)`` of a board of the same size) under
            one ``Flush``;
* get 10% -- an SSP read of a random 10% of the rows at a new clock (the
            row ids passed as an array, as a user would) vs the raw read an
            mpi4py programmer would write for the same rows (one
            ``Get_accumulate`` with an indexed datatype over the rows, built
            beforehand, into a contiguous buffer); ("vs read+place") vs
            that raw read followed by placing the rows at their places in a
            full-size array with the compiled loop the library uses
            (``kernels.rows.scatter_rows``): the same result as the SSP
            read, without the library; and ("vs block"), as a lower bound no
            scattered read can reach, the raw read of a contiguous block of
            the same size.  The SSP read's way of moving the rows (each
            server's scattered rows, or the range covering them) is the one
            its first timed reads chose (``WorkerTable._reader``; the
            warm-up takes them); the table prints it;
* clock  -- ``clock()`` with an empty oplog vs the raw publish (the last
            step of the raw clock above).

The raw operations post messages built once, through bound methods, as a
tuned mpi4py loop would.  Untimed set-up before each pair: ``clock()`` with
an empty oplog before a read (so that the read is a real one at a new
clock), filling the oplog before a push.
Reading the figures: below ~10^4 rows an operation is latency-bound (one
RMA round trip on shared memory is 1.5-5 us, by the machine's state).  An
SSP read that needs no wait is one round trip, like the raw read (the worker
knows the server clock from the board snapshot its last ``clock()`` took in
the same round trip as publishing its clock), plus ~0.5 us of Python
bookkeeping (the freshness check and stamps, the comm-time accounting); a
clock is two round trips (the increments, then publishing the clock once
they are complete), like the raw clock, plus ~2 us of Python.  Against a
bare accumulate a push also pays for clearing the oplog (a memory pass as long as the
accumulate for narrow rows) and for publishing the clock.  A scattered read
also lands the rows in place in the full-size replica.

The two are timed alternately, pair by pair, taking turns at going first;
it prints the median time of each and the median of the pair-by-pair ratios
PS / raw (target: bulk operations within 1.2x).  Other workers, if any, run
the same loop, so the figures include contention.
"""
import argparse
import ctypes
import sys
import time

import numpy as np


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.ps_ops", description=__doc__.split("\n")[0])
    p.add_argument("--ranks", type=int, default=2, help="ranks when launching itself (1 server + workers)")
    p.add_argument("--sizes", default="1000,10000,100000,1000000", help="table rows to try")
    p.add_argument("--cols", type=int, default=16, help="columns (float32)")
    p.add_argument("--repeat", type=int, default=0, help="repetitions per size (0: automatic)")
    p.add_argument("--timeout", type=float, default=600, help="seconds before the launched run is killed")
    return p.parse_args(argv)


def paired(a, b, repeat, setup=None):
    """Time ``a`` and ``b`` alternately (``setup`` runs untimed before each
    pair); medians of each and of the pair-by-pair ratio (robust to a
    machine whose speed drifts).  Which of the two runs first alternates
    from pair to pair: an operation run first after ``setup`` is slower
    than the same operation run second, which would otherwise count against
    whichever always ran first (a 64 KB read after a clock, 4 x 3000
    pairs: 1.23-1.38x raw with the library's read first, 1.17-1.20x with it
    second)."""
    ta, tb = [], []
    for i in range(repeat):
        if setup is not None:
            setup()
        first, second = (a, b) if i % 2 == 0 else (b, a)
        t = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        ta.append(t1 - t if i % 2 == 0 else t2 - t1)
        tb.append(t2 - t1 if i % 2 == 0 else t1 - t)
    ta, tb = np.array(ta), np.array(tb)
    return float(np.median(ta)), float(np.median(tb)), float(np.median(ta / tb))


def bench(args):
    from ssp_mpi import Config, Session, TableSpec   # first: sets up MPI's environment
    from mpi4py import MPI
    from kernels.rows import scatter_rows
    from ssp_mpi.table import COVER_TRIALS

    sizes = [int(s) for s in args.sizes.split(",")]
    rows_out = []
    for n in sizes:
        reps = args.repeat or max(5, min(200, int(2e7 // (n * args.cols))))
        specs = [TableSpec("t", n, args.cols, "float32", staleness=0, refresh="clock"),
                 TableSpec("raw", n, args.cols, "float32", staleness="inf"),
                 TableSpec("rawboard", 64, 1, "int64", staleness="inf")]
        with Session(Config(servers=1, strict_bsp=False), tables=specs, comm=MPI.COMM_WORLD) as ps:
            server = ps.layout.servers[0]

            def work(w):
                t = w.table("t")
                raw_win = ps.windows["raw"].win
                buf = np.zeros((n, args.cols), np.float32)
                ones = np.ones((n, args.cols), np.float32)
                sub = np.sort(np.random.default_rng(1).choice(n, size=max(1, n // 10), replace=False))
                nsub = sub.size
                res = {}

                def new_clock():                    # untimed: reads at a new clock must fetch
                    w.clock()

                def ps_get():
                    t.get()

                # The raw side posts messages built once, through bound methods,
                # as a tuned mpi4py loop would.
                get_acc, rget_acc, acc, flush = (raw_win.Get_accumulate, raw_win.Rget_accumulate,
                                                 raw_win.Accumulate, raw_win.Flush)
                NO_OP, SUM = MPI.NO_OP, MPI.SUM
                all_msg, all_target = [buf, n * args.cols, MPI.FLOAT], (0, n * args.cols, MPI.FLOAT)

                def raw_get():
                    get_acc(all_msg, all_msg, server, all_target, NO_OP)
                    flush(server)

                def raw_rget():                     # the same read, waiting for its request
                    rget_acc(all_msg, all_msg, server, all_target, NO_OP).Wait()

                raw_delta = np.zeros((n, args.cols), np.float32)

                def fill_oplog():                   # what a kernel does (not timed)
                    d = t.delta
                    d += ones
                    raw_delta[:] = 1

                delta_msg, ones_msg = [raw_delta, n * args.cols, MPI.FLOAT], [ones, n * args.cols, MPI.FLOAT]
                delta_addr = raw_delta.ctypes.data

                def raw_inc_reset():
                    acc(delta_msg, server, all_target, SUM)
                    flush(server)
                    ctypes.memset(delta_addr, 0, raw_delta.nbytes)   # the fastest reset

                def raw_inc():
                    acc(ones_msg, server, all_target, SUM)
                    flush(server)

                board_win = ps.windows["rawboard"].win
                nboard = ps.board.size               # the library's board: the same bytes
                board = np.zeros(nboard, np.int64)
                my_clock = np.zeros(1, np.int64)

                b_acc, b_get_acc, b_flush = board_win.Accumulate, board_win.Get_accumulate, board_win.Flush
                clock_msg, clock_target = [my_clock, 1, MPI.INT64_T], (w.index, 1, MPI.INT64_T)
                board_msg, board_target = [board, nboard, MPI.INT64_T], (0, nboard, MPI.INT64_T)
                REPLACE = MPI.REPLACE

                def raw_publish():                  # publish my clock, read all clocks, 1 flush
                    my_clock[0] += 1
                    b_acc(clock_msg, server, clock_target, REPLACE)
                    b_get_acc(board_msg, board_msg, server, board_target, NO_OP)
                    b_flush(server)

                def raw_clock():                    # a raw SSP clock: push, reset, publish
                    raw_inc_reset()
                    raw_publish()

                def ps_sub():
                    t.get(sub)

                def way(name):
                    if "10%" not in name:
                        return ""
                    rs = t._rowset(sub)
                    read = sum(tr.count for tr in rs.read_transfers)
                    return "covering" if read > rs.rows.size else "scattered"

                row_type = MPI.FLOAT.Create_contiguous(args.cols).Commit()
                sub_type = row_type.Create_indexed_block(1, sub.astype(np.int32).tolist()).Commit()
                sub_buf = buf[:nsub]
                sub_msg = [sub_buf, nsub * args.cols, MPI.FLOAT]
                sub_target, block_target = (0, 1, sub_type), (0, nsub * args.cols, MPI.FLOAT)

                def raw_sub_indexed():
                    get_acc(sub_msg, sub_msg, server, sub_target, NO_OP)
                    flush(server)

                raw_rep = np.zeros((n, args.cols), np.float32)

                def raw_sub_place():
                    raw_sub_indexed()
                    scatter_rows(raw_rep, sub, sub_buf)

                def raw_sub_block():
                    get_acc(sub_msg, sub_msg, server, block_target, NO_OP)
                    flush(server)
                t.get()
                warm = 2 * COVER_TRIALS + 1         # past the scattered read's timed trials
                for name, a, b, setup in (("get", ps_get, raw_get, new_clock),
                                          ("get vs Rget", ps_get, raw_rget, new_clock),
                                          ("push: clock", w.clock, raw_inc, fill_oplog),
                                          ("push vs acc+reset", w.clock, raw_inc_reset, fill_oplog),
                                          ("push vs raw clock", w.clock, raw_clock, fill_oplog),
                                          ("get 10%", ps_sub, raw_sub_indexed, new_clock),
                                          ("get 10% vs read+place", ps_sub, raw_sub_place, new_clock),
                                          ("get 10% vs block", ps_sub, raw_sub_block, new_clock)):
                    for _ in range(warm):
                        setup(); a(); b()
                    res[name] = paired(a, b, reps, setup) + (way(name),)
                sub_type.Free()
                row_type.Free()
                res["clock (empty)"] = paired(w.clock, raw_publish, reps) + ("",)
                return res

            out = ps.run(work)
            if out.worker is not None and out.worker.is_leader:
                for name, (a, b, r, way) in out.value.items():
                    rows_out.append((n, name, a, b, r, way))
    return rows_out


def report(rows, cols, ranks):
    print(f"# ssp-mpi operation cost vs raw RMA (float32 x {cols} cols, {ranks} ranks, 1 server)")
    print(f"{'rows':>9} {'operation':<22} {'ssp-mpi':>11} {'raw RMA':>11} {'ratio':>7} {'GB/s':>7}  way")
    for n, name, a, b, ratio, way in rows:
        nbytes = n * cols * 4 * (0.1 if "10%" in name else 1)
        print(f"{n:>9} {name:<22} {a * 1e6:>9.1f}us {b * 1e6:>9.1f}us {ratio:>7.2f} "
              f"{nbytes / a / 1e9 if 'empty' not in name else float('nan'):>7.2f}  {way}".rstrip())


def main(argv=None):
    args = parse(argv)
    import os
    if "PMI_RANK" not in os.environ and "PMIX_RANK" not in os.environ and "OMPI_COMM_WORLD_RANK" not in os.environ:
        from ssp_mpi.launch import mpiexec
        cp = mpiexec(args.ranks, ["-m", "benchmarks.ps_ops"] + list(argv if argv is not None else sys.argv[1:]),
                     timeout=args.timeout)
        sys.stdout.write(cp.stdout)
        sys.stderr.write(cp.stderr)
        return cp.returncode
    rows = bench(args)
    from mpi4py import MPI
    if rows:
        report(rows, args.cols, MPI.COMM_WORLD.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
