"""Fixtures for the tests that run a real SLURM controller and node daemon.

The cluster itself is tests/slurm_cluster.py; this only wires it into pytest.
Each test gets its own cluster (start-up takes well under a second), with its
state, logs and job output under the test's tmp_path.
"""

import os
import sys

import pytest

_TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from slurm_cluster import SlurmCluster, missing_requirements  # noqa: E402

#: Why the SLURM tests cannot run on this machine, or None.
SLURM_MISSING = missing_requirements()


def pytest_collection_modifyitems(config, items):
    """Skip every @pytest.mark.slurm test here, with the reason, when SLURM
    or root is missing."""
    if SLURM_MISSING is None:
        return
    skip = pytest.mark.skip(reason=SLURM_MISSING)
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if "slurm" in item.keywords and str(item.path).startswith(here):
            item.add_marker(skip)


@pytest.fixture
def slurm_cluster(tmp_path):
    """A started single-node SlurmCluster with 8 declared CPUs.

    Teardown stops it and fails the test if any process is left behind.
    """
    if SLURM_MISSING is not None:
        pytest.skip(SLURM_MISSING)
    cluster = SlurmCluster(tmp_path / "slurm", cpus=8)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(check=True)


@pytest.fixture
def mf_kernels_warm(request):
    """The Numba kernels compiled into their on-disk cache before a real job
    runs under SLURM (in a fresh clone, 4 ranks compiling at once on 2 busy
    cores took longer than a test's budget).  Uses tests/conftest.py's
    session fixture ``warm_kernels`` when there is one."""
    try:
        return request.getfixturevalue("warm_kernels")
    except pytest.FixtureLookupError:
        return None
