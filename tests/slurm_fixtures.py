"""Pytest fixture for a private one-machine Slurm cluster.

Loaded for every test module through ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from desc.gen3_workflow.testing.slurm_cluster import SlurmCluster, slurm_unavailable_reason

__all__ = ["slurm_cluster"]


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Yield a started `SlurmCluster` (one node, partition ``debug``), stopped at session end.

    Skips when Slurm/munge are missing or we are not root. The cluster lives in its
    own temporary directory (removed at the end), not in pytest's: user munge
    cannot get through pytest's private ``/tmp/pytest-of-root``. Start-up errors
    carry the tails of the daemon logs.
    """
    reason = slurm_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private Slurm cluster: {reason}")
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
