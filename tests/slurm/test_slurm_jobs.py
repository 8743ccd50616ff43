"""slurm/mf.sbatch and slurm/lda.sbatch submitted to a real SLURM (small data)."""
import json
import sys
from pathlib import Path

import h5py
import pytest

pytestmark = [pytest.mark.slurm, pytest.mark.mpi]
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("job,args,check", [
    ("mf", "--epochs 3", lambda s: s["epochs"] == 3 and s["test_rmse"] < 1.0),
    ("lda", "--iterations 3 --topics 5", lambda s: s["iterations"] == 3 and s["loglik_per_token"] < 0),
])
def test_job_script_completes_with_valid_outputs(mf_kernels_warm, slurm_cluster, tmp_path,
                                                 job, args, check):
    work = tmp_path / "work"
    work.mkdir()
    env = {"SSP_MPI_HOME": str(REPO), "SSP_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    jobid = slurm_cluster.sbatch(REPO / "slurm" / f"{job}.sbatch", args=args.split(), env=env,
                                 cwd=work, options=["--ntasks-per-node=3", "--time=5"])
    done = slurm_cluster.wait(jobid, timeout=240)
    out = done.stdout.read_text()
    assert (done.state, done.exit_code) == ("COMPLETED", 0), (done, out)
    assert f"jobs.{job}" in out and "3 ranks" in out, out
    folder = work / f"out-{jobid}"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["workers"] == 2 and summary["servers"] == 1, summary
    assert check(summary), summary
    with h5py.File(folder / "model.h5", "r") as f:
        assert len(f.keys()) > 0
    assert (folder / "metrics.jsonl").read_text().strip()
