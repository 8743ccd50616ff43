"""Smoke tests of benchmarks/mf_ps.py and benchmarks/mf_staleness.py at tiny sizes.

They check that the scripts run end to end (launching jobs.mf with 3 ranks),
exit 0, print their tables and write the plot; the figures are meaningless at
these sizes.  Each takes ~15-30 s on a 2-core machine.
"""
import subprocess
import sys

import pytest

from ssp_mpi.launch import REPO, rank_env

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

TINY = ["--users", "300", "--items", "100", "--ratings", "6000", "--epochs", "2",
        "--rounds", "1", "--timeout", "50"]


def run_script(args, timeout=60):
    return subprocess.run([sys.executable, "-m"] + args, cwd=REPO, env=rank_env(),
                          capture_output=True, text=True, timeout=timeout)


def test_mf_ps_smoke(warm_kernels, tmp_path):
    js = tmp_path / "ps.json"
    cp = run_script(["benchmarks.mf_ps"] + TINY + ["--rank", "8", "--staleness", "1",
                                                   "--json", str(js)])
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    head = [i for i, line in enumerate(lines) if line.split()[:3] == ["run", "wall", "cpu"]]
    assert head, cp.stdout
    rows = {line.split()[0] + (" " + line.split()[1] if line.startswith("job") else "")
            for line in lines[head[0] + 1:] if line.strip()}
    assert {"standalone", "job s=1"} <= {r.split(" ")[0] if r.startswith("standalone") else r
                                         for r in rows}, cp.stdout
    assert any(line.startswith("standalone x2") for line in lines), cp.stdout
    job = [line for line in lines if line.startswith("job s=1")][0].split()
    assert len(job) == 10 and all(float(x) > 0 for x in job[2:7]), job
    assert js.exists()


def test_mf_staleness_smoke(warm_kernels, tmp_path):
    png = tmp_path / "plot" / "mf_staleness.png"
    cp = run_script(["benchmarks.mf_staleness"] + TINY
                    + ["--rank", "4", "--staleness", "0", "inf", "--target", "5.0",
                       "--out", str(png)])
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    assert any(line.split()[:1] == ["s"] and "time to target" in line for line in lines), \
        cp.stdout
    for s in ("0", "inf"):
        assert any(line.split()[:1] == [s] and len(line.split()) == 7 for line in lines), \
            cp.stdout
    assert any(line.startswith("speed-up") for line in lines), cp.stdout
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
