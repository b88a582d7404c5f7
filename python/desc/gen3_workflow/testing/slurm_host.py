"""What a private Slurm cluster (`~.slurm_cluster.SlurmCluster`) needs of this
machine: the programs, a munge key and a directory munged accepts, free ports
and memory."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from pathlib import Path

__all__ = [
    "SlurmClusterError",
    "available_memory_mb",
    "free_ports",
    "munged_command",
    "slurm_unavailable_reason",
    "which",
]

MUNGE_KEY = Path("/etc/munge/munge.key")
_BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo", "munged")
# Daemons live in /usr/sbin, which is not on every PATH.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class SlurmClusterError(RuntimeError):
    """The cluster could not be started or used."""


def which(name: str) -> str:
    """The path of a Slurm or munge program, also looked for in the sbin directories."""
    if (path := shutil.which(name, path=_SEARCH_PATH)) is None:
        raise SlurmClusterError(f"{name} not found (install slurm-wlm and munge)")
    return path


def slurm_unavailable_reason() -> str | None:
    """Say why a `~.slurm_cluster.SlurmCluster` cannot run here, or return `None` if it can."""
    missing = [name for name in _BINARIES if shutil.which(name, path=_SEARCH_PATH) is None]
    if missing:
        return f"Slurm/munge binaries missing: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "a private Slurm cluster needs root (SlurmUser=root)"
    return None


def free_ports(count: int) -> list[int]:
    """``count`` different TCP ports free on this machine right now."""
    # Hold every socket open until all ports are chosen, so that the ports differ.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("", 0))
        return [sock.getsockname()[1] for sock in socks]


def available_memory_mb() -> int:
    """The memory (MB) this machine can give without swapping (``MemAvailable``)."""
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    return int(meminfo["MemAvailable"].split()[0]) // 1024  # the value is in kB


def munged_command(directory: Path) -> tuple[list[str], Path]:
    """Prepare a private munged in ``directory/munge`` (making the host's munge key
    if there is none); return its argv (to run as user munge) and its socket path."""
    if not MUNGE_KEY.exists():
        subprocess.run([which("mungekey"), "--create", "--keyfile", str(MUNGE_KEY)], check=True, timeout=30)
        shutil.chown(MUNGE_KEY, "munge", "munge")
        MUNGE_KEY.chmod(0o600)
    # munged runs as user munge and insists its directories are writable only by it,
    # yet searchable by all so clients can reach the socket.
    directory.chmod(0o755)
    if closed := [p for p in directory.parents if not p.stat().st_mode & 0o001]:
        raise SlurmClusterError(f"user munge cannot get through {closed[0]} (not o+x)")
    mdir = directory / "munge"
    mdir.mkdir(exist_ok=True)
    shutil.chown(mdir, "munge", "munge")
    mdir.chmod(0o755)
    socket_path = mdir / "munge.socket"
    args = [which("munged"), "--foreground", f"--socket={socket_path}", f"--key-file={MUNGE_KEY}"]
    args += [f"--{kind}-file={mdir}/munged.{kind}" for kind in ("pid", "log", "seed")]
    return args, socket_path
