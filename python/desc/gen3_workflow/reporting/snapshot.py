"""What a progress report shows: quantum counts per task label and state,
the rate at which quanta finish and the time left, read from a job-state
store in one pass over its jobs (`JobStateStore.label_stats`), and their
rendering as a small table.

The rate counts the quanta that ended (succeeded or failed) within the last
`RATE_WINDOW_SECONDS` of the current submission, read from the jobs' end
times, so it is right from the first report, also in another process; a
label's rate is measured from its first start.
"""

from __future__ import annotations

import dataclasses
import time

from ..store.job_store import JobStateStore
from ..store.records import JobRecord, JobState
from .executors import executors_cell
from .text import SLOW_FACTOR, SLOW_MIN_SECONDS, format_duration, format_slow_job

__all__ = ["PROGRESS_NAMES", "RATE_WINDOW_SECONDS", "ProgressSnapshot", "format_snapshot", "read_snapshot"]

RATE_WINDOW_SECONDS = 300.0
"""The rate is measured over this much of the recent past."""

_LABEL_WIDTH = 30
_SLOW_LISTED = 5
PROGRESS_NAMES: dict[JobState, str] = {
    JobState.EXEC_DONE: "done",
    JobState.FAILED: "failed",
    JobState.DEP_FAIL: "dep_fail",
    JobState.RUNNING: "running",
    JobState.LAUNCHED: "queued",
    JobState.PENDING: "pending",
}
"""What the progress table calls each state (the user guide's table of states)."""
_COLUMNS = (*PROGRESS_NAMES.values(), "total", "/min", "ETA")
# What a narrow terminal shows.
_COMPACT_COLUMNS = ("done", "failed", "running", "total", "/min", "ETA")


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
    slow: list[tuple[JobRecord, float]] = dataclasses.field(default_factory=list)
    """Running quanta far past their label's median run time, with it."""
    executors: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    """Label -> the executors its quanta went to (shown when a run has several)."""

    @property
    def several_executors(self) -> bool:
        """Whether quanta went to more than one executor."""
        return len({name for names in self.executors.values() for name in names}) > 1

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


def read_snapshot(store: JobStateStore, now: float, window: float = RATE_WINDOW_SECONDS) -> ProgressSnapshot:
    """Read quantum counts and recent ends from a job-state store.

    Parameters
    ----------
    store : `JobStateStore`
        The run's store.
    now : `float`
        The current time; the run's end time if it has ended.
    window : `float`
        Seconds of the past over which the rate is measured.

    Returns
    -------
    snapshot : `ProgressSnapshot`
        The counts; one pass over the ``jobs`` table.
    """
    run = store.run()
    since = run.start_time if run.start_time is not None else now
    if run.end_time is not None and run.end_time >= since:
        now = run.end_time  # The run has ended: show it as it was then.
    window_start = max(since, now - window)
    counts, recent, first_start = store.label_stats(ended_since=window_start)
    slow = store.slow_jobs(now, SLOW_FACTOR, SLOW_MIN_SECONDS)
    executors = store.label_executors()
    return ProgressSnapshot(now, since, counts, recent, window_start, first_start, slow, executors)


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
    executors = snapshot.several_executors
    header = f"  {'task_type':<{width}}" + "".join(f"{c:>{cell}}" for c in shown_columns)
    lines.append(header + "  executors" * executors)
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
        cells: dict[str, object] = {name: c[state] for state, name in PROGRESS_NAMES.items()}
        cells.update(
            {
                "total": sum(c.values()),
                "/min": _per_minute(snapshot.rate(label)),
                "ETA": format_duration(snapshot.eta(label)),
            }
        )
        text = "".join(f"{cells[name]:>{cell}}" for name in shown_columns)
        if executors:
            text += f"  {executors_cell(snapshot.executors.get(label))}"
        lines.append(f"  {label[:width]:<{width}}{text}")
    if hidden:
        done = sum(snapshot.counts[label][JobState.EXEC_DONE] for label in hidden)
        count = sum(sum(snapshot.counts[label].values()) for label in hidden)
        lines.append(f"  ... {len(hidden)} more label(s): {done}/{count} quanta done")
    if snapshot.slow:
        lines.append(f"  {len(snapshot.slow)} job(s) running over {SLOW_FACTOR:g}x their label's median:")
        listed = snapshot.slow[:_SLOW_LISTED]
        lines += ["    " + format_slow_job(job, median, snapshot.time) for job, median in listed]
        if len(snapshot.slow) > _SLOW_LISTED:
            lines.append(f"    ... and {len(snapshot.slow) - _SLOW_LISTED} more")
    return lines
