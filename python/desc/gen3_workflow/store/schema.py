"""The tables of the job-state store, and how its rows become records.

`JobStateStore` (`desc.gen3_workflow.store.job_store`) is the only user.
Jobs refer to a template (`~.templates.JobTemplate`: command, environment,
resources and log directory shared by a label's jobs) and keep only their
own words; `JobRows` reads them back as `JobRecord`, also from stores
written before templates, where every job held its whole command.
Besides the plan and the states, the store keeps each label's number of
jobs per state (``label_states``) and its order and first start
(``label_order``), counted once when the plan is written and kept up to date
by triggers as states change, so that status and progress cost time in
proportion to the labels, not to the jobs.
"""

from __future__ import annotations

import json
import sqlite3
from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .records import JobCommand, JobKind, JobRecord, JobState
from .templates import EdgeBlock, JobTemplate, PlanRow, edges_from_blob, record_of

__all__ = [
    "PLAN_COLUMNS",
    "PLAN_INDEXES",
    "RUN_COLUMNS",
    "SCHEMA",
    "JobRows",
    "PlannedCounts",
    "count_states",
    "attempt_columns",
    "ensure_counts",
    "in_chunks",
    "priority_of",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    name TEXT NOT NULL, submit_dir TEXT NOT NULL, info TEXT NOT NULL,
    state TEXT NOT NULL, pid INTEGER, host TEXT, start_time REAL, end_time REAL,
    submissions INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS templates (id INTEGER PRIMARY KEY, spec TEXT NOT NULL, log_dir TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY, name TEXT NOT NULL, label TEXT NOT NULL,
    kind TEXT NOT NULL, data_id TEXT NOT NULL, template INTEGER NOT NULL, words TEXT,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, exit_code INTEGER,
    t_launched REAL, t_running REAL, t_end REAL, message TEXT
);
CREATE TABLE IF NOT EXISTS edges (parent INTEGER NOT NULL, child INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS edge_blocks (
    id INTEGER PRIMARY KEY, parents BLOB NOT NULL, children BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    seq INTEGER NOT NULL, number INTEGER NOT NULL, succeeded INTEGER NOT NULL, t_end REAL NOT NULL,
    exit_code INTEGER, memory INTEGER, message TEXT, cpu REAL, max_rss INTEGER, t_start REAL, host TEXT,
    executor TEXT, PRIMARY KEY (seq, number)
);
CREATE TABLE IF NOT EXISTS label_executors (
    label TEXT NOT NULL, executor TEXT NOT NULL, PRIMARY KEY (label, executor)
);
CREATE TABLE IF NOT EXISTS typical (label TEXT PRIMARY KEY, median REAL NOT NULL);
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
"""

PLAN_INDEXES = {
    "jobs_name": "CREATE UNIQUE INDEX IF NOT EXISTS jobs_name ON jobs (name)",
    "jobs_state": "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, kind)",
    # Only ended jobs: empty when the plan is written (`t_end >= ?` implies
    # NOT NULL, so SQLite still uses it for "ended since").
    "jobs_t_end": "CREATE INDEX IF NOT EXISTS jobs_t_end ON jobs (t_end) WHERE t_end IS NOT NULL",
    "jobs_retried": "CREATE INDEX IF NOT EXISTS jobs_retried ON jobs (seq) WHERE attempts > 1",
    # Succeeded jobs with something to say (a host lost under them, a task
    # the watchdog killed): a handful among 10^6.
    "jobs_noted": "CREATE INDEX IF NOT EXISTS jobs_noted ON jobs (seq) "
    "WHERE state = 'exec_done' AND message IS NOT NULL",
}
"""The indexes of the plan's tables, by name.  The plan writer drops them,
writes the plan and builds them again: built from the whole table at once,
they cost a fraction of keeping them up to date through 10^6 inserts of
ctrl_bps's job names (a UUID first, so each lands anywhere in the index).
Edges have none: they are only ever read whole, and the plan writes them
as blocks (``edge_blocks``: `~.templates.EdgeBlock`, two blobs per 10^4
edges); ``edges`` holds the (parent, child) rows of stores written before."""

PLAN_COLUMNS = "seq, name, label, kind, data_id, template, words"
"""The columns `write_plan` fills (`~.templates.PlanRow`); the rest start at their defaults."""
_STATE_COLUMNS = "j.state, j.attempts, j.exit_code, j.t_launched, j.t_running, j.t_end, j.message"
ATTEMPT_USAGE = ("cpu REAL", "max_rss INTEGER", "t_start REAL", "host TEXT", "executor TEXT")
"""The columns of ``attempts`` that stores written before lack (what each
attempt's payload used, when it started, the host and executor that ran it)."""
RUN_COLUMNS = "name, submit_dir, info, state, pid, host, start_time, end_time, submissions"


class PlannedCounts:
    """Each label's number of jobs and first ``seq``, counted as a plan's
    rows are written (every job pending): what `count_states` finds,
    without a scan of the table."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], list[int]] = {}

    def add(self, rows: Iterable[PlanRow]) -> None:
        """Count more rows."""
        found = self._found
        for seq, _, label, kind, *_ in rows:
            entry = found.get((kind, label))
            if entry is None:
                found[(kind, label)] = [1, seq]
            else:
                entry[0] += 1
                if seq < entry[1]:
                    entry[1] = seq

    def write(self, db: sqlite3.Connection) -> None:
        """Replace the store's counts and label order with these."""
        db.execute("DELETE FROM label_states")
        db.execute("DELETE FROM label_order")
        db.executemany(
            "INSERT INTO label_states VALUES (?, ?, 'pending', ?)",
            [(str(kind), label, n) for (kind, label), (n, _) in self._found.items()],
        )
        db.executemany(
            "INSERT INTO label_order VALUES (?, ?, ?, NULL)",
            [(str(kind), label, first) for (kind, label), (_, first) in self._found.items()],
        )


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


class JobRows:
    """Reads jobs back as `JobRecord`, whichever layout the store has.

    Queries select `fields` from ``jobs j`` (alias ``j``) and hand each
    row to `record`.  Templates are read once, when first needed.

    Parameters
    ----------
    db : `sqlite3.Connection`
        The store's connection.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        self.legacy = "command" in columns
        """A store written before templates: every job holds its command,
        resources and log paths."""
        own = "j.command, j.resources, j.stdout, j.stderr" if self.legacy else "j.template, j.words"
        self.fields = f"j.seq, j.name, j.label, j.kind, j.data_id, {own}, {_STATE_COLUMNS}"
        """What to select for `record`."""
        self.stderr = "j.stderr, NULL" if self.legacy else "j.template, j.name"
        """What to select (two values) for `stderr_of`."""
        self._templates: dict[int, JobTemplate] = {}

    def template(self, template_id: int) -> JobTemplate:
        """A template of the plan."""
        found = self._templates.get(template_id)
        if found is None:
            found = self._read_templates()[template_id]
        return found

    def templates(self) -> dict[int, JobTemplate]:
        """Every template of the plan, by id."""
        return self._read_templates()

    def _read_templates(self) -> dict[int, JobTemplate]:
        """Every template of the plan, read from the store (they are few)."""
        for tid, spec, log_dir in self._db.execute("SELECT id, spec, log_dir FROM templates"):
            self._templates[tid] = JobTemplate.from_json(spec, log_dir)
        return self._templates

    def record(self, row: tuple[Any, ...]) -> JobRecord:
        """The `JobRecord` of a row of `fields`."""
        if self.legacy:
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
        # seq, name, label, kind, data_id, template, words; then state and progress.
        return record_of(self.template(row[5]), row[:7], *row[7:])

    def stderr_of(self, first: Any, second: Any) -> str:
        """A job's stderr file, from the two values of `stderr`."""
        if self.legacy:
            return str(first)
        return f"{self.template(first).log_dir}/{second}.stderr"

    def priorities(self) -> array[int]:
        """Every job's priority, by ``seq``.  Only the jobs of templates
        with a priority are read: none, in most runs."""
        db = self._db
        (size,) = db.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM jobs").fetchone()
        values = array("q", bytes(8 * size))
        if self.legacy:
            for seq, resources in db.execute("SELECT seq, resources FROM jobs"):
                values[seq] = priority_of(json.loads(resources))
            return values
        templates = self._read_templates()
        wanted = {tid: p for tid, p in ((t, priority_of(v.resources)) for t, v in templates.items()) if p}
        for chunk, marks in in_chunks(list(wanted)):
            for seq, template in db.execute(
                f"SELECT seq, template FROM jobs WHERE template IN ({marks})", chunk
            ):
                values[seq] = wanted[template]
        return values

    def edge_arrays(self) -> EdgeBlock:
        """Every edge, parents' and children's ``seq``: the blocks, then the
        rows of a store written before blocks."""
        parents, children = array("q"), array("q")
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'edge_blocks'").fetchone():
            # (A store written before blocks, opened read-only, has no such table.)
            for parents_blob, children_blob in db.execute(
                "SELECT parents, children FROM edge_blocks ORDER BY id"
            ):
                parents += edges_from_blob(parents_blob)
                children += edges_from_blob(children_blob)
        for parent, child in db.execute("SELECT parent, child FROM edges"):
            parents.append(parent)
            children.append(child)
        return parents, children


MAX_PARAMETERS = 500
"""Values bound to one query at most (SQLite's limit on parameters is 999
in older builds)."""


def in_chunks(values: Sequence[Any]) -> Iterator[tuple[Sequence[Any], str]]:
    """``values`` in chunks of at most `MAX_PARAMETERS`, each with the
    ``?, ?, ...`` of its ``IN (...)``."""
    for start in range(0, len(values), MAX_PARAMETERS):
        chunk = values[start : start + MAX_PARAMETERS]
        yield chunk, ", ".join("?" * len(chunk))


def priority_of(resources: dict[str, Any]) -> int:
    """The ``priority`` of a job's resources as a number; 0 where there is
    none or it is not one (ctrl_bps carries it as the bps file gives it)."""
    priority = resources.get("priority")
    try:
        return int(str(priority)) if priority is not None else 0
    except ValueError:
        return 0


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


def attempt_columns(db: sqlite3.Connection, writable: bool) -> str:
    """The columns to select from ``attempts`` (``seq, number, succeeded,
    t_end, exit_code, memory, message, cpu, max_rss, t_start, host, executor``); a
    store written before what attempts used (or their start, or host) was
    kept gets the columns when writable, else NULL in their place."""
    have = {row[1] for row in db.execute("PRAGMA table_info(attempts)")}
    missing = [column for column in ATTEMPT_USAGE if column.split()[0] not in have]
    if missing and writable and have:
        for column in missing:
            db.execute(f"ALTER TABLE attempts ADD COLUMN {column}")
        missing = []
    usage = ", ".join("NULL" if column in missing else column.split()[0] for column in ATTEMPT_USAGE)
    return f"seq, number, succeeded, t_end, exit_code, memory, message, {usage}"
