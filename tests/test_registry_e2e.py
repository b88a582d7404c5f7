"""End-to-end ``bps submit`` against a PostgreSQL registry, and concurrent runs on one repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS
from harness import (
    BackgroundBps,
    BpsResult,
    expected_outputs,
    job_states,
    registered_outputs,
    run_bps,
    run_record,
    write_bps_file,
)

from desc.gen3_workflow.store.records import JobState
from desc.gen3_workflow.testing.postgres_server import PostgresServer

THREAD_POOL = {"executor": "ThreadPool", "max_threads": 2}
# What SQLite (or PostgreSQL) lock contention between the two runs would look like.
LOCK_TROUBLE = re.compile(r"database is locked|OperationalError|\block(ed|s|ing)?\b", re.IGNORECASE)


def _assert_complete(submit_dir: str) -> None:
    """Every DRP output registered exactly once and every job done."""
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)
    for label, by_state in job_states(submit_dir).items():
        assert by_state[JobState.EXEC_DONE] == sum(by_state.values()), label


def _files_under(directory: str | Path) -> list[Path]:
    return [path for path in Path(directory).rglob("*") if path.is_file()]


def _holds(path: Path, data: bytes) -> bool:
    try:
        return data in path.read_bytes()
    except FileNotFoundError:
        return False  # a temporary file (SQLite -wal/-shm, Work Queue scratch) gone meanwhile


def _password(server: PostgresServer) -> str:
    (entry,) = yaml.safe_load(server.auth_path.read_text())
    return entry["password"]


def test_submit_against_postgres_registry(
    pg_demo_repo: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    # ThreadPool keeps this quick; WorkQueue with local workers also passes (the
    # workers inherit LSST_DB_AUTH like every job) but costs ~30 s more.
    bps_file = write_bps_file(tmp_path, pg_demo_repo, THREAD_POOL, payload_name="pg")
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 0, result.output
    _assert_complete(result.submit_dir)

    # The registry really is the PostgreSQL schema, not a SQLite file.
    butler_yaml = Path(pg_demo_repo, "butler.yaml").read_text()
    assert postgres_server.url() in butler_yaml
    assert not list(Path(pg_demo_repo).glob("*.sqlite3"))

    # The password is only in the 0600 credentials file: not in the bps file, the repository
    # config, bps output, the server log or the submit directory (commands, logs, QuantumGraph).
    password = _password(postgres_server)
    assert postgres_server.auth_path.stat().st_mode & 0o777 == 0o600
    assert password.encode() not in bps_file.read_bytes()
    assert password not in butler_yaml
    assert password not in result.output
    assert not _holds(postgres_server.log_path, password.encode())
    leaks = [str(path) for path in _files_under(result.submit_dir) if _holds(path, password.encode())]
    assert not leaks, f"password found in {leaks}"


def _two_runs_at_once(repo: str, tmp_path: Path) -> None:
    submits = {}
    for name in ("runa", "runb"):
        cwd = tmp_path / name
        cwd.mkdir()
        submits[name] = BackgroundBps(cwd, write_bps_file(cwd, repo, THREAD_POOL, payload_name=name))
    results = {}
    try:
        for name, submit in submits.items():
            results[name] = BpsResult(submit.wait(timeout=600), submit.output)
    finally:
        for submit in submits.values():
            submit.__exit__()
    for name, result in results.items():
        assert result.returncode == 0, f"{name}:\n{result.output}"
        assert not LOCK_TROUBLE.search(result.output), f"{name}:\n{result.output}"
        # Nor hidden in a job's log (e.g. a lock error the final job retried past).
        for path in _files_under(Path(result.submit_dir) / "logs"):
            text = path.read_text(errors="replace")
            assert not re.search(r"database is locked|OperationalError", text), f"{path}:\n{text[-3000:]}"
    assert results["runa"].submit_dir != results["runb"].submit_dir
    # They did run at the same time.
    runs = [run_record(result.submit_dir) for result in results.values()]
    (a_start, a_end), (b_start, b_end) = ((run.start_time or 0, run.end_time or 0) for run in runs)
    assert a_start < b_end and b_start < a_end, "the two runs did not overlap"
    for result in results.values():
        _assert_complete(result.submit_dir)


@pytest.mark.parametrize("registry", ["sqlite", "postgres"])
def test_two_runs_at_once_on_one_repository(
    registry: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Two ``bps submit`` at once, different output runs, one repository.

    Their init jobs (dataset type and init-output registration) and final jobs
    (``butler aggregate-graph``) start within a fraction of a second of each other.
    On SQLite, daf_butler's ``BEGIN IMMEDIATE`` write transactions and 5-minute
    ``busy_timeout`` serialise them without "database is locked" errors.
    """
    repo = request.getfixturevalue("demo_repo" if registry == "sqlite" else "pg_demo_repo")
    _two_runs_at_once(repo, tmp_path)
