"""Is a run's submitting process still there?

A store records which process runs it (pid, host, start time) but cannot
record that process's death by SIGKILL.  `liveness` is the one place that
answers, for ``bps report``/``status``/``cancel``, `ParslGraph.run` and
``gen3wf-watch``.
"""

from __future__ import annotations

import os
from enum import StrEnum

import psutil

from .records import RunRecord, RunState

__all__ = ["Liveness", "liveness", "submitter_alive"]

# A pid whose process started this long after the run did belongs to another
# program (pids are reused); the slack absorbs clock granularity.
_PID_REUSE_SLACK = 60.0


class Liveness(StrEnum):
    """What can be said of the process a run is recorded with."""

    ENDED = "ended"
    """The run is not marked running: nothing runs it."""
    ALIVE = "alive"
    """Marked running, and its process runs on this host (or none is recorded)."""
    ELSEWHERE = "elsewhere"
    """Marked running by a process on another host: only that host can tell."""
    GONE = "gone"
    """Marked running, but its process is gone: the run was interrupted."""


def submitter_alive(pid: int, start_time: float | None) -> bool:
    """Whether the process that started a run (at ``start_time``) still
    runs on this host: ``pid`` exists, is no zombie, and is not a newer
    process that was given the same pid.

    Parameters
    ----------
    pid : `int`
        The run's submitting process.
    start_time : `float`, optional
        When the run started (seconds since the epoch).
    """
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        started = process.create_time()
    except psutil.Error:
        return False
    return start_time is None or started <= start_time + _PID_REUSE_SLACK


def liveness(run: RunRecord) -> Liveness:
    """Whether the run's submitting process is running it now.

    Parameters
    ----------
    run : `RunRecord`
        The run, as its store records it.
    """
    if run.state != RunState.RUNNING:
        return Liveness.ENDED
    if run.pid is None:
        return Liveness.ALIVE
    if run.host and run.host != os.uname().nodename:
        return Liveness.ELSEWHERE
    return Liveness.ALIVE if submitter_alive(run.pid, run.start_time) else Liveness.GONE
