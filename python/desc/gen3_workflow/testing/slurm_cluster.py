"""A throw-away one-machine Slurm cluster for tests and benchmarks.

Everything (slurm.conf, state, spool, logs, a private munged socket) lives in one
directory, the daemons use free ports and are stopped by pid, so a system Slurm or
munge is never touched. Needs root, ``slurm-wlm`` and ``munge``. Manual runs:
``python -m desc.gen3_workflow.testing.slurm_cluster start|stop --dir DIR``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from ..execution.job_io.processes import descendants, is_alive, kill_processes, process_name
from .daemons import PrivateServer

__all__ = ["SlurmCluster", "SlurmClusterError", "slurm_unavailable_reason"]

MUNGE_KEY = Path("/etc/munge/munge.key")
_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged")
# Daemons live in /usr/sbin, which is not on every PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])

_CONF_TEMPLATE = """\
ClusterName=gen3wf
# 127.0.0.1 so nothing depends on how the host name resolves.
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={node_port}
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# A private munged: a system one is never used or disturbed.
AuthInfo=socket={dir}/munge/munge.socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
PlugStackConfig={dir}/plugstack.conf
# No cgroups: containers and sandboxes often do not delegate them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default a job with no --mem gets all the node's memory, so nothing runs beside it.
DefMemPerCPU={mem_per_cpu}
ReturnToService=2
# Reject at sbatch time, rather than leave pending forever, jobs larger than the node.
EnforcePartLimits=ALL
# Short waits so that cancelling and shutting down are quick.
KillWait=2
# Shorter than parsl's 60 s status poll: without accounting (no sacct) a
# block that ended is gone from squeue before parsl asks, which the plug-in
# must cope with (providers.squeue_tolerating_ended_jobs).
MinJobAge=30
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
Waittime=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem} State=UNKNOWN
PartitionName={partition} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmClusterError(RuntimeError):
    """The cluster could not be started or used."""


def _which(name: str) -> str:
    if (path := shutil.which(name, path=_SEARCH_PATH)) is None:
        raise SlurmClusterError(f"{name} not found (install slurm-wlm and munge)")
    return path


def slurm_unavailable_reason() -> str | None:
    """Say why a `SlurmCluster` cannot run here, or return `None` if it can."""
    missing = [name for name in _BINARIES if shutil.which(name, path=_SEARCH_PATH) is None]
    if missing:
        return f"Slurm/munge binaries missing: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (SlurmUser=root)"
    return None


def _free_ports(count: int) -> list[int]:
    # Hold every socket open until all ports are chosen, so that the ports differ.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in socks]


def _available_memory_mb() -> int:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(meminfo["MemAvailable"].split()[0]) // 1024  # the value is in kB


class SlurmCluster(PrivateServer):
    """A private Slurm controller, one compute node and munged on this machine.

    Parameters
    ----------
    directory : `str` or `~pathlib.Path`, optional
        Directory for config, state, logs and pids. A temporary one is made (and
        removed by `stop`) if not given; a given one is kept.
    partition : `str`, optional
        Name of the single (default) partition.
    mem_headroom_mb : `int`, optional
        Memory (MB) left out of the node's ``RealMemory`` for everything else.
    start_timeout : `float`, optional
        Seconds `start` waits for the node to become idle.

    Attributes
    ----------
    directory : `~pathlib.Path`
        Directory holding everything the cluster writes.
    conf_path : `~pathlib.Path`
        The cluster's ``slurm.conf``.
    env : `dict` [`str`, `str`]
        Variables (``SLURM_CONF``) to add to the environment of Slurm clients.
    partition, node_name : `str`
        Partition and node names.
    cpus, real_memory_mb : `int`
        Node size as declared to Slurm.
    pids : `dict` [`str`, `int`]
        Pids of the running daemons (``munged``, ``slurmctld``, ``slurmd``).
    start_seconds : `float`
        How long `start` took, until the node was idle.
    """

    RECORD = "pids.json"
    DIR_PREFIX = "slurm-cluster-"

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        partition: str = "debug",
        mem_headroom_mb: int = 2048,
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__(directory)
        if any(c.isspace() for c in str(self.directory)):
            raise SlurmClusterError(f"slurm.conf paths cannot hold blanks: {self.directory}")
        self.conf_path = self.directory / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf_path)}
        self.partition = partition
        self.node_name = socket.gethostname().split(".")[0]
        self.cpus = len(os.sched_getaffinity(0))  # like nproc
        self.real_memory_mb = max(_available_memory_mb() - mem_headroom_mb, 512)
        self.start_timeout = start_timeout
        self.pids: dict[str, int] = {}
        self.start_seconds = 0.0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> SlurmCluster:
        """Start munged, slurmctld and slurmd; return ``self`` once the node is idle.

        Raises
        ------
        SlurmClusterError
            If a daemon dies or the node is not idle in time; the message holds
            the tail of the daemon logs. Anything started is stopped again.
        """
        if self.pids:
            return self
        begin = time.monotonic()
        atexit.register(self.stop)
        try:
            self._write_config()
            self._start_munged()
            # -c: never recover jobs from an earlier run in a reused directory.
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-f", str(self.conf_path)])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-f", str(self.conf_path), "-N", self.node_name])
            self._wait_for(self._node_idle, f"node {self.node_name} idle", self.start_timeout)
            self.start_seconds = time.monotonic() - begin
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel all jobs, stop every process this cluster started; idempotent (see `attach`)."""
        atexit.unregister(self.stop)
        if self.pids:
            if is_alive(self.pids.get("slurmctld", -1)):
                self._cancel_all_jobs()
            stepds = self._job_processes()
            for name in ("slurmd", "slurmctld"):
                self._stop_daemon(name)
            # Anything still in a job (linuxproc cannot track daemonized children).
            kill_processes(stepds | self._job_processes())
            self._stop_daemon("munged")
        self._forget()

    def run(
        self, args: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client (e.g. ``["squeue"]``, no shell) here; return its text output.

        Parameters
        ----------
        args : `list` [`str`]
            Program and arguments.
        check : `bool`, optional
            Raise `subprocess.CalledProcessError` on a non-zero exit.
        timeout : `float`, optional
            Seconds before the command is killed.
        """
        env = {**os.environ, **self.env}
        return subprocess.run(args, env=env, capture_output=True, text=True, check=check, timeout=timeout)

    def job_ids(self) -> list[str]:
        """Return the ids of the jobs ``squeue`` lists (pending, running, completing)."""
        return self.run(["squeue", "--noheader", "--format=%i"]).stdout.split()

    @classmethod
    def attach(cls, directory: str | Path) -> SlurmCluster:
        # Docstring inherited.
        cluster = cls(directory)
        info = cluster._read_record()
        cluster.partition = info.get("partition", cluster.partition)
        # Only trust a recorded pid while it still runs the program recorded.
        recorded: dict[str, int] = info.get("pids", {})
        cluster.pids = {n: pid for n, pid in recorded.items() if process_name(pid) == n}
        return cluster

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        # Docstring inherited.
        parser.add_argument("--partition", default="debug")

    @classmethod
    def from_options(cls, directory: Path, options: argparse.Namespace) -> SlurmCluster:
        # Docstring inherited.
        return cls(directory, partition=options.partition)

    def __repr__(self) -> str:
        return f"SlurmCluster({str(self.directory)!r}, partition={self.partition!r}, pids={self.pids})"

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            # A reused directory must not hand old job state to the new daemons.
            shutil.rmtree(self.directory / sub, ignore_errors=True)
            (self.directory / sub).mkdir(parents=True)
        (self.directory / "log").mkdir(exist_ok=True)
        (self.directory / "plugstack.conf").write_text("")  # not /etc/slurm/plugstack.conf
        ctld_port, node_port = _free_ports(2)
        self.conf_path.write_text(
            _CONF_TEMPLATE.format(
                dir=self.directory, node=self.node_name, ctld_port=ctld_port, node_port=node_port,
                cpus=self.cpus, mem=self.real_memory_mb, mem_per_cpu=self.real_memory_mb // self.cpus,
                partition=self.partition,
            )
        )  # fmt: skip

    def _start_munged(self) -> None:
        if not MUNGE_KEY.exists():
            subprocess.run([_which("mungekey"), "--create", "--keyfile", str(MUNGE_KEY)], check=True)
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o600)
        # munged runs as user munge and insists its directories are writable only by it,
        # yet searchable by all so clients can reach the socket.
        self.directory.chmod(0o755)
        if closed := [p for p in self.directory.parents if not p.stat().st_mode & 0o001]:
            raise SlurmClusterError(f"user munge cannot get through {closed[0]} (not o+x)")
        mdir = self.directory / "munge"
        mdir.mkdir(exist_ok=True)
        shutil.chown(mdir, "munge", "munge")
        mdir.chmod(0o755)
        socket_path = mdir / "munge.socket"
        args = [_which("munged"), "--foreground", f"--socket={socket_path}", f"--key-file={MUNGE_KEY}"]
        args += [f"--{kind}-file={mdir}/munged.{kind}" for kind in ("pid", "log", "seed")]
        self._spawn("munged", args, user="munge")
        self._wait_for(lambda: socket_path.exists(), "munged socket", 10.0)

    def _spawn(self, name: str, args: list[str], user: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
        env.update(self.env)
        with open(self.directory / "log" / f"{name}.out", "ab") as out:
            # In the foreground, so the pid is known at once; in its own session, so no
            # terminal signal reaches it and its helpers can be found by session id.
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                cwd=self.directory, start_new_session=True, user=user, group=user,
            )  # fmt: skip
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._save_record({"partition": self.partition, "conf": str(self.conf_path), "pids": self.pids})

    def _node_idle(self) -> bool:
        sinfo = ["sinfo", "--noheader", "--Node", "--format=%T", "--nodes", self.node_name]
        return self.run(sinfo, check=False).stdout.strip() == "idle"

    def _wait_for(self, ready: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            dead = [name for name, proc in self._procs.items() if proc.poll() is not None]
            if not dead and ready():
                return
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout:.0f} s"
                raise SlurmClusterError(f"{why} waiting for {what}\n{self._log_tail()}")
            time.sleep(0.2)

    def _log_tail(self, lines: int = 15) -> str:
        """Last lines of each daemon log, for error messages."""
        logs = sorted((self.directory / "log").glob("*")) + [self.directory / "munge" / "munged.log"]
        parts = []
        for log in logs:
            if log.is_file():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {log} ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def _cancel_all_jobs(self) -> None:
        try:
            ids = self.job_ids()
            if ids:
                self.run(["scancel", *ids], check=False)
            deadline = time.monotonic() + 15.0
            while self.job_ids() and time.monotonic() < deadline:
                time.sleep(0.2)
        except (subprocess.SubprocessError, OSError):
            pass  # the daemons are stopped next, and job leftovers killed by pid

    def _job_processes(self) -> set[int]:
        """Find slurmstepd processes of this cluster and everything under them."""
        found = set()
        for process in psutil.process_iter(["name"]):
            if process.info["name"] != "slurmstepd":
                continue
            # slurmstepd inherits slurmd's environment (our SLURM_CONF) and working directory.
            try:
                if process.environ().get("SLURM_CONF") == str(self.conf_path) or (
                    Path(process.cwd()).resolve() == self.directory
                ):
                    found.add(process.pid)
            except psutil.Error:
                pass  # it has just exited
        return found | descendants(found)

    def _stop_daemon(self, name: str) -> None:
        pid = self.pids.get(name)
        if pid is None:
            return
        proc = self._procs.pop(name, None)
        # Daemons were started in their own sessions: take any helper child along.
        session = set()
        for process in psutil.process_iter():
            try:
                if os.getsid(process.pid) == pid:
                    session.add(process.pid)
            except OSError:
                continue
        kill_processes(session | {pid})
        if proc is not None:
            proc.wait()  # reap our child so no zombie is left
        del self.pids[name]


if __name__ == "__main__":
    sys.exit(SlurmCluster.main(description=__doc__.splitlines()[0]))
