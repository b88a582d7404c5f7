"""Pytest fixtures for a private PostgreSQL server and demo repositories on it.

Loaded for every test module through ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from desc.gen3_workflow.demo.repo import make_demo_repo
from desc.gen3_workflow.testing.postgres_server import PostgresServer, postgres_unavailable_reason

__all__ = ["pg_demo_repo", "postgres_server"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Yield a started `PostgresServer`, stopped (and its directory removed) at session end.

    Skips when the PostgreSQL server binaries (or psycopg) are missing. The server
    lives in its own temporary directory, not in pytest's: the ``postgres`` account
    cannot get through pytest's private ``/tmp/pytest-of-root``.
    """
    reason = postgres_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private PostgreSQL server: {reason}")
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_demo_repo(postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh demo repository (same size as ``demo_repo``) whose registry is a new
    schema on `postgres_server`.

    ``LSST_DB_AUTH`` points at the server's credentials file for the test, so
    the test process, ``bps`` and every job it starts find the password.
    """
    from conftest import N_DETECTORS, N_VISITS

    for name, value in postgres_server.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LSST_DB_AUTH_CREDENTIALS", raising=False)
    return make_demo_repo(
        str(tmp_path / "pg_repo"),
        n_visits=N_VISITS,
        n_detectors=N_DETECTORS,
        registry_db=postgres_server.url(),
        registry_namespace=f"repo_{uuid.uuid4().hex[:12]}",
    )
