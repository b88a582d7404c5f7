"""The job-state store: one SQLite file in the submit directory.

It holds the run's plan (every job's command, resources and dependencies,
written once at prepare time) and its progress (each job's state, attempts,
exit code and timestamps; the run's pid, host, start, end and state).  It is
the single source of truth that submit, restart, status and report read.

Only the submitting process writes; workers never touch it (a shared SQLite
file on a parallel filesystem is a recipe for lock errors).  Readers in other
processes open it read-only; WAL journaling lets them read while the writer
commits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any

__all__ = ["STORE_FILENAME", "JobRecord", "JobState", "JobStateStore", "JobUpdate", "RunState"]

STORE_FILENAME = "gen3_workflow.sqlite3"


class JobState(StrEnum):
    """Where a job is; the seed's ``status()`` columns, in order."""

    PENDING = "pending"
    LAUNCHED = "launched"
    RUNNING = "running"
    EXEC_DONE = "exec_done"
    FAILED = "failed"
    DEP_FAIL = "dep_fail"

    @property
    def is_final(self) -> bool:
        """Whether the job has finished, one way or another."""
        return self in (JobState.EXEC_DONE, JobState.FAILED, JobState.DEP_FAIL)


class RunState(StrEnum):
    """Where the whole run is."""

    PREPARED = "prepared"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_KINDS = ("init", "quantum", "final")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL, submit_dir TEXT NOT NULL, info TEXT NOT NULL,
    state TEXT NOT NULL, pid INTEGER, host TEXT, start_time REAL, end_time REAL,
    submissions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, label TEXT NOT NULL,
    kind TEXT NOT NULL, data_id TEXT NOT NULL, command TEXT NOT NULL, resources TEXT NOT NULL,
    stdout TEXT NOT NULL, stderr TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, exit_code INTEGER,
    t_launched REAL, t_running REAL, t_end REAL, message TEXT
);
CREATE TABLE IF NOT EXISTS edges (parent INTEGER NOT NULL, child INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_label_state ON jobs (label, state);
CREATE INDEX IF NOT EXISTS edges_child ON edges (child);
"""


@dataclasses.dataclass(slots=True)
class JobRecord:
    """One job of the plan, with its latest state."""

    seq: int
    """Position in a topological order of the DAG (parents come first)."""
    name: str
    label: str
    kind: str
    """``init``, ``quantum`` or ``final``."""
    data_id: str
    command: str
    resources: dict[str, Any]
    stdout: str
    stderr: str
    state: JobState = JobState.PENDING
    attempts: int = 0
    exit_code: int | None = None
    t_launched: float | None = None
    t_running: float | None = None
    t_end: float | None = None
    message: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JobUpdate:
    """A change of one job's state, queued by the runner and written in
    batches."""

    seq: int
    state: JobState
    time: float
    attempts: int | None = None
    exit_code: int | None = None
    message: str | None = None


_JOB_COLUMNS = [f.name for f in dataclasses.fields(JobRecord)]


class JobStateStore:
    """Access to one run's store.

    Parameters
    ----------
    path : `str`
        The SQLite file (`STORE_FILENAME` in the submit directory).
    writable : `bool`
        Open for writing; only the submitting process should.
    """

    def __init__(self, path: str, writable: bool = False) -> None:
        self.path = path
        if writable:
            self._db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        else:
            if not os.path.exists(path):
                raise FileNotFoundError(f"No gen3_workflow job-state store at {path}")
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60, isolation_level=None)

    @classmethod
    def in_dir(cls, submit_dir: str, writable: bool = False) -> JobStateStore:
        """Open the store of the run in ``submit_dir``."""
        return cls(os.path.join(submit_dir, STORE_FILENAME), writable=writable)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

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

    def write_plan(
        self,
        name: str,
        submit_dir: str,
        info: dict[str, Any],
        jobs: Iterable[JobRecord],
        edges: Iterable[tuple[int, int]],
    ) -> None:
        """Record the run and every job of its DAG, all pending."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO run (id, name, submit_dir, info, state) VALUES (1, ?, ?, ?, ?)",
                (name, submit_dir, json.dumps(info), RunState.PREPARED.value),
            )
            db.executemany(
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))})",
                (_job_row(job) for job in jobs),
            )
            db.executemany("INSERT INTO edges (parent, child) VALUES (?, ?)", edges)

    def apply(self, updates: Iterable[JobUpdate]) -> None:
        """Write a batch of job-state changes in one transaction."""
        rows = [
            (u.state.value, u.attempts, u.exit_code, u.message, *(u.state.value, u.time) * 3, u.seq)
            for u in updates
        ]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET state = ?, attempts = COALESCE(?, attempts), exit_code = ?, message = ?, "
                "t_launched = CASE WHEN ? = 'launched' THEN ? ELSE t_launched END, "
                "t_running = CASE WHEN ? = 'running' THEN ? ELSE t_running END, "
                "t_end = CASE WHEN ? IN ('exec_done', 'failed', 'dep_fail') THEN ? ELSE t_end END "
                "WHERE seq = ?",
                rows,
            )

    def reset_unfinished(self) -> int:
        """Return every job that did not succeed to pending, for a restart.

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

    def run_info(self) -> dict[str, Any]:
        """The run row: name, submit_dir, info (dict), state, pid, host, times."""
        row = self._db.execute(
            "SELECT name, submit_dir, info, state, pid, host, start_time, end_time, submissions FROM run"
        ).fetchone()
        if row is None:
            raise RuntimeError(f"{self.path} holds no run")
        keys = ("name", "submit_dir", "info", "state", "pid", "host", "start_time", "end_time", "submissions")
        run = dict(zip(keys, row, strict=True))
        run["info"] = json.loads(run["info"])
        run["state"] = RunState(run["state"])
        return run

    def jobs(self, kind: str | None = None, states: Iterable[JobState] | None = None) -> list[JobRecord]:
        """Jobs in topological order, optionally only of one kind or states."""
        where, params = [], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if states is not None:
            values = [s.value for s in states]
            where.append(f"state IN ({', '.join('?' * len(values))})")
            params.extend(values)
        sql = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_job_record(row) for row in self._db.execute(sql + " ORDER BY seq", params)]

    def job(self, name: str) -> JobRecord | None:
        """The job called ``name``, if there is one."""
        row = self._db.execute(
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else _job_record(row)

    def parents(self) -> dict[int, list[int]]:
        """For each job with parents, the seqs of its parents."""
        result: dict[int, list[int]] = {}
        for parent, child in self._db.execute("SELECT parent, child FROM edges"):
            result.setdefault(child, []).append(parent)
        return result

    def counts(self, kind: str = "quantum") -> dict[str, dict[JobState, int]]:
        """Number of jobs per label and state, labels in topological order."""
        result: dict[str, dict[JobState, int]] = {}
        first_seen = self._db.execute(
            "SELECT label, MIN(seq) FROM jobs WHERE kind = ? GROUP BY label ORDER BY MIN(seq)", (kind,)
        )
        for label, _ in first_seen:
            result[label] = dict.fromkeys(JobState, 0)
        rows = self._db.execute(
            "SELECT label, state, COUNT(*) FROM jobs WHERE kind = ? GROUP BY label, state", (kind,)
        )
        for label, state, count in rows:
            result[label][JobState(state)] = count
        return result


def _job_row(job: JobRecord) -> tuple[Any, ...]:
    values = {name: getattr(job, name) for name in _JOB_COLUMNS}
    values["resources"] = json.dumps(job.resources)
    values["state"] = job.state.value
    return tuple(values.values())


def _job_record(row: tuple[Any, ...]) -> JobRecord:
    job = JobRecord(*row)
    job.resources = json.loads(row[_JOB_COLUMNS.index("resources")])
    job.state = JobState(job.state)
    return job
