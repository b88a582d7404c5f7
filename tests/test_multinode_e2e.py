"""Runs spread over several nodes, on a private Slurm cluster of 4 nodes
(`slurm_fixtures.slurm_nodes`: each node a slurmd with its own host name,
network namespace and address): the NERSC walkthrough's set-up (Work Queue
workers started by ``srun`` inside ``salloc -N 3``), Work Queue and
HighThroughput blocks of several nodes, a node lost mid-run, and ``bps
cancel``; with the real demo pipeline, every output registered, and jobs
on every node."""

from __future__ import annotations

import collections
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS
from harness import (
    SERVICE_ENV,
    BackgroundBps,
    expected_outputs,
    registered_outputs,
    requires_work_queue,
    run_bps,
    run_record,
    wait_for,
    wait_for_jobs,
    write_bps_file,
)

from desc.gen3_workflow.execution.bridge.worker_address import worker_address
from desc.gen3_workflow.execution.job_io import markers
from desc.gen3_workflow.settings.parsl_section import ParslSettings
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobKind, JobState, RunState
from desc.gen3_workflow.testing.node_network import node_network_unavailable_reason
from desc.gen3_workflow.testing.slurm_cluster import SlurmCluster, slurm_unavailable_reason

# Quanta long enough that every node's workers get some.
SLEEPS = " ".join(f"-c {label}:sleep=0.3" for label in DRP_LABELS[:3])
WORK_QUEUE = {"executor": "WorkQueue", "worker_options": "--cores=2 --memory=4000"}
SLURM = {"provider": "Slurm", "partition": "debug", "exclusive": False, "walltime": "00:20:00"}


def _hosts(submit_dir: str) -> collections.Counter[str]:
    """Quanta per host their last attempt ran on."""
    with JobStateStore.open(submit_dir) as store:
        quanta = store.jobs(kind=JobKind.QUANTUM)
        attempts = store.attempts_of([job.seq for job in quanta])
    return collections.Counter(attempts[job.seq][-1].host for job in quanta)


def _left_on_nodes(cluster: SlurmCluster) -> dict[str, list[str]]:
    """What still runs on each node besides its slurmd."""
    assert cluster.network is not None
    daemons = set(cluster.pids.values())
    left = {}
    for node in cluster.node_names:
        names = []
        for pid in cluster.network.processes(node) - daemons:
            try:
                names.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
            except OSError:
                continue
        if names:
            left[node] = names
    return left


def _assert_complete_on(nodes: list[str], submit_dir: str, cluster: SlurmCluster) -> None:
    """The run succeeded, every output registered, jobs ran on each of
    ``nodes`` (and no other host), and nothing is left on any node."""
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)
    hosts = _hosts(submit_dir)
    assert set(hosts) == set(nodes), hosts
    # Nothing is left on the nodes, and no block waits in Slurm.
    wait_for(lambda: not _left_on_nodes(cluster), lambda: f"processes left: {_left_on_nodes(cluster)}", 60)
    wait_for(lambda: cluster.job_ids() == [], "no Slurm job left", 60)


@pytest.fixture
def nodes(slurm_nodes: SlurmCluster) -> SlurmCluster:
    slurm_nodes.run(["scancel", "--full", "--partition=debug"], check=False)
    return slurm_nodes


def test_workers_reach_bps_submit_at_the_address_on_the_route_to_the_nodes(nodes: SlurmCluster) -> None:
    environ = {**os.environ, **nodes.env}
    in_allocation = {**environ, "SLURM_JOB_NODELIST": "n[1-3]"}
    local = ParslSettings.from_mapping({**WORK_QUEUE, "nodes_per_block": 3})
    chosen = worker_address(local, in_allocation)
    assert chosen.address == nodes.host_address, chosen
    assert "route to node n1" in chosen.why
    on_slurm = worker_address(ParslSettings.from_mapping({**WORK_QUEUE, **SLURM}), environ)
    assert on_slurm.address == nodes.host_address, on_slurm
    assert worker_address(ParslSettings.from_mapping(WORK_QUEUE)).address == "127.0.0.1"
    given = ParslSettings.from_mapping({**WORK_QUEUE, **SLURM, "address": "10.9.8.7"})
    assert worker_address(given, environ).line() == "10.9.8.7 (parsl_config.address)"


@requires_work_queue
def test_nersc_walkthrough_work_queue_workers_by_srun_in_an_allocation(
    demo_repo: str, tmp_path: Path, nodes: SlurmCluster
) -> None:
    """``salloc -N 3 bps submit``, ``provider: Local``, ``nodes_per_block: 3``:
    srun puts a worker on each node, each node has its own warm runner."""
    settings = {**WORK_QUEUE, "provider": "Local", "nodes_per_block": 3}
    bps_file = write_bps_file(tmp_path, demo_repo, settings, extraQgraphOptions=SLEEPS)
    result = run_bps(
        "submit", str(bps_file), cwd=tmp_path, env=nodes.env, launcher=("salloc", "-N", "3"), timeout=400
    )
    assert result.returncode == 0, result.output
    added = re.search(r"to add a worker: (.*)", result.output)
    assert added is not None and f" {nodes.host_address} " in added[1], result.output
    _assert_complete_on(["n1", "n2", "n3"], result.submit_dir, nodes)
    runners = {path.name.split(".")[0] for path in Path(result.submit_dir, "runners").glob("*.log")}
    assert runners >= {"n1", "n2", "n3"}, runners


@requires_work_queue
def test_work_queue_blocks_of_two_nodes_on_slurm(demo_repo: str, tmp_path: Path, nodes: SlurmCluster) -> None:
    """Two blocks of two whole nodes each: a worker per node, on all four."""
    settings = {
        **WORK_QUEUE,
        **SLURM,
        "exclusive": True,
        "nodes_per_block": 2,
        "init_blocks": 2,
        "max_blocks": 2,
    }
    bps_file = write_bps_file(tmp_path, demo_repo, settings, extraQgraphOptions=SLEEPS)
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=nodes.env, timeout=400)
    assert result.returncode == 0, result.output
    _assert_complete_on(nodes.node_names, result.submit_dir, nodes)


def test_high_throughput_blocks_of_three_nodes_on_slurm(
    demo_repo: str, tmp_path: Path, nodes: SlurmCluster
) -> None:
    settings = {"executor": "HighThroughput", **SLURM, "nodes_per_block": 3, "max_workers": 2}
    bps_file = write_bps_file(tmp_path, demo_repo, settings, extraQgraphOptions=SLEEPS)
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=nodes.env, timeout=400)
    assert result.returncode == 0, result.output
    _assert_complete_on(["n1", "n2", "n3"], result.submit_dir, nodes)


@requires_work_queue
def test_cancel_leaves_nothing_on_any_node(demo_repo: str, tmp_path: Path, nodes: SlurmCluster) -> None:
    slow = " ".join(f"-c {label}:sleep=30" for label in DRP_LABELS[:1])
    settings = {**WORK_QUEUE, **SLURM, "nodes_per_block": 4}
    bps_file = write_bps_file(tmp_path, demo_repo, settings, extraQgraphOptions=slow)
    network = nodes.network
    assert network is not None
    with BackgroundBps(tmp_path, bps_file, env=nodes.env) as bps:
        submit_dir = wait_for_jobs(bps, "isr", JobState.RUNNING, count=4)
        wait_for(lambda: not set(nodes.node_names) - set(_left_on_nodes(nodes)), "workers on every node")
        cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env={**SERVICE_ENV, **nodes.env})
        assert cancel.returncode == 0, cancel.output
        assert bps.wait(timeout=180) != 0, bps.output
    assert run_record(submit_dir).state == RunState.CANCELLED
    wait_for(lambda: not _left_on_nodes(nodes), lambda: f"processes left: {_left_on_nodes(nodes)}", 60)
    wait_for(lambda: nodes.job_ids() == [], "no Slurm job left", 60)


@pytest.fixture
def own_nodes() -> Iterator[SlurmCluster]:
    """A 4-node cluster of this test's own, whose node may be lost."""
    reason = slurm_unavailable_reason() or node_network_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private multi-node Slurm cluster: {reason}")
    # Not under pytest's /tmp/pytest-of-root, which munged cannot enter.
    with tempfile.TemporaryDirectory(prefix="gen3wf-lost-node-") as directory:
        cluster = SlurmCluster(directory, nodes=4, slurmd_timeout=10).start()
        try:
            yield cluster
        finally:
            cluster.stop()


def _running_on(submit_dir: str, host: str) -> list[int]:
    """Jobs whose payload said it started on ``host`` and has not ended."""
    return [
        seq
        for seq in markers.marked_jobs(submit_dir) - markers.ended_jobs(submit_dir)
        if markers.started_host(submit_dir, seq) == host
    ]


@requires_work_queue
def test_a_node_lost_mid_run(demo_repo: str, tmp_path: Path, own_nodes: SlurmCluster) -> None:
    """n3 goes away with everything on it while it runs a job: its jobs run
    again on the other nodes, the run succeeds with every output registered
    once, and the submit's summary and the report name the lost node."""
    # isr long enough that the one seen running on n3 is still running when n3 goes.
    slow = "-c isr:sleep=6 " + " ".join(f"-c {label}:sleep=1" for label in DRP_LABELS[1:3])
    # A whole node per block, three blocks: n1, n2, n3 (n4 for a replacement).
    settings = {
        **WORK_QUEUE,
        **SLURM,
        "exclusive": True,
        "nodes_per_block": 1,
        "init_blocks": 3,
        "max_blocks": 3,
    }
    bps_file = write_bps_file(tmp_path, demo_repo, settings, extraQgraphOptions=slow)
    with BackgroundBps(tmp_path, bps_file, env=own_nodes.env) as bps:
        submit_dir = wait_for_jobs(bps, "isr", JobState.RUNNING, timeout=300)
        lost = wait_for(lambda: _running_on(submit_dir, "n3"), lambda: f"a job running on n3:\n{bps.output}")
        own_nodes.kill_node("n3")
        assert bps.wait(timeout=400) == 0, bps.output
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    # Every output once: the butler refuses a second registration of one.
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)
    with JobStateStore.open(submit_dir) as store:
        again = store.attempts_of(lost)
        moved = {job.seq: job.message for job in store.jobs_by_seq(lost)}
    # Run again elsewhere: by Work Queue within the attempt (the job's note
    # says so), or, once Work Queue gave it back as lost, by the runner's
    # retry (its first attempt lost on n3).
    note = "its first host, n3, was lost; run again on n"
    for seq in lost:
        tries = again[seq]
        assert tries[-1].succeeded and tries[-1].host not in (None, "n3"), tries
        if note not in (moved[seq] or ""):
            assert len(tries) > 1 and (tries[0].host, tries[0].succeeded) == ("n3", False), (moved, tries)
    lines = [line for line in bps.output.splitlines() if line.lstrip().startswith(("NOTE ", "RETRIED "))]
    assert lines and all("n3" in line for line in lines), bps.output
    report = run_bps("report", "--id", submit_dir, cwd=tmp_path, env={**SERVICE_ENV, **own_nodes.env})
    assert all(line.strip() in report.output for line in lines), report.output
