"""A private network of "nodes" on this one machine, for a multi-node test cluster.

Each node is a network namespace with a veth pair whose host end sits on a
bridge of the host; the host has the bridge's address, the nodes the next
ones of a private /24 that no interface or route of the host uses yet. Nothing
is routed, forwarded or NATed: nodes reach each other and the host, nothing
else. A command runs "on" a node in its network namespace and in a fresh UTS
namespace whose host name is the node's (see `NodeNetwork.command`).

Everything is named after a short random tag, so several networks (of several
clusters) can coexist; `NodeNetwork.record` and `NodeNetwork.from_record` let
another process remove a network it did not make. Needs root (CAP_NET_ADMIN).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["NodeNetwork", "NodeNetworkError", "node_network_unavailable_reason"]

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns`` keeps the namespaces it names."""
NAME_PREFIX = "g3wf"
"""First letters of every namespace, bridge and veth made here."""
_FIRST_NODE_HOST = 11
"""Node ``i`` (1-based) gets host number ``_FIRST_NODE_HOST + i - 1`` of the subnet."""
_SUBNET_POOL = ipaddress.IPv4Network("10.128.0.0/9")
"""Where a free /24 is looked for: a private range, away from the usual 10.0.x.y."""
# Runs a command as `sh -c SCRIPT node-init NAME HOSTS ARGV...`: no value is parsed by
# the shell.  The node's /etc/hosts (bind-mounted in a mount namespace of its own) names
# every node and the host, as a cluster's does: Work Queue's worker sends its manager
# garbage for its host name when that name does not resolve.
_SET_HOSTNAME_AND_EXEC = 'hostname "$1" && mount --bind "$2" /etc/hosts && shift 2 && exec "$@"'
_IP_TIMEOUT = 10.0


class NodeNetworkError(RuntimeError):
    """The network could not be made, removed or used."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT)
    if check and proc.returncode != 0:
        raise NodeNetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def node_network_unavailable_reason() -> str | None:
    """Say in one line why a `NodeNetwork` cannot be made here, or return `None`."""
    missing = [
        name for name in ("ip", "nsenter", "unshare", "hostname", "mount") if shutil.which(name) is None
    ]
    if missing:
        return f"missing {', '.join(missing)} (iproute2, util-linux)"
    probe = f"{NAME_PREFIX}-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        why = made.stderr.strip() or f"exit status {made.returncode}"
        return f"cannot make a network namespace: {why.splitlines()[-1]}"
    _ip("netns", "delete", probe, check=False)
    return None


def _used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks of the host's addresses and routes (a default route aside)."""
    used = []
    for entry in json.loads(_ip("-j", "-4", "addr").stdout):
        for addr in entry.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    for route in json.loads(_ip("-j", "-4", "route").stdout):
        if route["dst"] != "default":
            used.append(ipaddress.IPv4Network(route["dst"], strict=False))
    return used


def _free_subnet(tag: str) -> ipaddress.IPv4Network:
    """A /24 of `_SUBNET_POOL` that overlaps nothing on the host.

    The search starts at a place given by the tag, so networks made at the same
    moment by two processes are unlikely to pick the same one.
    """
    used = _used_networks()
    count = 2 ** (24 - _SUBNET_POOL.prefixlen)
    start = int(tag, 16) % count
    for offset in range(count):
        candidate = ipaddress.IPv4Network(
            (int(_SUBNET_POOL.network_address) + (start + offset) % count * 256, 24)
        )
        if not any(candidate.overlaps(net) for net in used):
            return candidate
    raise NodeNetworkError(f"no free /24 in {_SUBNET_POOL}")


@dataclass
class NodeNetwork:
    """The bridge, namespaces and veth pairs of one set of nodes.

    Make one with `create`; `remove` takes it all away. Interface names stay
    within Linux's 15 characters for up to 99 nodes.

    Parameters
    ----------
    tag : `str`
        Six hex digits in every name made.
    subnet : `str`
        The private /24, e.g. ``"10.200.7.0/24"``.
    node_names : `list` [`str`]
        Names (and host names) of the nodes, in order.
    """

    tag: str
    subnet: str
    node_names: list[str]

    @classmethod
    def create(cls, node_names: list[str]) -> NodeNetwork:
        """Make the bridge and, for each node, its namespace and veth pair.

        Raises
        ------
        NodeNetworkError
            If an ``ip`` command fails; whatever was made is removed again.
        """
        if not 1 <= len(node_names) <= 99:
            raise NodeNetworkError(f"between 1 and 99 nodes, not {len(node_names)}")
        tag = secrets.token_hex(3)
        network = cls(tag, str(_free_subnet(tag)), list(node_names))
        try:
            network._make()
        except BaseException:
            network.remove()
            raise
        return network

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> NodeNetwork:
        """The network `record` described (e.g. to remove it from another process)."""
        return cls(record["tag"], record["subnet"], list(record["node_names"]))

    def record(self) -> dict[str, Any]:
        """What `from_record` needs, JSON-ready."""
        return {"tag": self.tag, "subnet": self.subnet, "node_names": self.node_names}

    @property
    def bridge(self) -> str:
        """The host's bridge."""
        return f"{NAME_PREFIX}{self.tag}br"

    @property
    def host_address(self) -> str:
        """The host's address on the bridge: where nodes reach the host."""
        return str(ipaddress.ip_network(self.subnet).network_address + 1)

    def address(self, name: str) -> str:
        """The address of node ``name``."""
        net = ipaddress.ip_network(self.subnet)
        return str(net.network_address + _FIRST_NODE_HOST + self._index(name))

    def namespace(self, name: str) -> str:
        """The name of node ``name``'s network namespace (as ``ip netns list`` shows it)."""
        return f"{NAME_PREFIX}-{self.tag}-{name}"

    def namespace_path(self, name: str) -> Path:
        """The file that holds node ``name``'s network namespace."""
        return NETNS_DIR / self.namespace(name)

    def host_veth(self, name: str) -> str:
        """The host end (on the bridge) of node ``name``'s veth pair; the node's end is ``eth0``."""
        return f"{NAME_PREFIX}{self.tag}v{self._index(name) + 1}"

    def interfaces(self) -> list[str]:
        """Every host interface this network has (bridge and veths)."""
        return [self.bridge, *(self.host_veth(name) for name in self.node_names)]

    @property
    def hosts_file(self) -> Path:
        """The nodes' ``/etc/hosts``: every node's name and address, and the host's."""
        return NETNS_DIR.parent / f"{NAME_PREFIX}-{self.tag}.hosts"

    def command(self, name: str, argv: list[str]) -> list[str]:
        """The argv that runs ``argv`` on node ``name``: in its network namespace,
        in UTS and mount namespaces of its own whose host name is ``name`` and
        whose ``/etc/hosts`` is `hosts_file`.

        Each program execs the next, so the pid of the process started with
        this argv ends up being that of ``argv[0]``.
        """
        return [
            "nsenter", f"--net={self.namespace_path(name)}", "--",
            "unshare", "--uts", "--mount", "--propagation", "private", "--",
            "sh", "-c", _SET_HOSTNAME_AND_EXEC, "node-init", name, str(self.hosts_file), *argv,
        ]  # fmt: skip

    def processes(self, name: str) -> set[int]:
        """Pids of every process in node ``name``'s network namespace (zombies aside)."""
        try:
            wanted = os.stat(self.namespace_path(name))
        except FileNotFoundError:
            return set()
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                ns = os.stat(f"/proc/{entry}/ns/net")
            except OSError:
                continue  # gone, or a zombie
            if (ns.st_dev, ns.st_ino) == (wanted.st_dev, wanted.st_ino):
                found.add(int(entry))
        return found

    def kill_processes(self, name: str, timeout: float = 10.0) -> set[int]:
        """SIGKILL every process in node ``name``'s namespace until none is left.

        Returns the pids killed. Raises `NodeNetworkError` if some are still
        there after ``timeout`` seconds. Killed children of the caller stay
        zombies until it reaps them, which is fine: a zombie has left its namespace.
        """
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while pids := self.processes(name):
            if time.monotonic() > deadline:
                raise NodeNetworkError(f"processes {sorted(pids)} still on {name} after {timeout:.0f} s")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed |= pids
            time.sleep(0.05)
        return killed

    def set_link(self, name: str, up: bool) -> None:
        """Plug node ``name`` into the bridge (``up``) or pull its cable."""
        _ip("link", "set", self.host_veth(name), "up" if up else "down")

    def remove(self) -> None:
        """Kill whatever runs on the nodes, delete namespaces, veths and bridge; idempotent."""
        links = {entry["ifname"] for entry in json.loads(_ip("-j", "link").stdout)}
        namespaces = set(_ip("netns", "list").stdout.split())
        errors = []
        for name in self.node_names:
            # A namespace that still holds a process outlives `ip netns delete`, and keeps its veth.
            try:
                self.kill_processes(name)
            except NodeNetworkError as exc:
                errors.append(str(exc))
            if self.host_veth(name) in links:
                errors += self._try("link", "delete", self.host_veth(name))
            if self.namespace(name) in namespaces:
                errors += self._try("netns", "delete", self.namespace(name))
        if self.bridge in links:
            errors += self._try("link", "delete", self.bridge)
        with contextlib.suppress(FileNotFoundError):
            self.hosts_file.unlink()
        if errors:
            raise NodeNetworkError("; ".join(errors))

    def _make(self) -> None:
        prefix = ipaddress.ip_network(self.subnet).prefixlen
        host_name = os.uname().nodename
        entries = ["127.0.0.1 localhost", f"{self.host_address} {host_name} {host_name.split('.')[0]}"]
        entries += [f"{self.address(name)} {name}" for name in self.node_names]
        self.hosts_file.write_text("\n".join(entries) + "\n")
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.host_address}/{prefix}", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for name in self.node_names:
            ns, veth = self.namespace(name), self.host_veth(name)
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            # Only the subnet's own route: no default route, so nothing leaves the bridge.
            _ip("-n", ns, "addr", "add", f"{self.address(name)}/{prefix}", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    @staticmethod
    def _try(*args: str) -> list[str]:
        proc = _ip(*args, check=False)
        return [] if proc.returncode == 0 else [f"ip {' '.join(args)}: {proc.stderr.strip()}"]

    def _index(self, name: str) -> int:
        try:
            return self.node_names.index(name)
        except ValueError:
            raise NodeNetworkError(f"no node {name!r} (nodes: {', '.join(self.node_names)})") from None
