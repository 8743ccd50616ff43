import subprocess
import sys

import pytest

from ssp_mpi.launch import REPO, rank_env


@pytest.fixture(scope="session")
def warm_kernels():
    """Compile every Numba kernel once into the on-disk cache, so that the
    ranks started afterwards load it instead of each compiling (slow when
    ranks outnumber cores)."""
    cp = subprocess.run([sys.executable, "-m", "kernels.warm"], cwd=REPO, env=rank_env(),
                        capture_output=True, text=True, timeout=900)
    assert cp.returncode == 0, cp.stderr
    return True
