"""Job-state stores written directly, for unit tests (no parsl, no butler)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from desc.gen3_workflow.constants import STORE_FILENAME
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobCommand, JobKind, JobRecord, RunInfo
from desc.gen3_workflow.store.templates import WorkflowPlan

KIND_OF_LABEL = {"pipetaskInit": JobKind.INIT, "finalJob": JobKind.FINAL}


def job(seq: int, label: str, submit_dir: Path | str = "/run", data_id: str | None = None) -> JobRecord:
    """A pending job; its kind follows from the label (pipetaskInit, finalJob
    or a quantum), its logs are under ``submit_dir/logs/label``."""
    log = Path(submit_dir) / "logs" / label / f"{label}_{seq}"
    return JobRecord(
        seq,
        f"{label}_{seq}",
        label,
        KIND_OF_LABEL.get(label, JobKind.QUANTUM),
        data_id if data_id is not None else f'{{"n":{seq}}}',
        JobCommand(("true",)),
        {},
        f"{log}.stdout",
        f"{log}.stderr",
    )


def write_store(
    submit_dir: Path | str,
    jobs: list[JobRecord],
    edges: list[tuple[int, int]] | None = None,
    name: str = "synthetic",
    info: RunInfo | None = None,
) -> JobStateStore:
    """A store holding ``jobs`` (states and times as given), open for writing."""
    Path(submit_dir).mkdir(parents=True, exist_ok=True)
    store = JobStateStore.open(str(submit_dir), writable=True)
    store.write_plan(name, str(submit_dir), info or RunInfo(), WorkflowPlan.from_records(jobs, edges or []))
    # The plan is written pending; then each job's state as given (the
    # store's triggers keep the per-label counts).
    db = sqlite3.connect(Path(submit_dir) / STORE_FILENAME)
    try:
        db.executemany(
            "UPDATE jobs SET state = ?, attempts = ?, exit_code = ?, t_launched = ?, t_running = ?, "
            "t_end = ?, message = ? WHERE seq = ?",
            [
                (j.state.value, j.attempts, j.exit_code, j.t_launched, j.t_running, j.t_end, j.message, j.seq)
                for j in jobs
            ],
        )
        db.commit()
    finally:
        db.close()
    return store


def set_run(submit_dir: Path | str, **columns: object) -> None:
    """Overwrite columns of a store's run row (pid, host, start_time, ...),
    as another process or another host would have written them."""
    db = sqlite3.connect(Path(submit_dir) / STORE_FILENAME)
    try:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        db.execute(f"UPDATE run SET {assignments}", tuple(columns.values()))
        db.commit()
    finally:
        db.close()


_ATTEMPTS_BEFORE = (
    "seq INTEGER NOT NULL, number INTEGER NOT NULL, succeeded INTEGER NOT NULL, t_end REAL NOT NULL, "
    "exit_code INTEGER, memory INTEGER, message TEXT"
)
"""The ``attempts`` columns of the first stores that kept attempts."""


def old_attempts_table(submit_dir: Path | str, extra_columns: str, row: str) -> None:
    """Give a store the ``attempts`` table of an earlier version (its first
    columns, then ``extra_columns``), holding one ``row`` (SQL values)."""
    columns = ", ".join(c for c in (_ATTEMPTS_BEFORE, extra_columns) if c)
    with sqlite3.connect(Path(submit_dir) / STORE_FILENAME) as db:
        db.executescript(
            f"DROP TABLE attempts; CREATE TABLE attempts ({columns}, PRIMARY KEY (seq, number)); "
            f"INSERT INTO attempts VALUES ({row});"
        )
