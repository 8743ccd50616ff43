"""Smoke tests of benchmarks/mf_ps.py and benchmarks/mf_staleness.py at tiny sizes.

They check that the scripts run end to end (launching jobs.mf with 3 ranks,
or 4 with mf_staleness's ``--workers 3``), exit 0, print their tables and write the plot; the
figures are meaningless at these sizes.  Each takes ~15-30 s on a 2-core
machine.  The replay test runs ``simulate`` in a subprocess under
``tools/netns-run`` (importing jobs.mf initialises MPI).
"""
import json
import subprocess
import sys

import pytest

from ssp_mpi import launch
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
                    + ["--workers", "2", "--rank", "4", "--staleness", "0", "inf",
                       "--target", "5.0",
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


def test_mf_staleness_three_workers_smoke(warm_kernels, tmp_path):
    js = tmp_path / "st3.json"
    cp = run_script(["benchmarks.mf_staleness"] + TINY
                    + ["--workers", "3", "--rank", "4", "--staleness", "0", "inf",
                       "--target", "5.0", "--json", str(js), "--out", str(tmp_path / "st3.png"),
                       # the job records a timed evaluation only at a time point every
                       # worker evaluated (at the start of a clock): with three workers
                       # on two cores and clocks of a few ms, several dozen clocks are
                       # needed for that to happen surely
                       "--ratings", "30000", "--epochs", "10", "--eval-seconds", "0.005"])
    assert cp.returncode == 0, cp.stderr[-3000:]
    lines = cp.stdout.splitlines()
    assert "1 server + 3 workers, --straggle 1:2.0" in lines[0], cp.stdout
    # the work bound of one 2x straggler among 3 workers: (2 * 3 - 1) / 3
    assert any(line.startswith("work bound") and "1.67x" in line for line in lines), cp.stdout
    rounds = [line for line in lines if line.startswith("  round 0 s=")]
    assert len(rounds) == 2 and all("of 3 workers" in line for line in rounds), cp.stdout
    assert any(line.startswith("speed-up of the best s") for line in lines), cp.stdout
    data = json.loads(js.read_text())
    assert data["config"]["workers"] == 3
    # every worker ran (the job's summary), the straggler (worker 1) did --epochs
    assert data["runs"]["0"][0]["epochs_per_worker"] == [10.0, 10.0, 10.0]
    ep = data["runs"]["inf"][0]["epochs_per_worker"]
    assert len(ep) == 3 and ep[1] == 10.0 and min(ep[0], ep[2]) > 10.0, ep


def test_mf_staleness_workers_checked():
    cp = run_script(["benchmarks.mf_staleness", "--workers", "3", "--straggle", "3:2.0"],
                    timeout=30)
    assert cp.returncode == 2 and "worker 3 does not exist with --workers 3" in cp.stderr
    cp = run_script(["benchmarks.mf_staleness", "--workers", "1"], timeout=30)
    assert cp.returncode == 2 and "--workers wants an integer >= 2" in cp.stderr


REPLAY = """
import json, sys
from benchmarks.mf_staleness import parse, simulate
args = parse(sys.argv[1:])
out = {}
for s in ("0", "inf"):
    trace = []
    simulate(args, s, trace=trace)
    out[s] = trace
print(json.dumps(out))
"""


def test_simulate_three_workers_straggler_time(warm_kernels):
    """The replay with 3 workers and --straggle 1:2.0: worker 1's clocks take
    2 units, the others' 1; at s=0 every clock starts when the straggler's
    previous one ends, at s=inf each worker runs back to back."""
    cp = launch.run([sys.executable, "-c", REPLAY, "--workers", "3", "--users", "300",
                     "--items", "100", "--ratings", "6000", "--epochs", "2", "--rank", "4"],
                    timeout=120)
    assert cp.returncode == 0, cp.stderr[-3000:]
    trace = json.loads(cp.stdout.splitlines()[-1])
    for s, tr in trace.items():
        assert {w for w, *_ in tr} == {0, 1, 2}, s
        for w, c, t0, t1 in tr:
            assert t1 - t0 == (2.0 if w == 1 else 1.0), (s, w, c, t0, t1)
    # s=0: clock c starts at 2c for everyone (the straggler's pace), 8 clocks each
    assert sorted((w, c, t0) for w, c, t0, _ in trace["0"]) == \
        [(w, c, 2.0 * c) for w in range(3) for c in range(8)]
    # s=inf: back to back; the fast workers keep training until the straggler's
    # 8 clocks end at 16 (--stop-when slowest): 16 clocks each (17 when a fast
    # worker's 16th ends at 16 just before the straggler's 8th, a tie)
    for w, c, t0, _ in trace["inf"]:
        assert t0 == (2.0 * c if w == 1 else 1.0 * c), (w, c, t0)
    clocks = [sorted(c for v, c, *_ in trace["inf"] if v == w) for w in range(3)]
    assert clocks[1] == list(range(8))
    for w in (0, 2):
        assert clocks[w] == list(range(len(clocks[w]))) and len(clocks[w]) in (16, 17)


def test_time_to_target_of_a_diverged_run():
    """The job writes a non-finite RMSE as a string; the sweep reads it as a
    float that never reaches the target."""
    from benchmarks.mf_staleness import rmse_value, time_to
    curve = [(0.2, 0, 0, 1.0), (0.4, 0, 0, 0.5), (0.6, 0, 0, rmse_value("nan")),
             (0.8, 0, 0, rmse_value("inf"))]
    assert time_to(curve, 0.75) == pytest.approx(0.3)
    assert time_to(curve, 0.1) is None
    assert time_to([(0.2, 0, 0, rmse_value("nan")), (0.4, 0, 0, 0.2)], 0.3) == 0.4
