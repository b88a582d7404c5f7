"""What a progress report shows: quantum counts per task label and state,
the rate at which quanta finish and the time left, read from a job-state
store with one aggregated SQL query (a single pass over the ``jobs`` table,
however many jobs there are), and their rendering as a small table.

The rate counts the quanta that ended (succeeded or failed) within the last
`RATE_WINDOW_SECONDS` of the current submission, read from the jobs' end
times, so it is right from the first report, also in another process; a
label's rate is measured from its first start.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time

from .state_store import JobState

__all__ = [
    "RATE_WINDOW_SECONDS",
    "ProgressSnapshot",
    "format_duration",
    "format_snapshot",
    "read_snapshot",
]

RATE_WINDOW_SECONDS = 300.0
"""The rate is measured over this much of the recent past."""

_LABEL_WIDTH = 30
_COLUMNS = ("done", "failed", "dep_fail", "running", "queued", "pending", "total", "/min", "ETA")
# What a narrow terminal shows.
_COMPACT_COLUMNS = ("done", "failed", "running", "total", "/min", "ETA")


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


@dataclasses.dataclass(frozen=True)
class ProgressSnapshot:
    """Quantum counts of a run at one moment, with what the rate needs."""

    time: float
    """When it was read (seconds since the epoch)."""
    since: float
    """Start of the current submission of the run."""
    counts: dict[str, dict[JobState, int]]
    """Label -> state -> number of quanta, labels in pipeline order."""
    recent: dict[str, int]
    """Label -> quanta that ended (succeeded or failed) since `window_start`."""
    window_start: float
    """Start of the interval the rate is measured over."""
    first_start: dict[str, float] = dataclasses.field(default_factory=dict)
    """Label -> earliest start of its quanta, for labels that started."""

    def state_total(self, *states: JobState) -> int:
        """Quanta of all labels in any of ``states``."""
        return sum(by_state[s] for by_state in self.counts.values() for s in states)

    @property
    def total(self) -> int:
        """Number of quanta."""
        return sum(sum(by_state.values()) for by_state in self.counts.values())

    @property
    def remaining(self) -> int:
        """Quanta not finished yet."""
        return self.state_total(JobState.PENDING, JobState.LAUNCHED, JobState.RUNNING)

    def rate(self, label: str | None = None) -> float | None:
        """Quanta ending per second, of one label or all; `None` if unknown."""
        start = self.window_start
        if label is not None:
            # A label is measured from its first start, not from before it.
            start = max(start, self.first_start.get(label, self.time))
        span = self.time - start
        if span < 1.0:
            return None
        ended = self.recent.get(label, 0) if label is not None else sum(self.recent.values())
        return ended / span

    def eta(self, label: str | None = None) -> float | None:
        """Seconds until the quanta (of one label, or all) are finished, at
        the current rate; `None` when nothing finishes."""
        if label is None:
            remaining = self.remaining
        else:
            by_state = self.counts[label]
            remaining = by_state[JobState.PENDING] + by_state[JobState.LAUNCHED] + by_state[JobState.RUNNING]
        if remaining == 0:
            return 0.0
        rate = self.rate(label)
        return remaining / rate if rate else None


def read_snapshot(
    db: sqlite3.Connection, labels: list[str], now: float, window: float = RATE_WINDOW_SECONDS
) -> ProgressSnapshot:
    """Read quantum counts and recent ends from a job-state store.

    Parameters
    ----------
    db : `sqlite3.Connection`
        Connection to the store.
    labels : `list` [`str`]
        Quantum labels in pipeline order.
    now : `float`
        The current time; the run's end time if it has ended.
    window : `float`
        Seconds of the past over which the rate is measured.

    Returns
    -------
    snapshot : `ProgressSnapshot`
        The counts; one pass over the ``jobs`` table.
    """
    row = db.execute("SELECT start_time, end_time FROM run").fetchone()
    since = float(row[0]) if row and row[0] is not None else now
    if row and row[1] is not None and row[1] >= since:
        now = float(row[1])  # The run has ended: show it as it was then.
    window_start = max(since, now - window)
    counts = {label: dict.fromkeys(JobState, 0) for label in labels}
    recent = dict.fromkeys(labels, 0)
    first_start: dict[str, float] = {}
    rows = db.execute(
        "SELECT label, state, COUNT(*), SUM(CASE WHEN t_end >= ? AND state IN ('exec_done', 'failed') "
        "THEN 1 ELSE 0 END), MIN(COALESCE(t_running, t_launched)) "
        "FROM jobs WHERE kind = 'quantum' GROUP BY label, state",
        (window_start,),
    )
    for label, state, count, ended, started in rows:
        counts.setdefault(label, dict.fromkeys(JobState, 0))[JobState(state)] = count
        recent[label] = recent.get(label, 0) + (ended or 0)
        if started is not None:
            first_start[label] = min(first_start.get(label, started), started)
    return ProgressSnapshot(now, since, counts, recent, window_start, first_start)


def _per_minute(rate: float | None) -> str:
    return "-" if not rate else f"{rate * 60:.1f}"


def format_snapshot(
    snapshot: ProgressSnapshot, max_rows: int | None = None, columns: int | None = None
) -> list[str]:
    """Render a snapshot: a summary line and a table with one row per label.

    Parameters
    ----------
    snapshot : `ProgressSnapshot`
        What to show.
    max_rows : `int`, optional
        Most table rows to show; when there are more labels, those with
        quanta in flight or failed come first and the rest are summed up in
        one last line.
    columns : `int`, optional
        Width of the terminal; a table too wide for it drops the dep_fail,
        queued and pending columns, and the summary line is split in two.

    Returns
    -------
    lines : `list` [`str`]
        The lines, without newlines.
    """
    finished = snapshot.state_total(JobState.EXEC_DONE, JobState.FAILED, JobState.DEP_FAIL)
    total = snapshot.total
    percent = 100.0 * finished / total if total else 100.0
    clock = time.strftime("%H:%M:%S", time.localtime(snapshot.time))
    first = (
        f"Progress {clock} (elapsed {format_duration(snapshot.time - snapshot.since)}): "
        f"{finished}/{total} quanta finished ({percent:.0f}%)"
    )
    second = (
        f"{snapshot.state_total(JobState.EXEC_DONE)} done, {snapshot.state_total(JobState.FAILED)} failed, "
        f"{snapshot.state_total(JobState.DEP_FAIL)} dep_fail, "
        f"{snapshot.state_total(JobState.RUNNING)} running; "
        f"{_per_minute(snapshot.rate())}/min, ETA {format_duration(snapshot.eta())}"
    )
    lines = [f"{first}: {second}"]
    if columns is not None and len(lines[0]) > columns:
        lines = [first, f"  {second}"]
    width = min(_LABEL_WIDTH, max([len("task_type"), *(len(label) for label in snapshot.counts)]))
    shown_columns: tuple[str, ...] = _COLUMNS
    cell = 9
    if columns is not None and 2 + width + cell * len(_COLUMNS) > columns:
        shown_columns, cell = _COMPACT_COLUMNS, 8
        width = max(min(width, columns - 2 - cell * len(shown_columns)), 10)
    lines.append(f"  {'task_type':<{width}}" + "".join(f"{c:>{cell}}" for c in shown_columns))
    labels = list(snapshot.counts)
    hidden: list[str] = []
    if max_rows is not None and len(labels) > max_rows:
        keep = max(max_rows - 1, 1)

        def busy(label: str) -> bool:
            c = snapshot.counts[label]
            return bool(c[JobState.RUNNING] or c[JobState.LAUNCHED] or c[JobState.FAILED])

        shown = set(sorted(labels, key=lambda label: not busy(label))[:keep])
        hidden = [label for label in labels if label not in shown]
        labels = [label for label in labels if label in shown]
    for label in labels:
        c = snapshot.counts[label]
        cells = {
            "done": c[JobState.EXEC_DONE],
            "failed": c[JobState.FAILED],
            "dep_fail": c[JobState.DEP_FAIL],
            "running": c[JobState.RUNNING],
            "queued": c[JobState.LAUNCHED],
            "pending": c[JobState.PENDING],
            "total": sum(c.values()),
            "/min": _per_minute(snapshot.rate(label)),
            "ETA": format_duration(snapshot.eta(label)),
        }
        text = "".join(f"{cells[name]:>{cell}}" for name in shown_columns)
        lines.append(f"  {label[:width]:<{width}}{text}")
    if hidden:
        done = sum(snapshot.counts[label][JobState.EXEC_DONE] for label in hidden)
        count = sum(sum(snapshot.counts[label].values()) for label in hidden)
        lines.append(f"  ... {len(hidden)} more label(s): {done}/{count} quanta done")
    return lines
