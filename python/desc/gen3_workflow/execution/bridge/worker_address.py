"""Where workers on other nodes reach ``bps submit``: the address given to
Work Queue's workers and to HighThroughput's managers.

parsl's own defaults do not fit a cluster: Work Queue's workers are told the
submitting host's *name*, which on a compute node may resolve to nothing, or
to an address of the login node's public interface that compute nodes have
no route to; HighThroughput's managers try every address of the host in
turn.  So the plug-in picks one address, in this order:

1. ``parsl_config.address``, as given;
2. ``127.0.0.1`` when every worker runs on this host (the Local provider,
   one node per block);
3. the address this host would send from to a compute node the workers may
   run on (the kernel's route to it, as parsl's ``address_by_route`` does for
   the Internet): a node of the allocation ``bps submit`` runs in, or of the
   Slurm partition the blocks go to, as Slurm lists them;
4. the address this host's name resolves to (parsl's
   ``address_by_hostname``), unless that is a loopback address.

``bps ping`` shows the address and which rule chose it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import subprocess
from collections.abc import Mapping

from ...settings.parsl_section import ParslSettings

__all__ = ["WorkerAddress", "route_source", "worker_address", "workers_elsewhere"]

SINFO_TIMEOUT = 10.0
"""Seconds ``sinfo`` may take to list the nodes."""


@dataclasses.dataclass(frozen=True)
class WorkerAddress:
    """The address workers are given, and why it is that one."""

    address: str
    why: str

    def line(self) -> str:
        """How ``bps ping`` shows it."""
        return f"{self.address} ({self.why})"


def workers_elsewhere(settings: ParslSettings) -> bool:
    """Whether workers may run on other nodes than this one."""
    return not settings.local_provider or settings.effective_launcher == "Srun"


def route_source(address: str) -> str | None:
    """The address this host sends from to ``address`` (no packet is sent:
    a UDP socket's connect only picks the route); `None` if there is no
    route or the name does not resolve."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 9))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def compute_nodes(settings: ParslSettings, environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(name, address)`` of the nodes workers may run on, as Slurm lists
    them: the allocation's (Local provider inside ``salloc``/``sbatch``), or
    the partition's (Slurm provider); empty if Slurm cannot say."""
    command = ["sinfo", "--noheader", "--Node", "--format=%N %o"]
    if settings.local_provider:
        nodelist = environ.get("SLURM_JOB_NODELIST")
        if not nodelist:
            return []
        command.append(f"--nodes={nodelist}")
    elif settings.partition:
        command.append(f"--partition={settings.partition}")
    try:
        listed = subprocess.run(
            command, capture_output=True, text=True, timeout=SINFO_TIMEOUT, env={**os.environ, **environ}
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if listed.returncode != 0:
        return []
    nodes = [tuple(line.split()[:2]) for line in listed.stdout.splitlines() if len(line.split()) >= 2]
    return list(dict.fromkeys(nodes))  # type: ignore[arg-type]  # a node listed once per partition


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def worker_address(settings: ParslSettings, environ: Mapping[str, str] | None = None) -> WorkerAddress:
    """The address workers reach ``bps submit`` at (see the module's rules).

    Parameters
    ----------
    settings : `ParslSettings`
        Validated ``parsl_config``.
    environ : `~collections.abc.Mapping`, optional
        The environment (default: this process's); ``SLURM_JOB_NODELIST``
        names the allocation's nodes.
    """
    if settings.address:
        return WorkerAddress(settings.address, "parsl_config.address")
    if not workers_elsewhere(settings):
        return WorkerAddress("127.0.0.1", "every worker runs on this host")
    environ = os.environ if environ is None else environ
    for name, node_address in compute_nodes(settings, environ)[:8]:
        source = route_source(node_address)
        if source is not None:
            return WorkerAddress(source, f"this host's address on the route to node {name} at {node_address}")
    try:
        resolved = socket.gethostbyname(socket.gethostname())
    except OSError:
        resolved = ""
    if resolved and not _is_loopback(resolved):
        return WorkerAddress(resolved, f"what this host's name, {socket.gethostname()}, resolves to")
    source = route_source("192.0.2.1")  # TEST-NET-1: only the default route is looked up
    if source is not None:
        return WorkerAddress(source, "this host's address on its default route (no compute node listed)")
    return WorkerAddress(
        resolved or "127.0.0.1", "no better address found: set parsl_config.address to one workers can reach"
    )
