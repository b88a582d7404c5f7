"""Whether the kernel's out-of-memory killer ended a job.

A job the OOM killer ends dies of SIGKILL, like one killed by hand; what
tells them apart is the memory cgroup's count of OOM kills, which the
kernel raises when it kills a process of that cgroup (a Slurm job's cgroup
on a batch node; the container or session elsewhere).  A job's supervisor,
or the runner for jobs it runs on its own host, reads the count before and
after: a SIGKILL while it rose is taken as a memory failure, so the job is
tried again with more memory.  Standard library only: the job supervisor
imports it.
"""

from __future__ import annotations

import os
import time

__all__ = ["OOM_MESSAGE", "RecentOomKills", "memory_cgroup", "oom_kills", "was_oom_kill"]

OOM_MESSAGE = "killed by the kernel's out-of-memory killer"

_CGROUP_ROOT = "/sys/fs/cgroup"


def memory_cgroup(proc_cgroup: str = "/proc/self/cgroup", root: str = _CGROUP_ROOT) -> str | None:
    """The directory of this process's memory cgroup (v1 ``memory``
    controller, or the v2 unified hierarchy), or `None` if there is none."""
    try:
        with open(proc_cgroup) as lines:
            entries = [line.rstrip("\n").split(":", 2) for line in lines]
    except OSError:
        return None
    for _, controllers, path in entries:
        if "memory" in controllers.split(","):
            return os.path.join(root, "memory", path.lstrip("/"))
    for hierarchy, controllers, path in entries:
        if hierarchy == "0" and not controllers:
            for base in (root, os.path.join(root, "unified")):
                directory = os.path.join(base, path.lstrip("/"))
                if os.path.exists(os.path.join(directory, "memory.events")):
                    return directory
    return None


_OWN_CGROUP: dict[int, str | None] = {}
"""This process's memory cgroup, by pid (a fork finds its own)."""


def _own_cgroup() -> str | None:
    # Looked up once per process: the runner reads the count for every job
    # it submits (measured: a fifth of its time at 10^6 null jobs when it
    # parsed /proc/self/cgroup each time).
    pid = os.getpid()
    if pid not in _OWN_CGROUP:
        _OWN_CGROUP[pid] = memory_cgroup()
    return _OWN_CGROUP[pid]


def oom_kills(directory: str | None = None) -> int | None:
    """How many processes the OOM killer has killed in a memory cgroup (this
    process's by default); `None` if the kernel does not say."""
    directory = directory or _own_cgroup()
    if directory is None:
        return None
    for name in ("memory.events", "memory.oom_control"):  # v2, v1
        try:
            with open(os.path.join(directory, name)) as lines:
                for line in lines:
                    key, _, value = line.partition(" ")
                    if key == "oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


class RecentOomKills:
    """`oom_kills` read at most once per ``max_age`` seconds.

    The runner notes the count when it submits a job that runs on its own
    host; reading it for every submission cost a file read each (measured:
    the largest single part of the submitting thread's time at 2x10^4
    ThreadPool null jobs, about 0.9 ms a job, most of it waiting for the
    GIL after the read).  A count up to ``max_age`` old only widens, by that
    much, the window in which another job's OOM kill is taken for this
    one's, which is already the job's whole run.

    Parameters
    ----------
    max_age : `float`
        Seconds a reading is reused for.
    """

    def __init__(self, max_age: float) -> None:
        self.max_age = max_age
        self._value: int | None = None
        self._read_at = -float("inf")

    def __call__(self) -> int | None:
        """The count, as read at most ``max_age`` seconds ago."""
        now = time.monotonic()
        if now - self._read_at >= self.max_age:
            self._value = oom_kills()
            self._read_at = now
        return self._value


def was_oom_kill(exit_code: int | None, kills_before: int | None, directory: str | None = None) -> bool:
    """Whether a job that ended with ``exit_code`` (137 or -9: SIGKILL) was
    killed by the OOM killer, given the count before it started."""
    if exit_code not in (137, -9) or kills_before is None:
        return False
    after = oom_kills(directory)
    return after is not None and after > kills_before
