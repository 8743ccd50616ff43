"""Checkpoints (DESIGN section 5): exact resume, signals, crashes, damage."""
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssp_mpi import checkpoint
from ssp_mpi.launch import finish, mpiexec, start

PROG = "tests/progs/ckpt.py"


def run(n, *args, timeout=120, env=None):
    cp = mpiexec(n, [PROG, *map(str, args)], timeout=timeout, env=env)
    assert not cp.timed_out, cp.stdout + cp.stderr
    return cp


def final_line(cp):
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return next(l for l in cp.stdout.splitlines() if l.startswith("FINAL"))


@pytest.fixture(scope="module")
def uninterrupted():
    """The reference: 10 clocks in one go (s = 0)."""
    return {n: final_line(run(n, "--clocks", 10)) for n in (4, 5)}


@pytest.mark.mpi
@pytest.mark.parametrize("servers_before,servers_after", [(1, 1), (1, 2), (2, 1)])
def test_stop_and_resume_equals_uninterrupted(tmp_path, uninterrupted, servers_before, servers_after):
    d = tmp_path / "ck"
    n_before, n_after = 3 + servers_before, 3 + servers_after      # always 3 workers
    cp = run(n_before, "--clocks", 5, "--checkpoint-dir", d, "--checkpoint-every", 5,
             "--servers", servers_before)
    assert "FINAL clock=5" in final_line(cp)
    assert (d / "LATEST").read_text().strip() == "ckpt-000000005"
    line = final_line(run(n_after, "--clocks", 10, "--checkpoint-dir", d, "--resume",
                          "--servers", servers_after))
    assert line == uninterrupted[4]          # tables, floats rounded to 1e-8, and local state


@pytest.mark.mpi
def test_keep_last_k_and_readable_by_h5py_and_h5dump(tmp_path):
    d = tmp_path / "ck"
    final_line(run(4, "--clocks", 8, "--checkpoint-dir", d, "--checkpoint-every", 2, "--keep", 2))
    kept = sorted(p.name for p in d.iterdir() if p.name.startswith("ckpt-"))
    assert kept == ["ckpt-000000006", "ckpt-000000008"]
    ck = checkpoint.Checkpoint.open(d / "ckpt-000000008")
    assert ck.clock == 8 and ck.n_workers == 3
    with h5py.File(d / "ckpt-000000008" / "master.h5", "r") as f:
        whole = f["tables/ints"][()]
        assert whole.shape == (50, 3)
        with h5py.File(d / "ckpt-000000008" / "shard-0.h5", "r") as s:
            assert np.array_equal(whole[s["tables/ints/rows"][()]], s["tables/ints/values"][()])
    import sys
    ins = subprocess.run([sys.executable, "-m", "ssp_mpi.cli", "inspect", str(d)],
                         capture_output=True, text=True, timeout=60)
    assert ins.returncode == 0, ins.stderr
    assert "clock       8" in ins.stdout and "all checksums match" in ins.stdout
    assert "ints" in ins.stdout and "50 x 3" in ins.stdout and "worker 2:" in ins.stdout
    if shutil.which("h5dump"):
        out = subprocess.run(["h5dump", "-d", "/tables/ints", "-c", "2,3",
                              str(d / "ckpt-000000008" / "master.h5")],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and f"{whole[0, 0]}, {whole[0, 1]}" in out.stdout.replace("\n", " ")


def wait_for_clock(pid_dir, clock, timeout=60):
    end = time.monotonic() + timeout
    f = Path(pid_dir) / "clock"
    while time.monotonic() < end:
        if f.exists() and f.read_text().strip() and int(f.read_text()) >= clock:
            return
        time.sleep(0.05)
    raise AssertionError(f"the job never reached clock {clock}")


def launch_and_signal(tmp_path, rank, sig, n=4, extra=(), env=None):
    d, pids = tmp_path / "ck", tmp_path / "pids"
    pids.mkdir()
    proc = start(n, [PROG, "--clocks", 200, "--sleep", 0.02, "--checkpoint-dir", d,
                     "--pid-dir", pids, *extra], env=env)
    try:
        wait_for_clock(pids, 3)
        os.kill(int((pids / f"rank-{rank}.pid").read_text()), sig)
        t = time.monotonic()
        cp = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return cp, time.monotonic() - t, d


@pytest.mark.mpi
@pytest.mark.parametrize("rank,sig", [(2, signal.SIGTERM), (0, signal.SIGUSR1)])
def test_signal_to_one_rank_checkpoints_and_exits_cleanly(tmp_path, rank, sig):
    """rank 0 is the server, rank 2 a worker; either one is enough."""
    cp, took, d = launch_and_signal(tmp_path, rank, sig)
    assert cp.returncode == 75, cp.stdout + cp.stderr
    assert "STOPPED at clock" in cp.stdout and took < 20
    stopped_at = int(cp.stdout.split("STOPPED at clock")[1].split()[0])
    ck = checkpoint.find_latest(d)
    assert ck is not None and ck.clock == stopped_at
    # resume continues (to a nearby end, to keep the test short) and matches a straight run
    end = stopped_at + 3
    resumed = final_line(run(4, "--clocks", end, "--checkpoint-dir", d, "--resume"))
    assert resumed == final_line(run(4, "--clocks", end))


@pytest.mark.mpi
def test_request_reaches_workers_waiting_in_a_collective(tmp_path):
    """Worker 0 takes a stop request at its clock boundary after the other
    workers passed theirs and went on into an allreduce among workers (as a
    job's evaluation does).  Worker 0 waits there for their answers, they
    wait for worker 0 in the allreduce: they must answer from inside it, or
    the job never ends.  (At staleness 1 the others are in the allreduce of
    clock 4 while worker 0 still sleeps in clock 3; at staleness 0 the same
    happens only in a narrow race: the likely cause of a SLURM requeue test's
    hang in CI.)"""
    d = tmp_path / "ck"
    cp = run(4, "--clocks", 100, "--staleness", 1, "--allreduce", "--signal-at", 3,
             "--checkpoint-dir", d, timeout=60)
    assert cp.returncode == 75, cp.stdout + cp.stderr
    stopped_at = int(cp.stdout.split("STOPPED at clock")[1].split()[0])
    assert 4 <= stopped_at <= 6, cp.stdout       # the boundary after the request
    ck = checkpoint.find_latest(d)
    assert ck is not None and ck.clock == stopped_at


def _leftovers():
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if PROG in l and "ps -eo" not in l]


@pytest.mark.mpi
def test_sigkill_of_a_worker_ends_job_and_checkpoint_survives(tmp_path):
    cp, took, d = launch_and_signal(tmp_path, 3, signal.SIGKILL, extra=["--checkpoint-every", 2])
    assert cp.returncode != 0 and took < 10
    time.sleep(0.5)
    assert not _leftovers()
    ck = checkpoint.find_latest(d)
    assert ck is not None and ck.clock >= 2
    end = ck.clock + 2
    assert final_line(run(4, "--clocks", end, "--checkpoint-dir", d, "--resume")) == \
        final_line(run(4, "--clocks", end))


@pytest.mark.mpi
def test_sigkill_during_checkpoint_write_keeps_previous(tmp_path):
    d = tmp_path / "ck"
    cp = run(4, "--clocks", 10, "--checkpoint-dir", d, "--checkpoint-every", 2,
             env={"SSP_MPI_FAULT_KILL_IN_CHECKPOINT": "6"}, timeout=60)
    assert cp.returncode != 0
    names = sorted(p.name for p in d.iterdir())
    assert "ckpt-000000004" in names and "ckpt-000000006" not in names
    assert any(n.startswith("ckpt-000000006.tmp-") for n in names)     # the torn write
    assert checkpoint.find_latest(d).clock == 4
    assert final_line(run(4, "--clocks", 6, "--checkpoint-dir", d, "--resume")) == \
        final_line(run(4, "--clocks", 6))


def test_damaged_checkpoints_are_skipped_with_a_warning(tmp_path, caplog):
    """Unit test on files: a missing shard, a corrupted dataset and a folder
    without master.h5 are each detected and skipped."""
    root = tmp_path / "ck"
    meta = {"layout": {"n_servers": 2, "n_workers": 1, "servers": [0, 1], "workers": [2]},
            "config": {}, "tables": {"t": {"rows": 5, "cols": 2, "dtype": "float64"}}}
    good = {}
    for clock in (1, 2, 3, 4):
        tmp = checkpoint.begin(root, clock, "x")
        sums = {}
        for s in (0, 1):
            rows = np.arange(s, 5, 2)
            sums.update(checkpoint.write_shard(tmp, s, {"t": (rows, np.outer(rows, [1.0, clock]))}))
        sums.update(checkpoint.write_worker(tmp, 0, {"seed": np.int64(clock)}))
        good[clock] = checkpoint.finish(tmp, dict(meta, clock=clock), sums, keep=10)
    # clock 4: a shard goes missing; clock 3: a value is changed; clock 2: no master
    os.remove(good[4] / "shard-1.h5")
    with h5py.File(good[3] / "shard-0.h5", "r+") as f:
        f["tables/t/values"][0, 0] = 99.0
    os.remove(good[2] / "master.h5")
    with caplog.at_level("WARNING"):
        ck = checkpoint.find_latest(root)
    assert ck.clock == 1
    text = caplog.text
    assert "ckpt-000000004" in text and "shard-1.h5 is missing" in text
    assert "ckpt-000000003" in text and "fails its checksum" in text
    assert "ckpt-000000002" in text and "no master.h5" in text
    # resharding onto 3 servers reads the right rows
    assert ck.read_rows("t", 1, 3).tolist() == [[1.0, 1.0], [4.0, 4.0]]
    assert ck.worker_state(0)["seed"] == 1
    with pytest.raises(checkpoint.CheckpointError, match="no complete checkpoint"):
        checkpoint.resolve(True, tmp_path / "empty")
