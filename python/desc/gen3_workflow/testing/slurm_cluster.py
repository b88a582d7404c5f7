"""A throw-away Slurm cluster on this one machine, for tests and benchmarks.

Everything (slurm.conf, state, spool, logs, a private munged socket) lives in one
directory, the daemons use free ports and are stopped by pid, so a system Slurm or
munge is never touched. Needs root, ``slurm-wlm`` and ``munge``. By default the one
compute node is this machine; with ``nodes=N`` (N >= 2) each node is a slurmd with
its own host name, network namespace and address (see `.node_network`), as on a
real cluster. Manual runs:
``python -m desc.gen3_workflow.testing.slurm_cluster start|stop --dir DIR [--nodes N]``.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from ..execution.job_io.processes import descendants, is_alive, kill_processes, process_name
from .daemons import PrivateServer
from .node_network import NodeNetwork, NodeNetworkError
from .slurm_conf import render_slurm_conf
from .slurm_host import (
    SlurmClusterError,
    available_memory_mb,
    free_ports,
    munged_command,
    slurm_unavailable_reason,
    which,
)

__all__ = ["SlurmCluster", "SlurmClusterError", "slurm_unavailable_reason"]


class SlurmCluster(PrivateServer):
    """A private Slurm controller, its compute node(s) and munged on this machine.

    Parameters
    ----------
    directory : `str` or `~pathlib.Path`, optional
        Directory for config, state, logs and pids. A temporary one is made (and
        removed by `stop`) if not given; a given one is kept.
    nodes : `int`, optional
        How many compute nodes. With 1 the node is this machine (named after it,
        at 127.0.0.1). With more, nodes ``n1``, ``n2``... are each a slurmd in
        network and UTS namespaces of their own, on a private bridge (`.node_network`).
    partition : `str`, optional
        Name of the single (default) partition, which has every node.
    mem_headroom_mb : `int`, optional
        Memory (MB) left out of the nodes' ``RealMemory`` for everything else;
        the nodes share the rest evenly.
    slurmd_timeout : `int`, optional
        Seconds a node may not answer before Slurm marks it DOWN (``SlurmdTimeout``).
    start_timeout : `float`, optional
        Seconds `start` waits for the nodes to become idle.

    Attributes
    ----------
    directory : `~pathlib.Path`
        Directory holding everything the cluster writes.
    conf_path : `~pathlib.Path`
        The cluster's ``slurm.conf``.
    env : `dict` [`str`, `str`]
        Variables (``SLURM_CONF``) to add to the environment of Slurm clients.
    partition : `str`
        The partition's name.
    node_names : `list` [`str`]
        The nodes' names, which are also their host names.
    node_name : `str`
        The first node's name (the only one's, with one node).
    network : `.node_network.NodeNetwork` or `None`
        The nodes' private network while it exists (several nodes only).
    cpus, real_memory_mb : `int`
        Each node's size as declared to Slurm (every node has all the CPUs).
    pids : `dict` [`str`, `int`]
        Pids of the running daemons: ``munged``, ``slurmctld`` and ``slurmd``,
        or ``slurmd@n1``, ``slurmd@n2``... with several nodes.
    start_seconds : `float`
        How long `start` took, until the nodes were idle.
    """

    RECORD = "pids.json"
    DIR_PREFIX = "slurm-cluster-"

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        nodes: int = 1,
        partition: str = "debug",
        mem_headroom_mb: int = 2048,
        slurmd_timeout: int = 30,
        start_timeout: float = 30.0,
    ) -> None:
        if nodes < 1:
            raise SlurmClusterError(f"a cluster needs at least one node, not {nodes}")
        super().__init__(directory)
        if any(c.isspace() for c in str(self.directory)):
            raise SlurmClusterError(f"slurm.conf paths cannot hold blanks: {self.directory}")
        self.conf_path = self.directory / "slurm.conf"
        self.env = {"SLURM_CONF": str(self.conf_path)}
        self.partition = partition
        self._host_name = socket.gethostname().split(".")[0]
        self.node_names = [self._host_name] if nodes == 1 else [f"n{i}" for i in range(1, nodes + 1)]
        self.node_name = self.node_names[0]
        self.network: NodeNetwork | None = None
        self.cpus = len(os.sched_getaffinity(0))  # like nproc
        self.real_memory_mb = max((available_memory_mb() - mem_headroom_mb) // nodes, 512)
        self.slurmd_timeout = slurmd_timeout
        self.start_timeout = start_timeout
        self.pids: dict[str, int] = {}
        self.start_seconds = 0.0
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def host_address(self) -> str | None:
        """Where the nodes reach this machine (slurmctld, a test's server): the
        bridge's address; `None` with one node, or before `start`."""
        return None if self.network is None else self.network.host_address

    def start(self) -> SlurmCluster:
        """Make the nodes' network, start munged, slurmctld and the slurmd's; return
        ``self`` once every node is idle.

        Raises
        ------
        SlurmClusterError
            If the network cannot be made, a daemon dies or a node is not idle in
            time; the message holds the tail of the daemon logs. Anything started
            or made is stopped or removed again.
        """
        if self.pids:
            return self
        begin = time.monotonic()
        atexit.register(self.stop)
        try:
            if len(self.node_names) > 1:
                try:
                    self.network = NodeNetwork.create(self.node_names)
                except NodeNetworkError as exc:
                    raise SlurmClusterError(f"cannot make the nodes' network: {exc}") from exc
                self._save_record(self._record())  # for `attach`, before anything else can fail
            self._write_config()
            self._start_munged()
            # -c: never recover jobs from an earlier run in a reused directory.
            self._spawn("slurmctld", [which("slurmctld"), "-D", "-c", "-f", str(self.conf_path)])
            for name in self.node_names:
                self._spawn(self._slurmd_key(name), self._slurmd_argv(name))
            self._wait_for(self._nodes_idle, f"nodes {','.join(self.node_names)} idle", self.start_timeout)
            self.start_seconds = time.monotonic() - begin
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel all jobs, stop every process this cluster started, remove its
        network; idempotent (see `attach`)."""
        atexit.unregister(self.stop)
        if self.pids:
            if is_alive(self.pids.get("slurmctld", -1)):
                self._cancel_all_jobs()
            stepds = self._job_processes()
            for name in [key for key in self.pids if key.startswith("slurmd")] + ["slurmctld"]:
                self._stop_daemon(name)
            # Anything still in a job (linuxproc cannot track daemonized children).
            kill_processes(stepds | self._job_processes())
            self._stop_daemon("munged")
        if self.network is not None:
            self.network.remove()  # also kills whatever is still on the nodes
            self.network = None
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

    def run_on_node(
        self, name: str, args: list[str], check: bool = True, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """Like `run`, on node ``name``: in its network namespace, with its host
        name (outside Slurm: no job, no allocation). With one node, just `run`."""
        self.node_address(name)  # a known node?
        return self.run(args if self.network is None else self.network.command(name, args), check, timeout)

    def node_address(self, name: str) -> str:
        """The address of node ``name``, where its slurmd listens."""
        if name not in self.node_names:
            raise SlurmClusterError(f"no node {name!r} (nodes: {', '.join(self.node_names)})")
        return "127.0.0.1" if self.network is None else self.network.address(name)

    def kill_node(self, name: str, disconnect: bool = False) -> None:
        """Lose node ``name``: SIGKILL its slurmd and every process in its network
        namespace, jobs included; the other nodes run on. Slurm marks it DOWN
        once it has not answered for ``slurmd_timeout`` seconds.

        Parameters
        ----------
        name : `str`
            The node.
        disconnect : `bool`, optional
            First pull its cable (veth down), as when a machine dies: its peers
            see no connection close, and its address no longer answers.
        """
        if self.network is None:
            raise SlurmClusterError("kill_node needs a started cluster of several nodes")
        self.node_address(name)
        if disconnect:
            self.network.set_link(name, up=False)
        self.network.kill_processes(name)
        key = self._slurmd_key(name)
        if (proc := self._procs.pop(key, None)) is not None:
            proc.wait(timeout=10)  # reap it: no zombie
        self.pids.pop(key, None)
        self._save_record(self._record())

    def job_ids(self) -> list[str]:
        """Return the ids of the jobs ``squeue`` lists (pending, running, completing)."""
        return self.run(["squeue", "--noheader", "--format=%i"]).stdout.split()

    @classmethod
    def attach(cls, directory: str | Path) -> SlurmCluster:
        # Docstring inherited.
        info = cls(directory)._read_record()
        network = info.get("network")
        cluster = cls(directory, nodes=len(network["node_names"]) if network else 1)
        cluster.partition = info.get("partition", cluster.partition)
        cluster.network = NodeNetwork.from_record(network) if network else None
        # Only trust a recorded pid while it still runs the program recorded.
        recorded: dict[str, int] = info.get("pids", {})
        cluster.pids = {key: pid for key, pid in recorded.items() if process_name(pid) == key.split("@")[0]}
        return cluster

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        # Docstring inherited.
        parser.add_argument("--partition", default="debug")
        parser.add_argument("--nodes", type=int, default=1, help="compute nodes (default 1: this machine)")

    @classmethod
    def from_options(cls, directory: Path, options: argparse.Namespace) -> SlurmCluster:
        # Docstring inherited.
        return cls(directory, partition=options.partition, nodes=options.nodes)

    def describe(self) -> list[str]:
        # Docstring inherited.
        lines = [f"node {name} at {self.node_address(name)}" for name in self.node_names]
        if self.host_address is not None:
            lines.append(f"host {self._host_name} at {self.host_address} (slurmctld; nodes reach it there)")
        return lines

    def __repr__(self) -> str:
        nodes = f", nodes={len(self.node_names)}" if len(self.node_names) > 1 else ""
        return f"SlurmCluster({str(self.directory)!r}, partition={self.partition!r}{nodes}, pids={self.pids})"

    def _record(self) -> dict[str, Any]:
        network = None if self.network is None else self.network.record()
        return dict(partition=self.partition, conf=str(self.conf_path), pids=self.pids, network=network)

    def _slurmd_key(self, name: str) -> str:
        return "slurmd" if self.network is None else f"slurmd@{name}"

    def _slurmd_argv(self, name: str) -> list[str]:
        argv = [which("slurmd"), "-D", "-f", str(self.conf_path), "-N", name]
        return argv if self.network is None else self.network.command(name, argv)

    def _write_config(self) -> None:
        for sub in ("state", "spool"):
            # A reused directory must not hand old job state to the new daemons.
            shutil.rmtree(self.directory / sub, ignore_errors=True)
            (self.directory / sub).mkdir(parents=True)
        for name in self.node_names if self.network else []:
            (self.directory / "spool" / name).mkdir()  # SlurmdSpoolDir=.../spool/%n
        (self.directory / "log").mkdir(exist_ok=True)
        (self.directory / "plugstack.conf").write_text("")  # not /etc/slurm/plugstack.conf
        nodes = {name: self.node_address(name) for name in self.node_names}
        self.conf_path.write_text(
            render_slurm_conf(
                self.directory, ctld_host=self._host_name, ctld_address=self.host_address or "127.0.0.1",
                ports=free_ports(2), nodes=nodes, cpus=self.cpus, memory_mb=self.real_memory_mb,
                partition=self.partition, slurmd_timeout=self.slurmd_timeout,
            )
        )  # fmt: skip

    def _start_munged(self) -> None:
        args, socket_path = munged_command(self.directory)
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
        self._save_record(self._record())

    def _nodes_idle(self) -> bool:
        sinfo = ["sinfo", "--noheader", "--Node", "--format=%N %T", "--nodes", ",".join(self.node_names)]
        states = dict(line.split()[:2] for line in self.run(sinfo, check=False).stdout.splitlines())
        return all(states.get(name) == "idle" for name in self.node_names)

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
