"""Shared fixtures: a small demo repository, copied fresh for each test;
and the ``unit`` / ``e2e`` markers.

A test module named ``test_*_e2e.py`` runs real ``bps``, parsl executors,
butlers, Slurm or PostgreSQL and is marked ``e2e``; every other test module
is ``unit`` (seconds, no daemons): ``pytest -m unit`` runs those alone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from harness import quanta_per_label

from desc.gen3_workflow.demo.repo import make_demo_repo

# The private Slurm cluster and PostgreSQL server fixtures.
pytest_plugins = ["slurm_fixtures", "pg_fixtures"]

N_VISITS = 2
N_DETECTORS = 2
QUANTA = quanta_per_label(N_VISITS, N_DETECTORS)
"""Quanta per task label of a run of the demo DRP pipeline on `demo_repo`."""
DRP_LABELS = list(QUANTA)
SFP_LABELS = DRP_LABELS[:3]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.e2e if item.path.name.endswith("_e2e.py") else pytest.mark.unit)


@pytest.fixture(scope="session")
def demo_repo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-visit x 2-detector repository (SQLite registry), built once."""
    root = tmp_path_factory.mktemp("template") / "repo"
    make_demo_repo(str(root), n_visits=N_VISITS, n_detectors=N_DETECTORS)
    return root


@pytest.fixture
def demo_repo(demo_repo_template: Path, tmp_path: Path) -> str:
    """A private copy of the demo repository for one test."""
    repo = tmp_path / "repo"
    shutil.copytree(demo_repo_template, repo)
    return str(repo)
