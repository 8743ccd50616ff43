"""The options every job shares, and the ssp-mpi command (no MPI ranks)."""
import math
import subprocess
import sys

import pytest

from ssp_mpi.cli import config_from_args, job_parser
from ssp_mpi.errors import InputError
from ssp_mpi.launch import REPO, rank_env


def test_defaults_and_config():
    args = job_parser("job", "test").parse_args([])
    cfg = config_from_args(args, {"rank": 8})
    assert args.staleness == 0 and cfg.servers is None and cfg.strict_bsp
    assert cfg.checkpoint_dir == "out-checkpoints" and cfg.checkpoint_every == 0 and cfg.keep == 3
    assert cfg.job == {"rank": 8} and args.resume is None


def test_parsed_values():
    args = job_parser("job", "test").parse_args(
        ["--staleness", "inf", "--servers", "2", "--straggle", "1:2.5", "--resume",
         "--checkpoint-every", "4", "--out", "o/"])
    assert math.isinf(args.staleness) and args.servers == 2 and args.straggle == {1: 2.5}
    assert args.resume == "latest"
    assert config_from_args(args, {}).checkpoint_dir == "o-checkpoints"


@pytest.mark.parametrize("argv,message", [
    (["--staleness", "-1"], "staleness must be a non-negative integer or 'inf'"),
    (["--servers", "0"], "--servers: expected an integer >= 1"),
    (["--straggle", "x"], "--straggle wants WORKER:FACTOR"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_options_raise_collective_input_error(argv, message):
    with pytest.raises(InputError, match=message) as e:
        job_parser("job", "test").parse_args(argv)
    assert e.value.collective and "see job --help" in str(e.value)


def test_console_command_lists_jobs_and_rejects_unknown():
    run = lambda *a: subprocess.run([sys.executable, "-m", "ssp_mpi.cli", *a], cwd=REPO,
                                    env=rank_env(), capture_output=True, text=True, timeout=120)
    ok = run()
    assert ok.returncode == 0 and "mf" in ok.stdout and "lda" in ok.stdout and "inspect" in ok.stdout
    assert run("nonsense").returncode == 2
