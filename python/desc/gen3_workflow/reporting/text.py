"""Text shared by every view of a run: durations, times, a failed job's
line and the seed's status table."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ..store.records import AttemptRecord, JobRecord, JobState

__all__ = [
    "MAX_LISTED",
    "SLOW_FACTOR",
    "SLOW_MIN_SECONDS",
    "format_attempts",
    "format_clock",
    "format_duration",
    "format_failed_job",
    "format_slow_job",
    "format_status_table",
]

MAX_LISTED = 20
"""Jobs listed one per line in a report; the rest are counted."""
SLOW_FACTOR = 3.0
"""A running job this many times its label's median run time is shown as
slow (the runner records the medians; see `execution.watchdog`)."""
SLOW_MIN_SECONDS = 60.0
"""... if it has run at least this long."""


def format_duration(seconds: float | None) -> str:
    """A short human-readable duration.

    Parameters
    ----------
    seconds : `float` or `None`
        The duration; `None`, negative or non-finite values are unknown.

    Returns
    -------
    text : `str`
        ``"42s"``, ``"3m05s"``, ``"2h07m"``, ``"3d04h"``, or ``"?"``.
    """
    if seconds is None or not (0 <= seconds < float("inf")):
        return "?"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def format_clock(when: float | None) -> str:
    """A local date and time, ``-`` if unknown."""
    if when is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def format_failed_job(
    label: str,
    data_id: str,
    exit_code: int | None,
    message: str | None,
    log: str,
    attempts: int | None = None,
    host: str | None = None,
) -> str:
    """One line for a failed job, the same in every report.

    Returns
    -------
    line : `str`
        ``FAILED label data_id exit code N (why)[, on host H][, attempts K];
        log: path``, ``H`` the host its last attempt ran on; the cause is
        left out when the message only repeats the exit code.
    """
    outcome = "no exit code" if exit_code is None else f"exit code {exit_code}"
    if message and message != outcome:
        # The runner's message often starts by saying the exit code itself.
        says_it = message.startswith(outcome) and message[len(outcome) : len(outcome) + 1] in (" ", ";")
        outcome = message if says_it else f"{outcome} ({message})"
    tries = "" if attempts is None else f", attempts {attempts}"
    where = f", on host {host}" if host else ""
    return f"FAILED {label} {data_id} {outcome}{where}{tries}; log: {log}"


def format_attempts(job: JobRecord, attempts: list[AttemptRecord]) -> str:
    """One line for a job tried more than once: each attempt's exit code,
    host and memory request, the same in every report (``#1 exit 137 on
    n2, 1000 MB; #2 ok on n3, 2000 MB``), and its executor where they
    differ (``#1 exit 143 on n2, 1000 MB via small; #2 ok on n3, 2000 MB
    via large``)."""
    tries = []
    # Which executor ran each attempt, where they were not all the same one.
    moved = len({attempt.executor for attempt in attempts}) > 1
    for attempt in attempts:
        how = (
            "ok"
            if attempt.succeeded
            else "lost"
            if attempt.exit_code is None
            else f"exit {attempt.exit_code}"
        )
        where = f" on {attempt.host}" if attempt.host else ""
        memory = f", {attempt.memory} MB" if attempt.memory else ""
        via = f" via {attempt.executor}" if moved and attempt.executor else ""
        tries.append(f"#{attempt.number} {how}{where}{memory}{via}")
    return (
        f"RETRIED {job.label} {job.data_id} {job.state.value} after {job.attempts} attempts "
        f"({'; '.join(tries) or 'not recorded'}); log: {job.stderr}"
    )


def format_slow_job(job: JobRecord, median: float, now: float) -> str:
    """One line for a job running far longer than its label's typical time."""
    running = now - (job.t_running or now)
    return (
        f"SLOW {job.label} {job.data_id} running for {format_duration(running)}, "
        f"{running / median:.0f}x the median ({format_duration(median)}) of {job.label}; log: {job.stderr}"
    )


def format_status_table(
    counts: Mapping[str, Mapping[JobState, int]], executors: Mapping[str, list[str]] | None = None
) -> str:
    """Render job counts per label and state.

    Parameters
    ----------
    counts : `~collections.abc.Mapping`
        Label -> state -> count, labels in pipeline order.
    executors : `~collections.abc.Mapping`, optional
        Label -> the executors its jobs went to: a last column, when they
        were more than one.

    Returns
    -------
    table : `str`
        ``task_type pending launched running exec_done failed dep_fail total``.
    """
    width = max([len("task_type"), *(len(label) for label in counts)])
    header = f"{'task_type':<{width}}" + "".join(f"{s.value:>11}" for s in JobState) + f"{'total':>11}"
    several = executors is not None and len({e for names in executors.values() for e in names}) > 1
    lines = [header + "  executors" * several]
    for label, by_state in counts.items():
        cells = "".join(f"{by_state.get(s, 0):>11}" for s in JobState)
        where = (
            f"  {','.join(executors.get(label) or []) or '-'}" if several and executors is not None else ""
        )
        lines.append(f"{label:<{width}}{cells}{sum(by_state.values()):>11}{where}")
    return "\n".join(lines)
