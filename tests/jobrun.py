"""Running a job from the tests: launch, outputs."""
import json

import h5py

from ssp_mpi.launch import mpiexec


def run_job(module, n, args, timeout=300):
    """``mpiexec -n n python -m module args`` (with a timeout that fails the test)."""
    cp = mpiexec(n, ["-m", module] + [str(a) for a in args], timeout=timeout)
    assert not cp.timed_out, f"{module} timed out\n{cp.stdout}\n{cp.stderr}"
    return cp


def read_model(path):
    """Every dataset of ``path/model.h5`` by name, and its attributes as ``"attrs"``."""
    with h5py.File(path / "model.h5", "r") as f:
        out = {k: f[k][()] for k in f.keys()}
        out["attrs"] = dict(f.attrs)
    return out


def read_summary(path):
    return json.loads((path / "summary.json").read_text())
