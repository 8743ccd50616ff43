"""The SLURM test harness against a real slurmctld + slurmd (no mocks).

Timing facts these tests rely on (SLURM 22.05, see docs/slurm-testing.md):
- time limits are whole minutes; ``--signal=...@N`` is sent by slurmctld's
  periodic time-limit check, which runs every 30 s, so with ``--time=1`` and
  ``@58`` the signal arrives 2..32 s after the job starts;
- a requeued batch job is held pending (Reason=BeginTime) for ~2 minutes;
  ``SlurmCluster.start_now`` clears that with ``scontrol update StartTime=now``.
"""

import os
import re
import sys
import textwrap
import time

import pytest

from slurm_cluster import SlurmCluster, missing_requirements

pytestmark = pytest.mark.slurm

PY = sys.executable


def _script(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def test_cluster_runs_hostname(slurm_cluster):
    node = slurm_cluster.scontrol("-o", "show", "node")
    assert "CPUTot=8" in node and "State=IDLE" in node, node
    jobid = slurm_cluster.sbatch(wrap="hostname")
    job = slurm_cluster.wait(jobid, timeout=60)
    assert (job.state, job.exit_code) == ("COMPLETED", 0), job
    assert job.stdout.read_text().strip() == slurm_cluster.node


def test_cluster_has_private_dev_shm_and_hosts(slurm_cluster, tmp_path):
    """/dev/shm and /etc/hosts inside the cluster are its own: MPICH's
    segments of one cluster's job 1.0 cannot meet those of another's."""
    marker = f"ssp-slurm-test-{tmp_path.name}"
    slurm_cluster.run(["touch", f"/dev/shm/{marker}"])
    assert not os.path.exists(f"/dev/shm/{marker}")
    hosts = slurm_cluster.run(["cat", "/etc/hosts"]).stdout
    assert f"{slurm_cluster.address}\t{slurm_cluster.node}" in hosts
    assert slurm_cluster.run(["hostname"]).stdout.strip() == slurm_cluster.node


@pytest.mark.mpi
@pytest.mark.parametrize("ntasks", [4, 8])
def test_mpi_hello_pmi2(slurm_cluster, ntasks):
    """srun --mpi=pmi2 wires the MPICH wheel's ranks into one COMM_WORLD,
    also with 8 ranks on a machine with fewer cores (8 declared CPUs)."""
    hello = ("from mpi4py import MPI; c = MPI.COMM_WORLD; "
             "print('hello rank', c.Get_rank(), 'size', c.Get_size(), flush=True); "
             "c.Barrier()")
    jobid = slurm_cluster.sbatch(_script(f"""\
        #!/bin/sh
        #SBATCH --ntasks={ntasks}
        #SBATCH --time=2
        srun --mpi=pmi2 -n {ntasks} {PY} -c "{hello}"
        """))
    job = slurm_cluster.wait(jobid, timeout=90)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code) == ("COMPLETED", 0), (job, out)
    found = re.findall(r"^hello rank (\d+) size (\d+)$", out, re.M)
    assert sorted(int(r) for r, _ in found) == list(range(ntasks)), out
    assert {int(s) for _, s in found} == {ntasks}, out


_WAIT_FOR_USR1 = """\
import signal, sys, time
from mpi4py import MPI
got = []
signal.signal(signal.SIGUSR1, lambda signum, frame: got.append(signum))
rank = MPI.COMM_WORLD.Get_rank()
start = time.time()
while not got and time.time() - start < 100:
    time.sleep(0.1)
print("rank", rank, "USR1" if got else "no signal", flush=True)
MPI.COMM_WORLD.Barrier()
sys.exit(0 if got else 3)
"""


@pytest.mark.slow
def test_time_limit_signals_batch_shell_then_requeue(slurm_cluster, tmp_path):
    """--signal=B:USR1@58 with --time=1: the batch shell gets USR1 before the
    limit, forwards it to srun (which passes it on to the ranks), requeues the
    job itself; the second run sees SLURM_RESTART_COUNT=1 and completes."""
    step = tmp_path / "step.py"
    step.write_text(_WAIT_FOR_USR1)
    jobid = slurm_cluster.sbatch(_script(f"""\
        #!/bin/bash
        #SBATCH --ntasks=2
        #SBATCH --time=1
        #SBATCH --signal=B:USR1@58
        #SBATCH --requeue
        #SBATCH --open-mode=append
        echo "run restart=${{SLURM_RESTART_COUNT:-none}}"
        if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ]; then echo resumed; exit 0; fi
        got=0
        trap 'got=1; echo "shell USR1 at $(date +%s)"; kill -USR1 $srun' USR1
        echo "start at $(date +%s)"
        srun --mpi=pmi2 -n 2 {PY} -u {step} & srun=$!
        wait $srun; rc=$?
        # a trapped signal interrupts `wait` (rc 128+10); wait again for srun
        [ "$got" = 1 ] && {{ wait $srun; rc=$?; }}
        echo "srun rc=$rc"
        [ "$got" = 1 ] && scontrol requeue "$SLURM_JOB_ID"
        exit $rc
        """))
    slurm_cluster.wait(jobid, timeout=30, states={"RUNNING"})
    slurm_cluster.start_now(jobid, timeout=60)   # pending after the requeue
    job = slurm_cluster.wait(jobid, timeout=60, min_restarts=1)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code, job.restarts) == ("COMPLETED", 0, 1), (job, out)
    assert "run restart=none" in out and "run restart=1\nresumed" in out, out
    assert "rank 0 USR1" in out and "rank 1 USR1" in out and "srun rc=0" in out, out
    start = int(re.search(r"start at (\d+)", out).group(1))
    signalled = int(re.search(r"shell USR1 at (\d+)", out).group(1))
    assert 0 <= signalled - start < 60, out      # before the 1-minute limit


@pytest.mark.slow
def test_time_limit_signals_job_steps(slurm_cluster, tmp_path):
    """--signal=USR1@58 (no B:) goes to the tasks of the job steps, not the
    batch shell."""
    step = tmp_path / "step.py"
    step.write_text(_WAIT_FOR_USR1)
    t0 = time.monotonic()
    jobid = slurm_cluster.sbatch(_script(f"""\
        #!/bin/bash
        #SBATCH --ntasks=2
        #SBATCH --time=1
        #SBATCH --signal=USR1@58
        trap 'echo "shell got USR1"' USR1
        srun --mpi=pmi2 -n 2 {PY} -u {step}
        echo "srun rc=$?"
        """))
    job = slurm_cluster.wait(jobid, timeout=90)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code) == ("COMPLETED", 0), (job, out)
    assert "rank 0 USR1" in out and "rank 1 USR1" in out and "srun rc=0" in out, out
    assert "shell got USR1" not in out, out
    assert time.monotonic() - t0 < 60, "signal came after the time limit"


def test_requeue_sets_restart_count(slurm_cluster):
    """scontrol requeue of a --requeue job runs it again with
    SLURM_RESTART_COUNT set (fast path: no time limit involved)."""
    jobid = slurm_cluster.sbatch(_script("""\
        #!/bin/sh
        #SBATCH --requeue
        #SBATCH --open-mode=append
        echo "run restart=${SLURM_RESTART_COUNT:-none}"
        [ -n "$SLURM_RESTART_COUNT" ] && exit 0
        sleep 60
        """))
    slurm_cluster.wait_output(jobid, "run restart=none", timeout=30)
    slurm_cluster.requeue(jobid)
    job = slurm_cluster.wait(jobid, timeout=60, min_restarts=1)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code, job.restarts) == ("COMPLETED", 0, 1), (job, out)
    assert re.findall(r"run restart=(\S+)", out) == ["none", "1"], out


def test_signal_batch_shell_on_request(slurm_cluster):
    """scancel --signal=USR1 --batch reaches the batch shell at once (the
    quick way to exercise a job's signal handling without a time limit)."""
    jobid = slurm_cluster.sbatch(_script("""\
        #!/bin/bash
        trap 'echo got USR1; exit 0' USR1
        echo ready
        sleep 60 & wait
        echo no signal; exit 3
        """))
    slurm_cluster.wait_output(jobid, "ready", timeout=30)
    slurm_cluster.run(["scancel", "--signal=USR1", "--batch", jobid])
    job = slurm_cluster.wait(jobid, timeout=30)
    assert (job.state, job.exit_code) == ("COMPLETED", 0), job
    assert "got USR1" in job.stdout.read_text()


@pytest.mark.skipif(missing_requirements() is not None,
                    reason=missing_requirements() or "")
def test_stop_kills_daemons_and_running_jobs(tmp_path):
    """Leaving the context manager with a job still running leaves no
    process behind (daemons, slurmstepd, srun, ranks)."""
    with SlurmCluster(tmp_path / "slurm", cpus=8) as cluster:
        jobid = cluster.sbatch(_script(f"""\
            #!/bin/sh
            #SBATCH --ntasks=2
            srun --mpi=pmi2 -n 2 {PY} -c "import time; time.sleep(300)"
            """))
        cluster.wait(jobid, timeout=30, states={"RUNNING"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            names = [c for _, c in cluster.processes()]
            if names.count("python") + names.count("python3") >= 3:  # init + 2 ranks
                break
            time.sleep(0.2)
        names = [c for _, c in cluster.processes()]
        assert {"slurmctld", "slurmd", "slurmstepd", "srun"} <= set(names), names
    assert cluster.processes() == []


# ---------------------------------------------------------------- template
# A stand-in for a real job module, with the contract the template relies
# on (ssp_mpi.cli, ssp_mpi.signals): --checkpoint-dir, --out, --resume [PATH];
# SIGUSR1 on any rank -> checkpoint at the next clock boundary -> every rank
# exits with status 75 (EXIT_STOPPED).
_STUB_JOB = """\
import argparse, json, os, signal, sys, time
from mpi4py import MPI

p = argparse.ArgumentParser()
p.add_argument("--checkpoint-dir", required=True)
p.add_argument("--out", required=True)
p.add_argument("--resume", nargs="?", const="latest", default=None)
p.add_argument("--clocks", type=int, default=30)
p.add_argument("--clock-seconds", type=float, default=0.1)
a = p.parse_args()
comm = MPI.COMM_WORLD
stop = []
signal.signal(signal.SIGUSR1, lambda s, f: stop.append(s))
latest = os.path.join(a.checkpoint_dir, "LATEST")
clock = 0
if a.resume:
    clock = json.load(open(latest))["clock"]
if comm.rank == 0:
    print("stub: start clock", clock, "resume", a.resume is not None,
          "threads", os.environ.get("NUMBA_NUM_THREADS"),
          "cpus_per_task", os.environ.get("SLURM_CPUS_PER_TASK"),
          "size", comm.size, flush=True)
while clock < a.clocks:
    time.sleep(a.clock_seconds)
    clock += 1
    if comm.allreduce(len(stop), op=MPI.SUM):     # a consistent cut
        if comm.rank == 0:
            os.makedirs(a.checkpoint_dir, exist_ok=True)
            with open(latest + ".tmp", "w") as f:
                json.dump({"clock": clock}, f)
            os.replace(latest + ".tmp", latest)
            print("stub: checkpoint at clock", clock, flush=True)
        comm.Barrier()
        sys.exit(75)
    if comm.rank == 0 and clock == 3:
        print("stub: running", flush=True)
if comm.rank == 0:
    os.makedirs(a.out, exist_ok=True)
    open(os.path.join(a.out, "done"), "w").write(str(clock))
    print("stub: finished at clock", clock, flush=True)
"""


@pytest.mark.parametrize("trigger", ["scancel", pytest.param("time_limit", marks=pytest.mark.slow)])
def test_template_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path, trigger):
    """slurm/template.sbatch with a stub job: USR1 to the batch shell ->
    forwarded to the ranks -> checkpoint, exit 75 -> the script requeues the
    job -> the second run gets --resume and finishes from the checkpoint.

    trigger=time_limit: the real thing, ``--time=1 --signal=B:USR1@58``
    (signal 2..32 s after the start).  trigger=scancel: the same signal sent
    at once with ``scancel --signal=USR1 --batch``."""
    from pathlib import Path
    template = Path(__file__).resolve().parents[2] / "slurm" / "template.sbatch"
    work = tmp_path / "work"
    (work / "jobs").mkdir(parents=True)
    (work / "jobs" / "__init__.py").write_text("")
    (work / "jobs" / "stub.py").write_text(_STUB_JOB)
    # time_limit: 900 clocks x 0.05 s = 45 s, longer than the latest signal
    clocks = 200 if trigger == "scancel" else 900
    env = {"SSP_JOB": "stub", "SSP_PYTHON": PY,
           "SSP_JOB_ARGS": f"--clocks {clocks} --clock-seconds 0.05"}
    options = ["--ntasks-per-node=2", "--cpus-per-task=2"]
    options += ["--time=5"] if trigger == "scancel" else ["--time=1", "--signal=B:USR1@58"]
    jobid = slurm_cluster.sbatch(template, env=env, cwd=work, options=options)
    slurm_cluster.wait_output(jobid, "stub: running", timeout=60)
    if trigger == "scancel":
        slurm_cluster.run(["scancel", "--signal=USR1", "--batch", jobid])
    slurm_cluster.start_now(jobid, timeout=60)
    job = slurm_cluster.wait(jobid, timeout=90, min_restarts=1)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code, job.restarts) == ("COMPLETED", 0, 1), (job, out)
    ckpt = int(re.search(r"stub: checkpoint at clock (\d+)", out).group(1))
    assert 3 <= ckpt < clocks, out
    assert f"stub: start clock {ckpt} resume True threads 2 cpus_per_task 2 size 2" in out, out
    assert "stub: start clock 0 resume False threads 2 cpus_per_task 2 size 2" in out, out
    assert "checkpoint written (status 75); requeueing job" in out, out
    assert "job exited with status 0" in out, out
    assert (work / f"out-{jobid}" / "done").read_text() == str(clocks)


def test_template_stops_requeueing_after_max_restarts(slurm_cluster, tmp_path):
    """SSP_MAX_RESTARTS=0: a stopped job is not requeued; it fails with 75
    so that nobody mistakes it for a finished one."""
    from pathlib import Path
    template = Path(__file__).resolve().parents[2] / "slurm" / "template.sbatch"
    work = tmp_path / "work"
    (work / "jobs").mkdir(parents=True)
    (work / "jobs" / "__init__.py").write_text("")
    (work / "jobs" / "stub.py").write_text(_STUB_JOB)
    env = {"SSP_JOB": "stub", "SSP_PYTHON": PY, "SSP_MAX_RESTARTS": "0",
           "SSP_JOB_ARGS": "--clocks 400 --clock-seconds 0.05"}
    jobid = slurm_cluster.sbatch(template, env=env, cwd=work,
                                 options=["--ntasks-per-node=2", "--time=10"])
    slurm_cluster.wait_output(jobid, "stub: running", timeout=60)
    slurm_cluster.run(["scancel", "--signal=USR1", "--batch", jobid])
    job = slurm_cluster.wait(jobid, timeout=60)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code, job.restarts) == ("FAILED", 75, 0), (job, out)
    assert "already requeued 0 times (SSP_MAX_RESTARTS=0)" in out, out
    assert not (work / f"out-{jobid}").exists()


@pytest.mark.slow
@pytest.mark.mpi
def test_template_runs_real_mf_job_through_requeue(mf_kernels_warm, slurm_cluster, tmp_path):
    """The template with the real jobs.mf (built-in synthetic data, 4 ranks):
    USR1 mid-run -> checkpoint -> requeue -> --resume -> 100 epochs done,
    outputs written once, by the resumed run."""
    import json
    from pathlib import Path
    repo = Path(__file__).resolve().parents[2]
    if not (repo / "jobs" / "mf.py").exists():
        pytest.skip("jobs/mf.py not in this checkout")
    work = tmp_path / "work"
    work.mkdir()
    env = {"SSP_JOB": "mf", "SSP_PYTHON": PY, "SSP_JOB_ARGS": "--epochs 100",
           "PYTHONPATH": str(repo)}
    jobid = slurm_cluster.sbatch(repo / "slurm" / "template.sbatch", env=env, cwd=work,
                                 options=["--ntasks-per-node=4", "--time=10"])
    slurm_cluster.wait_output(jobid, "epoch 5/100", timeout=120)
    slurm_cluster.run(["scancel", "--signal=USR1", "--batch", jobid])
    slurm_cluster.start_now(jobid, timeout=90)
    job = slurm_cluster.wait(jobid, timeout=110, min_restarts=1)
    out = job.stdout.read_text()
    assert (job.state, job.exit_code, job.restarts) == ("COMPLETED", 0, 1), (job, out)
    assert re.search(r"^checkpoint: clock \d+ -> ckpt-", out, re.M), out
    assert re.search(r"^ssp-mpi: job \d+ run 2 .* --resume$", out, re.M), out
    assert out.count("epoch 1/100:") == 1, out          # not started over
    summary = json.loads((work / f"out-{jobid}" / "summary.json").read_text())
    assert summary["epochs"] == 100 and summary["config"]["resume"] == "latest", summary
    assert (work / f"out-{jobid}" / "model.h5").stat().st_size > 0
