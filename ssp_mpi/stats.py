"""Per-worker, per-clock time and traffic accounting.

Every clock of every worker is split into compute, communication (RMA
operations and their flushes) and wait (blocked on the SSP read rule or on a
strict-BSP hold).  Compute is what is left of the clock's wall time.
"""
import time

CPU_SAMPLE_S = 0.001


class _Timer:
    """``with stats.comm():`` adds the block's seconds to one account (a
    plain class: a generator context manager costs several microseconds,
    which shows on small tables)."""
    __slots__ = ("_stats", "_field", "_t")

    def __init__(self, stats, field):
        self._stats = stats
        self._field = field

    def __enter__(self):
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        dt = time.perf_counter() - self._t
        setattr(self._stats, self._field, getattr(self._stats, self._field) + dt)
        return False


class ClockStats:
    FIELDS = ("clock", "wall_s", "cpu_s", "compute_s", "comm_s", "wait_s", "bytes_out",
              "bytes_in")

    def __init__(self):
        self.records = []
        self._t0 = time.perf_counter()
        self._start = self._t0
        self._cpu = time.process_time()
        self._cpu_at = self._t0
        self._comm = self._wait = 0.0
        self._out = self._in = 0

    def comm(self):
        """``with stats.comm():`` counts the block as communication."""
        return _Timer(self, "_comm")

    def wait(self):
        """``with stats.wait():`` counts the block as waiting."""
        return _Timer(self, "_wait")

    def add_comm(self, seconds, in_bytes=0, out_bytes=0):
        """Count ``seconds`` of communication that moved these bytes."""
        self._comm += seconds
        self._in += in_bytes
        self._out += out_bytes

    def restart_clock(self):
        """Start the current clock's timers now: call after one-off set-up
        (data layout, allocation) so that it is not counted as compute."""
        self._start = self._cpu_at = time.perf_counter()
        self._cpu = time.process_time()
        self._comm = self._wait = 0.0

    def compute_so_far(self):
        """Compute seconds of the clock in progress (for the straggler knob)."""
        return max(0.0, time.perf_counter() - self._start - self._comm - self._wait)

    def end_clock(self, clock, comm_since=None, out_bytes=0):
        """Close the record of ``clock``; ``comm_since``: a ``perf_counter``
        reading from which on the clock was communicating (the push and the
        publish, counted here with no second reading), ``out_bytes`` what
        it sent."""
        now = time.perf_counter()
        if comm_since is not None:
            self._comm += now - comm_since
        self._out += out_bytes
        wall = now - self._start
        # CPU time costs a system call (~1-2 us, as much as the rest of an
        # empty clock): read it once at least CPU_SAMPLE_S of wall time has
        # passed since the last reading.  A record's cpu_s is the CPU since
        # that reading (0 for the short clocks in between): a sum over clocks
        # misses at most the last millisecond.
        if now - self._cpu_at >= CPU_SAMPLE_S:
            cpu = time.process_time()
            self._cpu_at = now
        else:
            cpu = self._cpu
        comm, wait = self._comm, self._wait
        compute = wall - comm - wait
        rec = {"clock": clock, "wall_s": wall, "cpu_s": cpu - self._cpu,
               "compute_s": compute if compute > 0.0 else 0.0,
               "comm_s": comm, "wait_s": wait,
               "bytes_out": self._out, "bytes_in": self._in,
               "elapsed_s": now - self._t0}
        self.records.append(rec)
        self._start = now
        self._cpu = cpu
        self._comm = self._wait = 0.0
        self._out = self._in = 0
        return rec

    def totals(self):
        tot = {k: 0.0 for k in ("wall_s", "cpu_s", "compute_s", "comm_s", "wait_s")}
        tot.update(bytes_out=0, bytes_in=0, clocks=len(self.records))
        for r in self.records:
            for k in ("wall_s", "cpu_s", "compute_s", "comm_s", "wait_s", "bytes_out", "bytes_in"):
                tot[k] += r[k]
        return tot


def combine(per_worker_totals):
    """Aggregate the ``totals()`` of all workers: sums, and the maximum over
    workers of each time (the critical path)."""
    out = {"workers": len(per_worker_totals)}
    for k in ("compute_s", "comm_s", "wait_s", "wall_s", "cpu_s"):
        vals = [t[k] for t in per_worker_totals]
        out[k] = sum(vals) / max(1, len(vals))          # mean per worker
        out[k.replace("_s", "_max_s")] = max(vals) if vals else 0.0
    for k in ("bytes_out", "bytes_in"):
        out[k] = sum(t[k] for t in per_worker_totals)
    out["clocks"] = max((t["clocks"] for t in per_worker_totals), default=0)
    return out
