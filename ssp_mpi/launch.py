"""Launch ``mpiexec -n N`` subprocesses safely (tests and benchmarks).

Every launch goes through ``tools/netns-run`` (a loopback-only network
namespace; a no-op when already inside one), has a timeout, and on timeout
kills the whole process group, so no rank is ever left behind.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NETNS_RUN = REPO / "tools" / "netns-run"


def mpiexec_path():
    """The ``mpiexec`` beside this Python (the MPICH wheel's), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    if here.exists():
        return str(here)
    found = shutil.which("mpiexec")
    if not found:
        raise FileNotFoundError("no mpiexec found: pip install mpich (or load your site's MPI module)")
    return found


def rank_env(extra=None):
    """Environment for ranks: one Numba thread, the repo importable."""
    env = dict(os.environ)
    env["NUMBA_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update({k: str(v) for k, v in extra.items()})
    return env


def in_loopback_namespace():
    """True when this process's network namespace has no interface but ``lo``."""
    with open("/proc/net/dev") as f:
        names = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    return names == ["lo"]


def ensure_loopback_namespace(module, argv):
    """A process that will start MPI itself (a singleton ``MPI_Init``, with
    no mpiexec) calls this first: outside a loopback-only namespace it is
    replaced by ``python -m module argv`` run through ``tools/netns-run``
    (which honours ``SSP_MPI_NO_NETNS=1``)."""
    if in_loopback_namespace() or os.environ.get("SSP_MPI_NO_NETNS") == "1":
        return
    cmd = netns_command([sys.executable, "-m", module] + list(argv))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(cmd[0], cmd, rank_env())


def netns_command(cmd):
    if not NETNS_RUN.exists():
        raise FileNotFoundError(f"{NETNS_RUN} is missing: run from a checkout of ssp-mpi")
    return [str(NETNS_RUN)] + list(cmd)


def start(n, args, *, env=None, cwd=None):
    """Start ``mpiexec -n n python ARGS...`` without waiting (its own process
    group); finish it with ``finish(proc, timeout)``."""
    cmd = [mpiexec_path(), "-n", str(int(n)), sys.executable] + [str(a) for a in args]
    return subprocess.Popen(netns_command(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=rank_env(env), cwd=cwd or REPO,
                            text=True, start_new_session=True)


def finish(proc, timeout):
    """Wait for a ``start``-ed launch; kill its process group on timeout."""
    timed_out = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    cp = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    cp.timed_out = timed_out
    return cp


def run(cmd, *, timeout, env=None, cwd=None, input=None):
    """Run ``cmd`` in a loopback-only namespace; kill its process group on
    timeout.  Returns a CompletedProcess (``returncode`` -9 after a kill,
    with ``timed_out=True``)."""
    proc = subprocess.Popen(netns_command(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            env=rank_env(env), cwd=cwd or REPO, text=True, start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=30)
    cp = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    cp.timed_out = timed_out
    return cp


def mpiexec(n, args, *, timeout=120, env=None, cwd=None):
    """``mpiexec -n n python ARGS...`` (``args`` after the interpreter)."""
    cmd = [mpiexec_path(), "-n", str(int(n)), sys.executable] + [str(a) for a in args]
    return run(cmd, timeout=timeout, env=env, cwd=cwd)
