"""Pytest fixtures for private Slurm clusters on this machine: one node
(`slurm_cluster`), or four nodes with their own network namespaces
(`slurm_nodes`).

Loaded for every test module through ``pytest_plugins`` in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from desc.gen3_workflow.testing.node_network import node_network_unavailable_reason
from desc.gen3_workflow.testing.slurm_cluster import SlurmCluster, slurm_unavailable_reason

__all__ = ["slurm_cluster", "slurm_nodes"]


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


@pytest.fixture(scope="session")
def slurm_nodes() -> Iterator[SlurmCluster]:
    """Yield a started 4-node `SlurmCluster` (partition ``debug``), stopped at session end.

    Nodes ``n1`` to ``n4`` are each a slurmd with its own host name, network
    namespace and address (`SlurmCluster.node_address`) on a private bridge, where
    the host is `SlurmCluster.host_address`. The whole session shares it: do not
    `SlurmCluster.kill_node` its nodes, start a cluster of your own for that. Skips
    when Slurm/munge are missing, we are not root or network namespaces cannot be
    made. Lives in its own temporary directory, as `slurm_cluster` does.
    """
    reason = slurm_unavailable_reason() or node_network_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private multi-node Slurm cluster: {reason}")
    cluster = SlurmCluster(nodes=4).start()
    try:
        yield cluster
    finally:
        cluster.stop()
