"""tools/netns-run: loopback only, a private /dev/shm, the command's exit code."""
import os
import subprocess
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "netns-run")


def run(cmd, **env):
    return subprocess.run([SCRIPT, "sh", "-c", cmd], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SSP_MPI_NETNS_NEW": "1", **env})


def test_only_loopback_and_private_dev_shm():
    marker = f"ssp-mpi-test-{uuid.uuid4().hex}"
    cp = run(f"awk 'NR > 2 {{ sub(\":\", \"\", $1); print $1 }}' /proc/net/dev; "
             f"touch /dev/shm/{marker} && ls /dev/shm")
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.split()
    assert lines[0] == "lo" and marker in lines[1:], cp.stdout
    assert "warning" not in cp.stderr
    assert not os.path.exists(f"/dev/shm/{marker}")      # gone with the namespace


def test_exit_code_and_output_pass_through():
    cp = run("echo out; echo err >&2; exit 7")
    assert (cp.returncode, cp.stdout, cp.stderr) == (7, "out\n", "err\n")

