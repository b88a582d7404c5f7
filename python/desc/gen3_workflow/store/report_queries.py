"""What reports read of a store in aggregate: labels in pipeline order,
counts per label and state (kept by triggers, so a poll costs what changed),
recent ends, frequent messages, every job's times and host for summaries and
plots.

`ReportQueries` is a part of `~.job_store.JobStateStore` (its base), kept
here so that the store's class stays one screenful of each concern.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from .records import JobKind, JobState
from .schema import JobRows

__all__ = ["LabelStats", "ReportQueries"]

LabelStats = dict[str, dict[JobState, int]]
"""Label -> state -> number of jobs, labels in pipeline order."""


class ReportQueries:
    """Aggregate reads of a store (see the module documentation)."""

    _db: sqlite3.Connection
    _rows: JobRows
    _attempt_columns: str

    def labels(self, kind: JobKind | None = JobKind.QUANTUM) -> list[str]:
        """Task labels in pipeline (topological) order, of one kind of job
        or (`None`) of all."""
        where = "" if kind is None else "WHERE kind = ?"
        params = () if kind is None else (kind.value,)
        return [
            label
            for (label,) in self._db.execute(
                f"SELECT label FROM label_order {where} GROUP BY label ORDER BY MIN(first_seq)", params
            )
        ]

    def counts(self, kind: JobKind = JobKind.QUANTUM) -> LabelStats:
        """Number of jobs per label and state, labels in topological order."""
        counts, _, _ = self.label_stats(kind)
        return counts

    def label_stats(
        self, kind: JobKind = JobKind.QUANTUM, ended_since: float | None = None
    ) -> tuple[LabelStats, dict[str, int], dict[str, float]]:
        """Counts per label and state, and what a rate needs.

        The counts are kept up to date as states change (table
        ``label_states``), so this costs time in proportion to the labels
        and to the jobs ended since ``ended_since``, not to the run.

        Parameters
        ----------
        kind : `JobKind`
            Which jobs.
        ended_since : `float`, optional
            Also count, per label, the jobs that ended (succeeded or failed)
            at or after this time.

        Returns
        -------
        counts : `LabelStats`
            Label -> state -> count, every state present.
        recent : `dict` [`str`, `int`]
            Label -> jobs ended since ``ended_since`` (0 without it).
        first_start : `dict` [`str`, `float`]
            Label -> the earliest launch or start of any of its jobs, for
            labels with one.
        """
        order = self._db.execute(
            "SELECT label, first_start FROM label_order WHERE kind = ? ORDER BY first_seq", (kind.value,)
        ).fetchall()
        counts: LabelStats = {label: dict.fromkeys(JobState, 0) for label, _ in order}
        first_start = {label: start for label, start in order if start is not None}
        rows = self._db.execute("SELECT label, state, n FROM label_states WHERE kind = ?", (kind.value,))
        for label, state, count in rows:
            counts.setdefault(label, dict.fromkeys(JobState, 0))[JobState(state)] = count
        recent = dict.fromkeys(counts, 0)
        if ended_since is not None:
            recent.update(self._ended_since(ended_since, kind))
        return counts, recent, first_start

    def message_counts(self, limit: int) -> list[tuple[str, int]]:
        """The ``limit`` most frequent messages jobs ended with, and how
        many jobs ended with each (without reading every job)."""
        return self._db.execute(
            "SELECT message, COUNT(*) FROM jobs WHERE message IS NOT NULL AND message != '' "
            "GROUP BY message ORDER BY COUNT(*) DESC LIMIT ?",
            (limit,),
        ).fetchall()

    def _ended_since(self, since: float, kind: JobKind) -> list[tuple[str, int]]:
        # Without statistics SQLite picks the state index, which walks every
        # ended job of the run: name the index of end times, so that a
        # progress poll costs what ended since, not what ended at all.
        query = (
            "SELECT label, COUNT(*) FROM jobs {} WHERE t_end >= ? AND kind = ? "
            "AND state IN ('exec_done', 'failed') GROUP BY label"
        )
        try:
            return self._db.execute(query.format("INDEXED BY jobs_t_end"), (since, kind.value)).fetchall()
        except sqlite3.OperationalError:  # a store from before that index
            return self._db.execute(query.format(""), (since, kind.value)).fetchall()

    def history_rows(self) -> list[tuple[Any, ...]]:
        """Every job's label, state, start, end, attempts, exit code, name,
        data ID, stderr, message and launch, in ``seq`` order (for summaries
        and plots).  A job's start is when its payload started, as the node
        that ran it recorded, or when it was seen running; its launch when
        parsl handed it to the executor (which stands for its start in
        stores from before starts were recorded)."""
        rows = self._db.execute(
            "SELECT j.label, j.state, COALESCE(j.t_running, j.t_launched), j.t_end, j.attempts, j.exit_code, "
            f"j.name, j.data_id, {self._rows.stderr}, j.message, j.t_launched FROM jobs j ORDER BY j.seq"
        )
        stderr_of = self._rows.stderr_of
        return [(*row[:8], stderr_of(row[8], row[9]), row[10], row[11]) for row in rows]

    def last_hosts(self) -> list[tuple[int, str]]:
        """Each job whose last attempt recorded the host that ran it: its
        ``seq`` and that host, in ``seq`` order (for summaries: one pass
        over the attempts, as `history_rows` is over the jobs)."""
        return self._of_last_attempts("host")

    def last_executors(self) -> list[tuple[int, str]]:
        """Each job whose last attempt recorded its executor: its ``seq``
        and that executor's name, in ``seq`` order."""
        return self._of_last_attempts("executor")

    def _of_last_attempts(self, column: str) -> list[tuple[int, str]]:
        if column not in self._attempt_columns.split(", "):
            return []  # a store from before it was kept, read-only
        # SQLite takes a bare column beside MAX() from the row with the maximum.
        return self._db.execute(
            f"SELECT seq, {column} FROM (SELECT seq, {column}, MAX(number) FROM attempts GROUP BY seq) "
            f"WHERE {column} IS NOT NULL ORDER BY seq"
        ).fetchall()

    def label_executors(self) -> dict[str, list[str]]:
        """The executors each task label's jobs went to (a table of a few
        rows: cheap enough for every progress report)."""
        try:
            rows = self._db.execute(
                "SELECT e.label, e.executor FROM label_executors e LEFT JOIN label_order o "
                "ON o.label = e.label AND o.kind = 'quantum' ORDER BY o.first_seq, e.executor"
            )
        except sqlite3.OperationalError:  # a store from before executors were kept
            return {}
        found: dict[str, list[str]] = {}
        for label, executor in rows:
            found.setdefault(label, []).append(executor)
        return found
