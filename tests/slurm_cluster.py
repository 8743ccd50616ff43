"""A real single-node SLURM cluster for tests, private to one network namespace.

    with SlurmCluster(tmp_path, cpus=8) as cluster:
        jobid = cluster.sbatch("#!/bin/sh\\nhostname\\n")
        job = cluster.wait(jobid, timeout=60)
        assert job.state == "COMPLETED"

What ``start()`` does (see docs/slurm-testing.md for the why):

1. Creates fresh namespaces with ``unshare --net --uts --mount --pid --fork
   --mount-proc --kill-child``.  PID 1 in there is a small Python init (this
   file run as a script) that

   * brings ``lo`` up and adds the test address (default ``10.254.0.1/32``) to
     ``lo``.  glibc's ``getaddrinfo(AI_ADDRCONFIG)``, which SLURM uses for every
     name *and* numeric address, answers "Name or service not known" when the
     only IPv4 address is 127.0.0.1; one more address fixes that.  It lives in
     our own namespace, so nothing can leave the machine.
   * sets the hostname (own UTS namespace) to the node name and bind-mounts a
     private ``hosts`` file over ``/etc/hosts`` (own mount namespace): the real
     ``/etc/hosts`` is never modified.
   * reaps orphans (daemonised slurmctld/slurmd/slurmstepd end up as its
     children) until it is killed.

   Killing that init with SIGKILL makes the kernel kill every process of the
   PID namespace: daemons, slurmstepd, job scripts, MPI ranks.  That is the
   "no leftover processes" guarantee; ``stop()`` then checks it by scanning
   ``/proc`` for any process still in the namespace.
2. Writes ``slurm.conf`` into ``workdir`` (state, pid and log files all
   under ``workdir``; slurmd's spool, which holds UNIX sockets, in a short
   ``/tmp/ssp-slurmd-*`` directory removed by ``stop()``), starts
   ``slurmctld`` and ``slurmd`` inside the namespaces and waits until
   ``sinfo`` reports the node idle.

Every SLURM client call (``sbatch``, ``scontrol``, ``sinfo``, ...) goes
through ``nsenter`` into the same namespaces with ``SLURM_CONF`` pointing at
the generated configuration.  Everything has a timeout; failures raise
:class:`SlurmError` with the tail of the daemon logs.

Requires root (namespaces, slurmd), util-linux ``unshare``/``nsenter``,
iproute2 ``ip`` and the Debian packages slurmctld, slurmd and slurm-client
(``tools/install-slurm.sh``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["SlurmCluster", "SlurmError", "Job", "missing_requirements",
           "TERMINAL_STATES"]

# Job states after which a job will not run again by itself.
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED",
    "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT", "REVOKED",
})

_DAEMONS = ("slurmctld", "slurmd")
_CLIENTS = ("sbatch", "srun", "sinfo", "squeue", "scontrol", "scancel")
_TOOLS = ("unshare", "nsenter", "ip")


def missing_requirements() -> str | None:
    """Why a SlurmCluster cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (network/PID namespaces, slurmd)"
    absent = [b for b in _DAEMONS + _CLIENTS if shutil.which(b) is None]
    if absent:
        return ("SLURM binaries not found: %s (install with tools/install-slurm.sh)"
                % " ".join(absent))
    absent = [b for b in _TOOLS if shutil.which(b) is None]
    if absent:
        return "needed tools not found: %s (util-linux, iproute2)" % " ".join(absent)
    return None


class SlurmError(RuntimeError):
    """A SLURM daemon or command failed; the message carries the log tails."""


class Job(dict):
    """``scontrol show job`` fields of one job, plus a few conveniences."""

    @property
    def id(self) -> str:
        return self.get("JobId", "")

    @property
    def state(self) -> str:
        return self.get("JobState", "")

    @property
    def exit_code(self) -> int:
        """Exit status of the batch script (first half of ``ExitCode=a:b``)."""
        return int(self.get("ExitCode", "0:0").split(":")[0])

    @property
    def signal(self) -> int:
        """Signal that ended the batch script (second half of ``ExitCode``)."""
        return int(self.get("ExitCode", "0:0").split(":")[1])

    @property
    def restarts(self) -> int:
        return int(self.get("Restarts", "0"))

    @property
    def stdout(self) -> Path:
        return Path(self["StdOut"])


def _parse_scontrol_record(line: str) -> dict:
    """Parse one ``scontrol -o show ...`` line into a dict.

    Values may contain spaces (``Reason=...``, ``Command=...``), so split on
    `` Key=`` boundaries rather than on whitespace.
    """
    fields = {}
    parts = re.split(r"\s(?=[A-Za-z][A-Za-z0-9_:/]*=)", line.strip())
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    return fields


class SlurmCluster:
    """A private slurmctld + slurmd on one node, see the module docstring.

    ``cpus`` is the CPU count declared for the node; it may exceed the real
    core count (``SlurmdParameters=config_overrides``), so 8 ranks can run on
    2 cores.  ``extra_conf`` lines are appended to slurm.conf.
    """

    def __init__(self, workdir, cpus: int = 8, *, node: str = "sspnode0",
                 address: str = "10.254.0.1", real_memory: int = 2000,
                 start_timeout: float = 60.0, extra_conf: str = ""):
        self.workdir = Path(workdir).resolve()
        self.cpus = int(cpus)
        self.node = node
        self.address = address
        self.real_memory = int(real_memory)
        self.start_timeout = float(start_timeout)
        self.extra_conf = extra_conf
        self.conf = self.workdir / "slurm.conf"
        self.logdir = self.workdir / "log"
        self._holder: subprocess.Popen | None = None   # the `unshare` process
        self._init_pid: int | None = None               # its child, PID 1 inside
        self._pidns: str | None = None                  # e.g. "pid:[4026532301]"
        self._nscmd: list[str] = []
        self.spooldir: Path | None = None  # short path, see start()

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        why = missing_requirements()
        if why:
            raise SlurmError(why)
        if not _cgroup_fs_visible():
            raise SlurmError(
                "no cgroup filesystem mounted on /sys/fs/cgroup: slurmd 22.05 refuses to "
                "start without it ('Unable to initialize cgroup plugin'), even with "
                "proctrack/linuxproc.  Run the tests in a namespace made with "
                "unshare/nsenter (tools/netns-run), not `ip netns exec`, which remounts /sys.")
        for sub in ("state", "log", "jobs"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        # slurmd and slurmstepd put UNIX sockets in the spool dir
        # (SPOOL/NODE_JOBID.STEPID), and a socket path may not exceed 108
        # bytes: with a pytest tmp_path as spool, slurmstepd dies with "Unix
        # socket path ... is too long".  So the spool gets a short path.
        self.spooldir = Path(tempfile.mkdtemp(
            prefix="ssp-slurmd-", dir="/tmp" if os.access("/tmp", os.W_OK) else None))
        self._write_config()
        try:
            self._start_namespace()
            self._start_daemons()
            self._wait_node_idle()
        except BaseException:
            self.stop(check=False)
            raise

    def _write_config(self) -> None:
        w = self.workdir
        conf = f"""\
# Generated by tests/slurm_cluster.py: a private single-node test cluster.
ClusterName=ssptest
SlurmctldHost={self.node}({self.address})
SlurmctldPort=6817
SlurmdPort=6818
# root-only test cluster without munge
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={w}/state
SlurmdSpoolDir={self.spooldir}
SlurmctldPidFile={w}/slurmctld.pid
SlurmdPidFile={w}/slurmd.pid
SlurmctldLogFile={self.logdir}/slurmctld.log
SlurmdLogFile={self.logdir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups needed: processes are tracked by parent pid, and the whole
# cluster lives in its own PID namespace anyway
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no slurmdbd, so no sacct; finished jobs stay in `scontrol show job` for
# MinJobAge seconds, and jobcomp/filetxt keeps a completion log as well
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.logdir}/jobcomp.log
MinJobAge=86400
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
# react quickly in tests
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MessageTimeout=10
# trust the CPU count below even if the machine has fewer cores
SlurmdParameters=config_overrides
NodeName={self.node} NodeAddr={self.address} CPUs={self.cpus} RealMemory={self.real_memory} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
{self.extra_conf}
"""
        self.conf.write_text(conf)
        (self.workdir / "hosts").write_text(
            f"127.0.0.1\tlocalhost\n{self.address}\t{self.node}\n"
            "::1\tlocalhost ip6-localhost ip6-loopback\n")

    def _start_namespace(self) -> None:
        ready = self.workdir / "ns.ready"
        ready.unlink(missing_ok=True)
        cmd = ["unshare", "--net", "--uts", "--mount", "--pid", "--fork",
               "--mount-proc", "--kill-child",
               sys.executable, "-S", os.path.abspath(__file__), "--init",
               self.node, self.address, str(self.workdir / "hosts"), str(ready)]
        nslog = open(self.logdir / "ns-init.log", "ab")
        # Own session: a Ctrl-C meant for pytest must not kill the cluster
        # before stop() has had its say.  Parent-death signal: if the test
        # process dies hard, `unshare` dies, and --kill-child takes the
        # namespace (and every daemon and job in it) down with it.
        self._holder = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                        stdout=nslog, stderr=nslog,
                                        start_new_session=True,
                                        preexec_fn=_die_with_parent)
        nslog.close()
        deadline = time.monotonic() + 20
        while not ready.exists():
            if self._holder.poll() is not None:
                raise SlurmError("namespace init exited with %s\n%s"
                                 % (self._holder.returncode, self.log_tails()))
            if time.monotonic() > deadline:
                raise SlurmError("namespace init not ready after 20 s\n"
                                 + self.log_tails())
            time.sleep(0.05)
        self._init_pid = self._find_child(self._holder.pid)
        self._pidns = os.readlink(f"/proc/{self._init_pid}/ns/pid")
        self._nscmd = ["nsenter", "-t", str(self._init_pid),
                       "--net", "--uts", "--mount", "--pid"]

    @staticmethod
    def _find_child(pid: int) -> int:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        if not kids:  # kernels without CONFIG_PROC_CHILDREN
            for d in Path("/proc").iterdir():
                if d.name.isdigit():
                    try:
                        st = (d / "stat").read_text()
                    except OSError:
                        continue
                    if int(st.rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(d.name)
        if len(kids) != 1:
            raise SlurmError(f"cannot find the namespace init (children of {pid}: {kids})")
        return int(kids[0])

    def _start_daemons(self) -> None:
        for daemon in _DAEMONS:
            pidfile = self.workdir / f"{daemon}.pid"
            pidfile.unlink(missing_ok=True)
            # Without -D both daemonise: the parent returns once the daemon
            # is set up, and the daemon is reparented to our namespace init.
            # slurmctld -c: do not recover jobs from an earlier cluster's
            # state when workdir is reused.
            clean = ["-c"] if daemon == "slurmctld" else []
            res = self.run([daemon, *clean, "-f", str(self.conf)], timeout=30, check=False)
            if res.returncode != 0:
                raise SlurmError(f"{daemon} failed to start (exit {res.returncode}):\n"
                                 f"{res.stdout}{res.stderr}\n{self.log_tails()}")
            deadline = time.monotonic() + 20
            while not pidfile.exists() or not pidfile.read_text().strip():
                if time.monotonic() > deadline:
                    raise SlurmError(f"{daemon}: no pid file after 20 s\n{self.log_tails()}")
                time.sleep(0.1)

    def _wait_node_idle(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            res = self.run(["sinfo", "-h", "-N", "-o", "%N %T"], timeout=15, check=False)
            last = (res.stdout + res.stderr).strip()
            if res.returncode == 0 and re.search(rf"^{re.escape(self.node)} idle$",
                                                 res.stdout, re.M):
                return
            time.sleep(0.5)
        raise SlurmError(f"node {self.node} not idle after {self.start_timeout:.0f} s "
                         f"(last sinfo: {last!r})\n{self.log_tails()}")

    def stop(self, check: bool = True) -> None:
        """Stop daemons and jobs; with ``check`` raise if any process survives."""
        if self._holder is None:
            if self.spooldir is not None:
                shutil.rmtree(self.spooldir, ignore_errors=True)
                self.spooldir = None
            return
        try:
            if self._init_pid is not None and self._holder.poll() is None:
                # Be polite first: ask the daemons to exit (slurmctld saves
                # its state, slurmd says goodbye), but do not wait for jobs:
                # those die with the namespace below.
                self.run(["scontrol", "shutdown"], timeout=10, check=False)
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and any(
                        c in ("slurmctld", "slurmd") for _, c in self._ns_pids()):
                    time.sleep(0.1)
        except (subprocess.SubprocessError, OSError):
            pass
        # Killing PID 1 of the namespace kills everything else in it.
        if self._init_pid is not None:
            try:
                os.kill(self._init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self._holder.kill()
        except ProcessLookupError:
            pass
        try:
            self._holder.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        left = self._ns_pids()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self._ns_pids()
        self._holder = None
        self._init_pid = None
        self._nscmd = []     # never nsenter a PID that may have been reused
        if self.spooldir is not None and not left:
            shutil.rmtree(self.spooldir, ignore_errors=True)
            self.spooldir = None
        if left and check:
            raise SlurmError("processes left in the test cluster's PID namespace: %s"
                             % ", ".join(f"{p} ({c})" for p, c in left))

    def _ns_pids(self, exclude_init: bool = False) -> list[tuple[int, str]]:
        """(pid, command) of the processes in the cluster's PID namespace."""
        if self._pidns is None:
            return []
        found = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            pid = int(d.name)
            if exclude_init and pid == self._init_pid:
                continue
            try:
                if os.readlink(d / "ns" / "pid") != self._pidns:
                    continue
                stat = (d / "stat").read_text()
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue    # gone meanwhile
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue    # exited, waiting to be reaped
            found.append((pid, comm))
        return found

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command) of every live process of the cluster (incl. its init)."""
        return self._ns_pids()

    # -------------------------------------------------------------- clients
    @property
    def env(self) -> dict:
        """Environment for SLURM clients: ours plus SLURM_CONF."""
        env = dict(os.environ)
        # Do not let a surrounding SLURM job (a CI runner inside SLURM) leak in.
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_")):
                del env[key]
        env["SLURM_CONF"] = str(self.conf)
        return env

    def run(self, argv, *, timeout: float = 30, check: bool = True, env=None,
            cwd=None, input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the cluster's namespaces (as a client)."""
        if not self._nscmd:
            raise SlurmError("cluster not started")
        full_env = self.env
        if env:
            full_env.update(env)
        cwd = str(cwd or self.workdir)
        cmd = self._nscmd + [f"--wd={cwd}", "--"] + [str(a) for a in argv]
        try:
            res = subprocess.run(cmd, env=full_env, capture_output=True, text=True,
                                 timeout=timeout, input=input,
                                 stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            raise SlurmError(f"timed out after {timeout} s: {shlex.join(map(str, argv))}\n"
                             f"{self.log_tails()}") from e
        if check and res.returncode != 0:
            raise SlurmError(f"{shlex.join(map(str, argv))} exited {res.returncode}:\n"
                             f"{res.stdout}{res.stderr}\n{self.log_tails()}")
        return res

    def scontrol(self, *args, timeout: float = 30, check: bool = True) -> str:
        return self.run(["scontrol", *args], timeout=timeout, check=check).stdout

    def sbatch(self, script=None, args=(), env=None, *, options=(), wrap=None,
               cwd=None, timeout: float = 30) -> str:
        """Submit ``script`` (a path, or the text of a script) and return the job id.

        ``args`` go to the script, ``options`` to sbatch (before the script),
        ``env`` is added to the submission environment (sbatch exports it to
        the job by default).  ``wrap="cmd"`` submits ``sbatch --wrap cmd``
        instead of a script.
        """
        if wrap is not None:
            if script is not None:
                raise ValueError("give either script or wrap, not both")
            res = self.run(["sbatch", "--parsable", *options, "--wrap", wrap],
                           env=env, cwd=cwd, timeout=timeout)
            return self._jobid(res.stdout)
        if isinstance(script, Path) or (isinstance(script, str) and "\n" not in script
                                        and os.path.exists(script)):
            path = Path(script).resolve()
        else:
            jobs = self.workdir / "jobs"
            path = jobs / f"script-{len(list(jobs.iterdir()))}.sh"
            path.write_text(script)
            path.chmod(0o755)
        res = self.run(["sbatch", "--parsable", *options, str(path), *args],
                       env=env, cwd=cwd, timeout=timeout)
        return self._jobid(res.stdout)

    @staticmethod
    def _jobid(out: str) -> str:
        jobid = out.strip().split(";")[0]
        if not jobid.isdigit():
            raise SlurmError(f"unexpected sbatch output {out!r}")
        return jobid

    def job(self, jobid) -> Job:
        """Current ``scontrol show job`` record."""
        out = self.scontrol("-o", "show", "job", str(jobid))
        lines = [l for l in out.splitlines() if l.strip()]
        if not lines:
            raise SlurmError(f"no record for job {jobid}")
        return Job(_parse_scontrol_record(lines[0]))

    def wait(self, jobid, timeout: float = 90, states=TERMINAL_STATES,
             min_restarts: int = 0, poll: float = 0.5) -> Job:
        """Wait until the job is in one of ``states`` after at least
        ``min_restarts`` requeues; return its record.

        Accounting (slurmdbd) is not configured, so this polls
        ``scontrol show job`` (kept for MinJobAge=86400 s).
        """
        deadline = time.monotonic() + timeout
        job = self.job(jobid)
        while job.state not in states or job.restarts < min_restarts:
            if time.monotonic() > deadline:
                raise SlurmError(f"job {jobid} still {job.state} after {timeout} s "
                                 f"(Reason={job.get('Reason')})\n{self.log_tails()}")
            time.sleep(poll)
            job = self.job(jobid)
        return job

    def wait_output(self, jobid, text: str, timeout: float = 30) -> str:
        """Wait until the job's stdout file contains ``text``; return it.

        The file appears only once the batch script has started, which can
        be a moment after the job is reported RUNNING.
        """
        path = Path(self.job(jobid)["StdOut"])
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + 1
        while True:
            try:
                out = path.read_text(errors="replace")
            except FileNotFoundError:
                out = ""
            if text in out:
                return out
            ended = None
            if time.monotonic() > next_check:    # give up early if the job is over
                next_check = time.monotonic() + 1
                state = self.job(jobid).state
                ended = state if state in TERMINAL_STATES else None
            if ended or time.monotonic() > deadline:
                why = f"job ended {ended}" if ended else f"after {timeout} s"
                raise SlurmError(f"job {jobid}: {text!r} not in {path} ({why}); "
                                 f"output ends with:\n{out[-1500:]}\n{self.log_tails()}")
            time.sleep(0.1)

    def requeue(self, jobid) -> None:
        """``scontrol requeue`` the job and let it start again right away."""
        before = self.job(jobid).restarts
        self.scontrol("requeue", str(jobid))
        self.start_now(jobid, min_restarts=before + 1)

    def start_now(self, jobid, timeout: float = 30, min_restarts: int = 1,
                  settle: float = 2.0) -> None:
        """Clear the begin-time delay of a requeued job.

        SLURM 22.05 holds a requeued batch job with Reason=BeginTime for about
        two minutes; this waits until the job is pending again after at least
        ``min_restarts`` requeues (a requeue, e.g. by the job itself, happens
        asynchronously) and sets its StartTime to now.

        Not immediately, though: the requeue revokes the job's credential on
        slurmd, and a launch whose credential was created in the same second
        as that revocation is refused ("Killing non-startable batch JobId=N:
        Job credential revoked", the job ends FAILED).  Hence the pause of
        ``settle`` seconds (that is also why SLURM delays requeued jobs).
        """
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(jobid)
            if job.state == "PENDING" and job.restarts >= min_restarts:
                break
            if job.state in TERMINAL_STATES:
                raise SlurmError(f"job {jobid} is {job.state}, not pending")
            if time.monotonic() > deadline:
                raise SlurmError(f"job {jobid} not pending after {timeout} s "
                                 f"(state {job.state}); its output ends with:\n"
                                 f"{self.output_tail(job)}\n{self.log_tails()}")
            time.sleep(0.2)
        time.sleep(settle)
        self.scontrol("update", f"JobId={jobid}", "StartTime=now")

    # ------------------------------------------------------------- logs
    @staticmethod
    def output_tail(job, chars: int = 3000) -> str:
        """The end of the job's stdout file (empty if there is none yet)."""
        try:
            return job.stdout.read_text(errors="replace")[-chars:]
        except (FileNotFoundError, KeyError):
            return ""

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for name in ("ns-init.log", "slurmctld.log", "slurmd.log"):
            path = self.logdir / name
            if not path.exists():
                continue
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- tail of {path} ---\n" + "\n".join(text))
        return "\n".join(out)


def _cgroup_fs_visible() -> bool:
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split()[1].startswith("/sys/fs/cgroup")
                       and line.split()[2] in ("cgroup", "cgroup2") for line in f)
    except OSError:
        return False


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent thread exits."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ------------------------------------------------------------------ init
def _namespace_init(node: str, address: str, hosts: str, ready: str) -> None:
    """PID 1 of the cluster's namespaces: set up networking, then reap."""
    import socket

    def sh(*argv):
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)

    # Paranoia: refuse to touch a namespace that has more than lo.
    ifaces = [l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]]
    if ifaces != ["lo"]:
        raise SystemExit(f"not in a fresh network namespace (interfaces: {ifaces})")
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "addr", "add", f"{address}/32", "dev", "lo")
    socket.sethostname(node)
    sh("mount", "--bind", hosts, "/etc/hosts")
    # A private /dev/shm.  MPICH names its shared-memory segments after the
    # PMI job (under srun: the SLURM job and step id, which every fresh
    # cluster starts again at 1.0) and the host; ranks killed at teardown
    # leave their segments behind, and the next cluster's job 1.0 would
    # attach to those stale segments and spin in MPI_Init for ever.  This
    # tmpfs vanishes with the namespace.
    sh("mount", "-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "ssp-slurm-shm", "/dev/shm")
    # Sanity check: the resolver now accepts the node's name and address.
    socket.getaddrinfo(node, 6817, flags=socket.AI_ADDRCONFIG)
    Path(ready).write_text(f"{node} {address}\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    while True:
        try:
            os.wait()
        except ChildProcessError:
            time.sleep(0.2)


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "--init":
    _namespace_init(*sys.argv[2:])
