"""Smoke test of benchmarks/lda_staleness.py at tiny sizes.

It checks that the script runs end to end (launching jobs.lda with 3 ranks for
s in {0, inf}, with and without the straggler), exits 0, prints its table and
writes the plot; the figures are meaningless at these sizes.  ~50 s on a
2-core machine (four job launches).
"""
import subprocess
import sys

import pytest

from ssp_mpi.launch import REPO, rank_env

pytestmark = [pytest.mark.slow, pytest.mark.mpi]


def test_lda_staleness_smoke(warm_kernels, tmp_path):
    png = tmp_path / "plot" / "lda_staleness.png"
    js = tmp_path / "lda.json"
    cp = subprocess.run([sys.executable, "-m", "benchmarks.lda_staleness", "--docs", "200",
                         "--topics", "5", "--iterations", "4", "--staleness", "0", "inf",
                         "--rounds", "1", "--timeout", "40", "--out", str(png),
                         "--json", str(js)],
                        cwd=REPO, env=rank_env(), capture_output=True, text=True, timeout=85)
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    assert any(line.split()[:2] == ["s", "straggler"] and "time to target" in line
               for line in lines), cp.stdout
    for s in ("0", "inf"):
        for st in ("off", "on"):
            row = [line.split() for line in lines if line.split()[:2] == [s, st]]
            assert len(row) == 1 and len(row[0]) == 7, cp.stdout
            assert float(row[0][2]) >= 0 and float(row[0][4]) < 0, row
    assert sum(line.startswith("fastest to target") for line in lines) == 2, cp.stdout
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert js.exists()
    import json
    table = json.loads(js.read_text())["table"]       # full precision: a tiny run may print 0.000
    assert len(table) == 4 and all(r["train_wall_s"] > 0 for r in table), table
