"""Smoke tests of benchmarks/mf_ps.py and benchmarks/mf_staleness.py at tiny sizes.

They check that the scripts run end to end (launching jobs.mf with 3 ranks),
exit 0, print their tables and write the plot; the figures are meaningless at
these sizes.  Each takes ~15-30 s on a 2-core machine.
"""
import json
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
    cp = run_script(["benchmarks.mf_ps"] + TINY + ["--rank", "8", "--staleness", "0", "1",
                                                   "--json", str(js)])
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    head = [i for i, line in enumerate(lines) if line.split()[:3] == ["run", "wall", "cpu"]]
    assert head, cp.stdout
    table = {}
    for line in lines[head[0] + 1:]:
        if not line.strip() or line.startswith("("):
            break
        f = line.split()
        n = 1 if f[0] == "standalone" and not f[1].startswith("x") else 2
        table[" ".join(f[:n])] = f[n:]
    assert set(table) == {"standalone", "standalone x2", "job s=0", "job s=1"}, cp.stdout
    # each row: wall cpu compute vs-1-proc vs-x2 cpu-vs-x2 compute_s comm_s wait_s
    job = table["job s=1"]
    assert len(job) == 9 and all(float(x) > 0 for x in job[:6]), job
    assert float(table["standalone x2"][4]) == 1.0          # the baseline of the target
    # the job's cpu figure comes from its own per-clock CPU seconds (summary.json cpu_s)
    data = json.loads(js.read_text())
    assert all(j["cpu_s"] > 0 for j in data["jobs"]["1"])
    assert any(line.startswith("target (job / standalone x2") for line in lines), cp.stdout
    assert "--as-job-rank" not in (REPO / "benchmarks" / "mf_ps.py").read_text()


def test_mf_staleness_smoke(warm_kernels, tmp_path):
    png = tmp_path / "plot" / "mf_staleness.png"
    js = tmp_path / "st.json"
    cp = run_script(["benchmarks.mf_staleness"] + TINY
                    + ["--rank", "4", "--staleness", "0", "inf", "--target", "5.0",
                       "--eval-seconds", "0.002", "--ideal", "--json", str(js),
                       "--out", str(png)])
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    assert any(line.split()[:1] == ["s"] and "time to target" in line for line in lines), \
        cp.stdout
    for s in ("0", "inf"):
        assert any(line.split()[:1] == [s] and len(line.split()) == 8 for line in lines), \
            cp.stdout
    assert any(line.startswith("speed-up of the best s") for line in lines), cp.stdout
    assert any(line.startswith("speed-up over s=0 at each target") for line in lines), cp.stdout
    data = json.loads(js.read_text())
    for r in data["runs"]["inf"] + data["runs"]["0"]:
        # the curve is the job's timed evaluations: increasing times, RMSE of every point
        ts = [p[0] for p in r["curve"]]
        assert ts and ts == sorted(ts) and all(p[3] > 0 for p in r["curve"]), r["curve"]
        assert r["epochs_per_worker"][1] == 2.0          # the straggler did --epochs
    # --stop-when slowest: at s=inf the fast worker kept training past --epochs
    assert max(data["runs"]["inf"][0]["epochs_per_worker"]) > 2.0
    assert data["runs"]["0"][0]["epochs_per_worker"] == [2.0, 2.0]
    # the noise-free replay: a curve for each s, the fast worker ahead at s=inf
    ideal = data["ideal"]
    assert set(ideal) == {"0", "inf"} and ideal["inf"][-1][2] > ideal["inf"][-1][1]
    assert ideal["0"][-1][1] == ideal["0"][-1][2] == 2.0
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
