"""The job-state store: one SQLite file in the submit directory.

It holds the run's plan (every job's command, resources and dependencies,
written once at prepare time) and its progress (each job's state, attempts,
exit code and timestamps; the run's pid, host, start, end and state).  It is
the single source of truth that submit, restart, status and report read,
and, with `~.plan_writer` (which writes the plan into it) and
`~.report_queries` (its aggregate reads), the only module that knows its
tables.

Only the submitting process writes; workers never touch it (a shared SQLite
file on a parallel filesystem is a recipe for lock errors).  Readers in other
processes open it read-only; WAL journaling lets them read while the writer
commits.  Use it as a context manager::

    with JobStateStore.open(submit_dir) as store:
        run = store.run()
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from array import array
from collections.abc import Iterable, Iterator

from ..constants import STORE_FILENAME
from ..errors import RunNotFoundError
from .plan_writer import StorePlanWriter, create_plan_indexes
from .records import (
    AttemptRecord,
    JobKind,
    JobRecord,
    JobState,
    JobUpdate,
    RunInfo,
    RunRecord,
    RunState,
)
from .report_queries import LabelStats, ReportQueries
from .schema import RUN_COLUMNS, SCHEMA, JobRows, attempt_columns, ensure_counts, in_chunks
from .templates import EdgeBlock, WorkflowPlan, edge_block

__all__ = ["UNREADABLE", "JobStateStore", "LabelStats"]

UNREADABLE = (RunNotFoundError, sqlite3.Error)
"""What opening or reading a store that is missing, half-written (prepare
still running) or damaged raises."""

_LOG = logging.getLogger(__name__)


class JobStateStore(ReportQueries):
    """Access to one run's store.

    Parameters
    ----------
    path : `str`
        The SQLite file (`STORE_FILENAME` in the submit directory).
    writable : `bool`
        Open for writing; only the submitting process should.

    Raises
    ------
    RunNotFoundError
        Opening read-only a store that does not exist.
    """

    def __init__(self, path: str, writable: bool = False) -> None:
        self.path = path
        if writable:
            if not os.path.exists(path):
                # Not for every user of the node: the owner and their group
                # (SQLite gives its -wal and -shm files the same mode).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o640))
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            with self._transaction() as db:
                create_plan_indexes(db)
                ensure_counts(db, writable=True)
                self._attempt_columns = attempt_columns(db, writable=True)
        else:
            if not os.path.exists(path):
                raise RunNotFoundError(f"No gen3_workflow job-state store at {path}")
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60, isolation_level=None)
            ensure_counts(self._db, writable=False)
            self._attempt_columns = attempt_columns(self._db, writable=False)
        self._rows = JobRows(self._db)

    @classmethod
    def open(cls, submit_dir: str, writable: bool = False) -> JobStateStore:
        """Open the store of the run in ``submit_dir``."""
        return cls(os.path.join(submit_dir, STORE_FILENAME), writable=writable)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> JobStateStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- writing (submitting process only) -------------------------------

    def write_plan(self, name: str, submit_dir: str, info: RunInfo, plan: WorkflowPlan) -> None:
        """Record the run and every job of its DAG, all pending (a plan held
        in memory; `plan_writer` takes one as it is made)."""
        writer = self.plan_writer(name, submit_dir, info)
        try:
            writer.add_templates(plan.templates)
            writer.add_rows(plan.rows)
            writer.add_edges(edge_block(plan.edges))
        except BaseException:
            writer.rollback()
            raise
        writer.commit()

    def plan_writer(self, name: str, submit_dir: str, info: RunInfo) -> StorePlanWriter:
        """Start recording the run: a `~.templates.PlanSink` whose
        ``commit`` ends the plan (``rollback`` drops it)."""
        return StorePlanWriter(self._db, name, submit_dir, info)

    def apply(self, updates: Iterable[JobUpdate], attempts: Iterable[AttemptRecord] = ()) -> None:
        """Write a batch of job-state changes, and how the attempts that
        ended went, in one transaction."""
        rows = [
            (u.state.value, u.attempts, u.exit_code, u.message, u.state.value, u.time)
            + (u.started, u.state.value, u.time, u.state.value, u.time, u.seq)
            for u in updates
        ]
        ended = [
            (a.seq, a.number, a.succeeded, a.end, a.exit_code, a.memory, a.message)
            + (a.cpu, a.max_rss, a.start, a.host, a.executor)
            for a in attempts
        ]
        if not rows and not ended:
            return
        with self._transaction() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO attempts ({self._attempt_columns}) VALUES ({', '.join('?' * 12)})",
                ended,
            )
            db.executemany(
                "UPDATE jobs SET state = ?, attempts = COALESCE(?, attempts), exit_code = ?, message = ?, "
                "t_launched = CASE WHEN ? = 'launched' THEN ? ELSE t_launched END, "
                "t_running = COALESCE(?, CASE WHEN ? = 'running' THEN ? ELSE t_running END), "
                "t_end = CASE WHEN ? IN ('exec_done', 'failed', 'dep_fail') THEN ? ELSE t_end END "
                "WHERE seq = ?",
                rows,
            )

    def note_label_executor(self, label: str, executor: str) -> None:
        """Record that jobs of a task label went to an executor (once per
        pair: what status and the progress table show per label)."""
        with self._transaction() as db:
            db.execute("INSERT OR IGNORE INTO label_executors VALUES (?, ?)", (label, executor))

    def largest_memory_request(self) -> int | None:
        """The largest memory request (MB) of any quantum job, from the
        plan's templates (a few per task label); `None` if none asks."""
        if self._rows.legacy:
            return None
        templates = self._rows.templates()
        # One pass over the jobs, once per submission (~0.2 s at 10^6).
        used = self._db.execute("SELECT DISTINCT template FROM jobs WHERE kind = ?", (JobKind.QUANTUM.value,))
        requests = [templates[t].resources.get("memory") for (t,) in used]
        return max((int(r) for r in requests if r), default=None)

    def set_typical_durations(self, medians: dict[str, float]) -> None:
        """Record the median run time of each label's successful jobs (what
        reports compare running jobs with)."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO typical (label, median) VALUES (?, ?)", medians.items())

    def reset_unfinished(self) -> int:
        """Return every job that did not succeed, and the final job, to
        pending, for a restart.

        Returns
        -------
        count : `int`
            How many jobs will run again.
        """
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE jobs SET state = 'pending', exit_code = NULL, message = NULL, "
                "t_launched = NULL, t_running = NULL, t_end = NULL WHERE state != 'exec_done' "
                "OR kind = 'final'"
            )
            return cursor.rowcount

    def start_run(self) -> None:
        """Mark the run as running in this process, on this host."""
        with self._transaction() as db:
            db.execute(
                "UPDATE run SET state = ?, pid = ?, host = ?, start_time = ?, end_time = NULL, "
                "submissions = submissions + 1 WHERE id = 1",
                (RunState.RUNNING.value, os.getpid(), os.uname().nodename, time.time()),
            )

    def end_run(self, state: RunState) -> None:
        """Record how the run ended."""
        with self._transaction() as db:
            db.execute("UPDATE run SET state = ?, end_time = ? WHERE id = 1", (state.value, time.time()))

    # --- reading (any process) -------------------------------------------

    def run(self) -> RunRecord:
        """The run's record.

        Raises
        ------
        RunNotFoundError
            If the store holds no run yet (prepare has not written it).
        """
        row = self._db.execute(f"SELECT {RUN_COLUMNS} FROM run").fetchone()
        if row is None:
            raise RunNotFoundError(f"{self.path} holds no run")
        name, submit_dir, info, state, pid, host, start, end, submissions = row
        return RunRecord(
            name, submit_dir, RunInfo.from_json(info), RunState(state), pid, host, start, end, submissions
        )

    def jobs(self, kind: JobKind | None = None, states: Iterable[JobState] | None = None) -> list[JobRecord]:
        """Jobs in topological order, optionally only of one kind or states."""
        where, params = self._where(kind, states)
        sql = f"SELECT {self._rows.fields} FROM jobs j{where} ORDER BY j.seq"
        return [self._rows.record(row) for row in self._db.execute(sql, params)]

    @staticmethod
    def _where(kind: JobKind | None, states: Iterable[JobState] | None) -> tuple[str, list[str]]:
        """The WHERE clause (with its leading space, or empty) selecting jobs
        of ``kind`` in ``states`` (`None`: any), and its parameters."""
        where, params = [], []
        if kind is not None:
            where.append("j.kind = ?")
            params.append(kind.value)
        if states is not None:
            values = [s.value for s in states]
            where.append(f"j.state IN ({', '.join('?' * len(values))})")
            params.extend(values)
        return (" WHERE " + " AND ".join(where) if where else ""), params

    def job(self, name: str) -> JobRecord | None:
        """The job called ``name``, if there is one."""
        row = self._db.execute(f"SELECT {self._rows.fields} FROM jobs j WHERE j.name = ?", (name,)).fetchone()
        return None if row is None else self._rows.record(row)

    def seqs_named(self, names: Iterable[str]) -> dict[str, int]:
        """The ``seq`` of each of the jobs called ``names`` that exists."""
        found: dict[str, int] = {}
        for chunk, marks in in_chunks(list(names)):
            found.update(self._db.execute(f"SELECT name, seq FROM jobs WHERE name IN ({marks})", chunk))
        return found

    def jobs_by_seq(self, seqs: list[int]) -> list[JobRecord]:
        """The jobs with these ``seq``, in that order."""
        found: dict[int, JobRecord] = {}
        for chunk, marks in in_chunks(seqs):
            sql = f"SELECT {self._rows.fields} FROM jobs j WHERE j.seq IN ({marks})"
            found.update((row[0], self._rows.record(row)) for row in self._db.execute(sql, chunk))
        return [found[seq] for seq in seqs]

    def retried_jobs(self, limit: int) -> tuple[list[JobRecord], int]:
        """Up to ``limit`` jobs that took more than one attempt (first in
        ``seq`` order), and how many there are."""
        return self._first_jobs("j.attempts > 1", limit)

    def noted_jobs(self, limit: int) -> tuple[list[JobRecord], int]:
        """Up to ``limit`` jobs that succeeded with a note (first in ``seq``
        order), and how many there are."""
        return self._first_jobs("j.state = 'exec_done' AND j.message IS NOT NULL", limit)

    def _first_jobs(self, condition: str, limit: int) -> tuple[list[JobRecord], int]:
        """Up to ``limit`` jobs meeting ``condition`` (a fixed SQL condition
        of this module, never a user's), first in ``seq`` order, and how many
        there are."""
        where = f"FROM jobs j WHERE {condition}"
        (count,) = self._db.execute(f"SELECT COUNT(*) {where}").fetchone()
        rows = self._db.execute(f"SELECT {self._rows.fields} {where} ORDER BY j.seq LIMIT ?", (limit,))
        return [self._rows.record(row) for row in rows], count

    def attempts_of(self, seqs: list[int]) -> dict[int, list[AttemptRecord]]:
        """How each attempt of these jobs ended, oldest first (jobs with no
        ended attempt are left out)."""
        found: dict[int, list[AttemptRecord]] = {}
        for chunk, marks in in_chunks(seqs):
            sql = f"SELECT {self._attempt_columns} FROM attempts WHERE seq IN ({marks}) ORDER BY seq, number"
            try:
                rows = self._db.execute(sql, chunk).fetchall()
            except sqlite3.OperationalError:  # a store written before attempts were kept
                return {}
            for seq, number, ok, *rest in rows:
                found.setdefault(seq, []).append(AttemptRecord(seq, number, bool(ok), *rest))
        return found

    def attempt_usage(self) -> list[tuple[int, float | None, int | None]]:
        """Each job whose payload's use was measured: its ``seq``, CPU
        seconds over its attempts and highest peak memory (bytes)."""
        if "cpu" not in self._attempt_columns.split(", "):
            return []  # a store from before they were measured
        return self._db.execute(
            "SELECT seq, SUM(cpu), MAX(max_rss) FROM attempts "
            "WHERE cpu IS NOT NULL OR max_rss IS NOT NULL GROUP BY seq"
        ).fetchall()

    def seqs(self, kind: JobKind | None = None, states: Iterable[JobState] | None = None) -> array[int]:
        """The ``seq`` of the jobs `jobs` would give, in order, without
        reading the jobs (the scheduler's view of 10^6 jobs)."""
        where, params = self._where(kind, states)
        rows = self._db.execute(f"SELECT j.seq FROM jobs j{where} ORDER BY j.seq", params)
        return array("q", (seq for (seq,) in rows))

    def priorities(self) -> array[int]:
        """Every job's priority, by ``seq`` (0 where the workflow gave none
        or not a number)."""
        return self._rows.priorities()

    def edges(self) -> list[tuple[int, int]]:
        """Every (parent, child) pair of ``seq``."""
        return list(zip(*self.edge_arrays(), strict=True))

    def edge_arrays(self) -> EdgeBlock:
        """Every edge: the parents' and the children's ``seq``, pair by pair
        (what the scheduler reads: two arrays, not 10^6 tuples)."""
        return self._rows.edge_arrays()

    def typical_durations(self) -> dict[str, float]:
        """The median run time of each label's successful jobs, as the
        runner last recorded it (labels with too few successes are absent)."""
        return dict(self._db.execute("SELECT label, median FROM typical").fetchall())

    def slow_jobs(self, now: float, factor: float, min_seconds: float) -> list[tuple[JobRecord, float]]:
        """Running jobs that have run more than ``factor`` times their
        label's typical duration (and at least ``min_seconds``), with that
        duration; the longest-running first."""
        rows = self._db.execute(
            f"SELECT {self._rows.fields}, t.median FROM jobs j JOIN typical t ON j.label = t.label "
            "WHERE j.state = 'running' AND ? - j.t_running > MAX(? * t.median, ?) ORDER BY j.t_running",
            (now, factor, min_seconds),
        )
        return [(self._rows.record(row[:-1]), row[-1]) for row in rows]
