"""Smoke test of benchmarks.ps_ops: it launches itself, times every
operation against its raw peer and prints a row each (small sizes)."""
import re
import subprocess
import sys

import pytest


@pytest.mark.mpi
def test_ps_ops_prints_every_operation_with_a_ratio():
    cp = subprocess.run([sys.executable, "-m", "benchmarks.ps_ops", "--sizes", "1000,20000",
                         "--repeat", "3", "--timeout", "120"],
                        capture_output=True, text=True, timeout=180)
    assert cp.returncode == 0, cp.stderr
    for n in (1000, 20000):
        for op in ("get", "get vs Rget", "push: clock", "push vs acc+reset", "push vs raw clock", "get 10%",
                   "get 10% vs read+place", "get 10% vs block", "clock (empty)"):
            m = re.search(rf"^\s*{n}\s+{re.escape(op)}\s+([\d.]+)us\s+([\d.]+)us\s+([\d.]+)\s+\S+(.*)$",
                          cp.stdout, re.M)
            assert m, f"no row for {n} {op}:\n{cp.stdout}"
            ours, raw, ratio = map(float, m.groups()[:3])
            assert ours > 0 and raw > 0 and ratio > 0
            way = m.group(4).strip()            # how the scattered reads moved their rows
            assert way in (("covering", "scattered") if "10%" in op else ("",)), cp.stdout


def test_paired_keeps_each_time_with_its_operation_whichever_goes_first():
    """The pair takes turns at going first; every time must still be booked
    to the operation that took it."""
    import time
    from benchmarks.ps_ops import paired
    order = []
    a = lambda: (order.append("a"), time.sleep(0.004))      # noqa: E731
    b = lambda: (order.append("b"), time.sleep(0.001))      # noqa: E731
    ta, tb, ratio = paired(a, b, 6)
    assert order[:4] == ["a", "b", "b", "a"]
    assert ta > 0.0035 and tb < 0.003 and 1.5 < ratio < 6, (ta, tb, ratio)
