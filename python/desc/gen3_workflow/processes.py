"""Find and stop processes through ``/proc`` (Linux), by pid only.

Used to stop a run's jobs (``bps cancel``, restarts after a crash) and by the
test harnesses to stop what they started and to check that nothing is left
behind; nothing here matches processes by a broad name alone.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

__all__ = ["ProcStat", "descendants", "is_alive", "kill_processes", "proc_stat", "proc_table"]


class ProcStat(NamedTuple):
    """The fields of ``/proc/PID/stat`` the harnesses use."""

    comm: str
    state: str
    ppid: int
    session: int


def proc_stat(pid: int) -> ProcStat | None:
    """Return the `ProcStat` of a process, or `None` if it does not exist.

    Parameters
    ----------
    pid : `int`
        Process id.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # comm may hold spaces and parentheses: it ends at the last ')'.
    close = text.rindex(")")
    fields = text[close + 2 :].split()
    return ProcStat(text[text.index("(") + 1 : close], fields[0], int(fields[1]), int(fields[3]))


def is_alive(pid: int) -> bool:
    """Say whether a process runs; a zombie has exited and counts as gone.

    Parameters
    ----------
    pid : `int`
        Process id.
    """
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def proc_table() -> dict[int, ProcStat]:
    """Return a `ProcStat` for every process now visible in ``/proc``."""
    pids = (int(name) for name in os.listdir("/proc") if name.isdigit())
    return {pid: stat for pid in pids if (stat := proc_stat(pid)) is not None}


def descendants(roots: Iterable[int], table: dict[int, ProcStat] | None = None) -> set[int]:
    """Return the children, grandchildren, ... of ``roots`` (not the roots).

    Parameters
    ----------
    roots : `~collections.abc.Iterable` [`int`]
        Pids whose offspring are wanted.
    table : `dict` [`int`, `ProcStat`], optional
        A snapshot from `proc_table`; a fresh one is taken if not given.
    """
    table = proc_table() if table is None else table
    found: set[int] = set()
    parents = set(roots)
    while parents:
        children = {pid for pid, stat in table.items() if stat.ppid in parents} - found
        found |= children
        parents = children
    return found


def kill_processes(pids: Iterable[int], timeout: float = 5.0) -> set[int]:
    """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL what is left.

    Parameters
    ----------
    pids : `~collections.abc.Iterable` [`int`]
        Processes to stop.
    timeout : `float`, optional
        Grace period after SIGTERM, in seconds.

    Returns
    -------
    survivors : `set` [`int`]
        Pids still alive 5 s after SIGKILL (normally empty).
    """
    remaining = set(pids)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        remaining = {pid for pid in remaining if is_alive(pid)}
        for pid in remaining:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while remaining and time.monotonic() < deadline:
            remaining = {pid for pid in remaining if is_alive(pid)}
            time.sleep(0.05)
    return remaining
