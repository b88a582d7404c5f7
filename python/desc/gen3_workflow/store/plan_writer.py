"""Write a run's plan into its store as the plan is made.

`StorePlanWriter` is a `~.templates.PlanSink`: it takes rows, edges and
templates in chunks, in one transaction, and commits them with the plan's
indexes and per-label counts.  `JobStateStore.write_plan` uses it for a
plan held whole in memory; `~.plan_process` runs it in a process of its
own, so that SQLite's work goes on while the plan is made.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3

from .records import RunInfo, RunState
from .schema import PLAN_COLUMNS, PLAN_INDEXES, PlannedCounts
from .templates import EdgeBlock, JobTemplate, PlanRow, edges_to_blob

__all__ = ["PLAN_CACHE_KB", "StorePlanWriter"]

_LOG = logging.getLogger(__name__)

PLAN_CACHE_KB = 256 * 1024
"""SQLite's page cache while the plan is written (its default, 2 MB, makes
the plan's index builds spill to disk from about 10^5 jobs)."""


class StorePlanWriter:
    """Writes one run's plan into a writable store's connection.

    Parameters
    ----------
    db : `sqlite3.Connection`
        The store's connection (autocommit mode: the writer opens and ends
        its own transaction).
    name : `str`
        The run's name.
    submit_dir : `str`
        Its submit directory.
    info : `RunInfo`
        What report and restart need to know about it.
    """

    def __init__(self, db: sqlite3.Connection, name: str, submit_dir: str, info: RunInfo) -> None:
        self._db = db
        self._counts = PlannedCounts()
        self._templates = 0
        # Under a rollback journal, not the write-ahead log, which would hold
        # every page of the plan once more until its checkpoint (15% of the
        # write at 10^5 jobs); SQLite refuses at once while a reader has the
        # store open, and the plan goes through the log then.
        with contextlib.suppress(sqlite3.OperationalError):
            db.execute("PRAGMA journal_mode=DELETE")
        (self._cache_size,) = db.execute("PRAGMA cache_size").fetchone()
        db.execute(f"PRAGMA cache_size=-{PLAN_CACHE_KB}")
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT INTO run (id, name, submit_dir, info, state) VALUES (1, ?, ?, ?, ?)",
                (name, submit_dir, info.to_json(), RunState.PREPARED.value),
            )
            for index in PLAN_INDEXES:
                db.execute(f"DROP INDEX IF EXISTS {index}")
        except BaseException:
            self.rollback()
            raise

    def add_rows(self, rows: list[PlanRow]) -> None:
        """Write the next rows."""
        self._db.executemany(f"INSERT INTO jobs ({PLAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        self._counts.add(rows)

    def add_edges(self, edges: EdgeBlock) -> None:
        """Write more edges, as one block."""
        parents, children = edges
        if len(parents) != len(children):
            raise ValueError(f"an edge block of {len(parents)} parents and {len(children)} children")
        if parents:
            self._db.execute(
                "INSERT INTO edge_blocks (parents, children) VALUES (?, ?)",
                (edges_to_blob(parents), edges_to_blob(children)),
            )

    def add_templates(self, templates: list[JobTemplate]) -> None:
        """Write the next templates."""
        first, self._templates = self._templates, self._templates + len(templates)
        self._db.executemany(
            "INSERT INTO templates (id, spec, log_dir) VALUES (?, ?, ?)",
            ((i, template.to_json(), template.log_dir) for i, template in enumerate(templates, first)),
        )

    def reset(self) -> None:
        """Drop the rows, edges and templates written so far (in the same
        transaction: the run's record stays)."""
        for table in ("jobs", "edge_blocks", "templates"):
            self._db.execute(f"DELETE FROM {table}")
        self._counts = PlannedCounts()
        self._templates = 0

    def commit(self) -> None:
        """Build the indexes and counts, and commit the plan."""
        try:
            create_plan_indexes(self._db)
            self._counts.write(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self._restore()

    def rollback(self) -> None:
        """Leave the store as it was before the plan."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")
        self._restore()

    def _restore(self) -> None:
        self._db.execute(f"PRAGMA cache_size={self._cache_size}")
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:  # readers then wait for the writer's commits
            _LOG.warning("The job-state store stays in rollback-journal mode: %s", exc)


def create_plan_indexes(db: sqlite3.Connection) -> None:
    """Build the plan's indexes (those a store written before lacks, too)."""
    legacy = db.execute("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'command'").fetchone()
    for index, create in PLAN_INDEXES.items():
        if not (legacy and index == "jobs_name"):  # a store written before: its names are UNIQUE
            db.execute(create)
