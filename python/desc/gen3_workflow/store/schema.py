"""The tables of the job-state store, and how its rows become records.

`JobStateStore` (`desc.gen3_workflow.store.job_store`) is the only user.
Besides the plan and the states, the store keeps each label's number of
jobs per state (``label_states``) and its order and first start
(``label_order``), counted once when the plan is written and kept up to date
by triggers as states change, so that status and progress cost time in
proportion to the labels, not to the jobs.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from .records import JobCommand, JobKind, JobRecord, JobState

__all__ = ["JOB_COLUMNS", "RUN_COLUMNS", "SCHEMA", "count_states", "ensure_counts", "job_record", "job_row"]

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER NOT NULL, number INTEGER NOT NULL, succeeded INTEGER NOT NULL, t_end REAL NOT NULL,
    exit_code INTEGER, memory INTEGER, message TEXT, PRIMARY KEY (seq, number)
);
CREATE TABLE IF NOT EXISTS typical (label TEXT PRIMARY KEY, median REAL NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, kind);
CREATE INDEX IF NOT EXISTS jobs_t_end ON jobs (t_end);
CREATE INDEX IF NOT EXISTS jobs_retried ON jobs (seq) WHERE attempts > 1;
CREATE TABLE IF NOT EXISTS label_states (
    kind TEXT NOT NULL, label TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (kind, label, state)
);
CREATE TABLE IF NOT EXISTS label_order (
    kind TEXT NOT NULL, label TEXT NOT NULL, first_seq INTEGER NOT NULL, first_start REAL,
    PRIMARY KEY (kind, label)
);
CREATE TRIGGER IF NOT EXISTS count_states AFTER UPDATE OF state ON jobs WHEN old.state IS NOT new.state
BEGIN
    UPDATE label_states SET n = n - 1 WHERE kind = old.kind AND label = old.label AND state = old.state;
    INSERT INTO label_states VALUES (new.kind, new.label, new.state, 1)
        ON CONFLICT (kind, label, state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER IF NOT EXISTS first_start AFTER UPDATE OF t_launched, t_running ON jobs
WHEN (old.t_launched IS NULL AND new.t_launched IS NOT NULL)
    OR (old.t_running IS NULL AND new.t_running IS NOT NULL)
BEGIN
    UPDATE label_order
        SET first_start = MIN(COALESCE(first_start, 1e308), COALESCE(new.t_running, new.t_launched))
        WHERE kind = new.kind AND label = new.label;
END;
CREATE INDEX IF NOT EXISTS edges_child ON edges (child);
CREATE INDEX IF NOT EXISTS edges_parent ON edges (parent);
"""

JOB_COLUMNS = (
    "seq, name, label, kind, data_id, command, resources, stdout, stderr, state, attempts, exit_code, "
    "t_launched, t_running, t_end, message"
)
RUN_COLUMNS = "name, submit_dir, info, state, pid, host, start_time, end_time, submissions"


def count_states(db: sqlite3.Connection) -> None:
    """Count every label's jobs per state and find its order and first
    start, from scratch (after the plan is written); triggers keep both up
    to date from then on."""
    db.execute("DELETE FROM label_states")
    db.execute("DELETE FROM label_order")
    db.execute(
        "INSERT INTO label_states SELECT kind, label, state, COUNT(*) FROM jobs GROUP BY kind, label, state"
    )
    db.execute(
        "INSERT INTO label_order SELECT kind, label, MIN(seq), MIN(COALESCE(t_running, t_launched)) "
        "FROM jobs GROUP BY kind, label"
    )


def job_row(job: JobRecord) -> tuple[Any, ...]:
    return (
        job.seq,
        job.name,
        job.label,
        job.kind.value,
        job.data_id,
        job.command.to_json(),
        json.dumps(job.resources),
        job.stdout,
        job.stderr,
        job.state.value,
        job.attempts,
        job.exit_code,
        job.t_launched,
        job.t_running,
        job.t_end,
        job.message,
    )


def job_record(row: tuple[Any, ...]) -> JobRecord:
    seq, name, label, kind, data_id, command, resources, stdout, stderr, state, *rest = row
    return JobRecord(
        seq,
        name,
        label,
        JobKind(kind),
        data_id,
        JobCommand.from_json(command),
        json.loads(resources),
        stdout,
        stderr,
        JobState(state),
        *rest,
    )


def ensure_counts(db: sqlite3.Connection, writable: bool) -> None:
    """Give a store written before the counts were kept its counts: in
    the file when writable, else in temporary tables of this connection."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'label_order'").fetchone():
        if not writable or db.execute("SELECT 1 FROM label_order LIMIT 1").fetchone():
            return
        if not db.execute("SELECT 1 FROM jobs LIMIT 1").fetchone():
            return  # nothing planned yet
        count_states(db)
        return
    if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'jobs'").fetchone():
        return  # half-written: reads will say so
    db.execute(
        "CREATE TEMP TABLE label_states AS "
        "SELECT kind, label, state, COUNT(*) AS n FROM jobs GROUP BY kind, label, state"
    )
    db.execute(
        "CREATE TEMP TABLE label_order AS SELECT kind, label, MIN(seq) AS first_seq, "
        "MIN(COALESCE(t_running, t_launched)) AS first_start FROM jobs GROUP BY kind, label"
    )
