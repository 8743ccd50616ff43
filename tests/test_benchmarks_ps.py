"""Smoke test of benchmarks.ps_ops: it launches itself, times every
operation against its raw peer and prints a row each (small sizes)."""
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.mpi


def test_ps_ops_prints_every_operation_with_a_ratio():
    cp = subprocess.run([sys.executable, "-m", "benchmarks.ps_ops", "--sizes", "1000,20000",
                         "--repeat", "3", "--timeout", "120"],
                        capture_output=True, text=True, timeout=180)
    assert cp.returncode == 0, cp.stderr
    for n in (1000, 20000):
        for op in ("get", "push: clock", "push vs acc+reset", "push vs raw clock", "get 10%",
                   "get 10% vs block", "clock (empty)"):
            m = re.search(rf"^\s*{n}\s+{re.escape(op)}\s+([\d.]+)us\s+([\d.]+)us\s+([\d.]+)\s", cp.stdout,
                          re.M)
            assert m, f"no row for {n} {op}:\n{cp.stdout}"
            ours, raw, ratio = map(float, m.groups())
            assert ours > 0 and raw > 0 and ratio > 0
