"""The ways of running a job, from the settings alone: where warm runners
live, what holds memory, how many jobs run at once, what ping needs."""

from __future__ import annotations

import os

import psutil
import pytest

from desc.gen3_workflow.execution.bridge.availability import launch_problem, launcher_description
from desc.gen3_workflow.execution.bridge.modes import (
    MODES,
    HighThroughputMode,
    MemoryEnforcement,
    RunnerPlace,
    ThreadPoolMode,
    WorkQueueMode,
    mode_for,
)
from desc.gen3_workflow.settings.parsl_section import EXECUTORS, ParslSettings

MACHINE_MB = int(psutil.virtual_memory().total / 2**20)
CORES = os.cpu_count() or 1


def _mode(**section: object):
    return mode_for(ParslSettings.from_mapping(section))


def test_every_executor_has_one_mode() -> None:
    assert sorted(MODES) == sorted(EXECUTORS)
    assert {type(_mode(executor=name)) for name in EXECUTORS} == {
        ThreadPoolMode,
        HighThroughputMode,
        WorkQueueMode,
    }


@pytest.mark.parametrize(
    ("section", "place", "relays", "remote", "here"),
    [
        ({"executor": "ThreadPool"}, RunnerPlace.THIS_PROCESS, False, False, False),
        ({"executor": "ThreadPool", "execution": "process"}, RunnerPlace.NONE, False, False, False),
        ({"executor": "HighThroughput"}, RunnerPlace.EACH_NODE, True, False, True),
        ({"executor": "HighThroughput", "execution": "process"}, RunnerPlace.NONE, False, False, False),
        ({"executor": "HighThroughput", "provider": "Slurm"}, RunnerPlace.EACH_WORKER, False, True, False),
        ({"executor": "WorkQueue"}, RunnerPlace.EACH_NODE, False, True, True),
        ({"executor": "WorkQueue", "provider": "Slurm"}, RunnerPlace.EACH_NODE, False, True, False),
        ({"executor": "WorkQueue", "execution": "process"}, RunnerPlace.NONE, False, True, False),
    ],
)
def test_where_warm_runners_live(
    section: dict[str, object], place: RunnerPlace, relays: bool, remote: bool, here: bool
) -> None:
    mode = _mode(**section)
    assert mode.warm_runner is place
    assert mode.relays_locally is relays
    assert mode.remote is remote
    assert mode.node_runner_here is here


def test_how_many_jobs_run_at_once() -> None:
    assert _mode(executor="ThreadPool", max_threads=3).worker_slots() == 3
    assert _mode(executor="WorkQueue", worker_options="--cores=8", nodes_per_block=10).worker_slots() == 80
    assert _mode(executor="WorkQueue", nodes_per_block=2, max_blocks=3).worker_slots() == 6 * CORES
    htex = _mode(executor="HighThroughput", provider="Slurm", cores_per_node=64, cores_per_worker=2.0)
    assert htex.worker_slots() == 32
    assert _mode(executor="HighThroughput", max_workers=5, nodes_per_block=4).worker_slots() == 20
    # What the runner hands parsl at once: twice that, at least 16, or max_in_flight.
    assert _mode(executor="ThreadPool", max_threads=3).in_flight() == 16
    assert _mode(executor="WorkQueue", worker_options="--cores=8", nodes_per_block=10).in_flight() == 160
    assert _mode(executor="ThreadPool", max_in_flight=5).in_flight() == 5


def test_memory_of_a_node_and_the_runners_budget() -> None:
    assert _mode(executor="ThreadPool").node_memory() == MACHINE_MB
    assert _mode(executor="ThreadPool").memory_budget() == MACHINE_MB
    wq = _mode(executor="WorkQueue", worker_options="--memory=90000", nodes_per_block=10)
    assert wq.node_memory() == 90000 and wq.memory_budget() is None  # Work Queue packs by the requests
    assert _mode(executor="WorkQueue").node_memory() == MACHINE_MB
    assert _mode(executor="WorkQueue", provider="Slurm", mem_per_node=16).node_memory() == 16 * 1024
    slurm = _mode(
        executor="HighThroughput", provider="Slurm", mem_per_node=4, nodes_per_block=2, max_blocks=3
    )
    assert slurm.node_memory() == 4096 and slurm.memory_budget() == 4096 * 6
    assert _mode(executor="HighThroughput", provider="Slurm").memory_budget() is None
    assert _mode(executor="HighThroughput").memory_budget() == MACHINE_MB


@pytest.mark.parametrize(
    ("section", "enforcement", "supervisor", "runner"),
    [
        ({"executor": "WorkQueue"}, MemoryEnforcement.SUPERVISOR, True, True),
        (
            {"executor": "WorkQueue", "resource_monitor": "work_queue"},
            MemoryEnforcement.WORK_QUEUE,
            False,
            True,
        ),
        ({"executor": "WorkQueue", "enforce_resources": False}, MemoryEnforcement.NONE, False, False),
        ({"executor": "ThreadPool"}, MemoryEnforcement.BUDGET, False, False),
        ({"executor": "HighThroughput", "enforce_resources": False}, MemoryEnforcement.NONE, False, False),
    ],
)
def test_what_holds_a_job_to_its_memory(
    section: dict[str, object], enforcement: MemoryEnforcement, supervisor: bool, runner: bool
) -> None:
    mode = _mode(**section)
    assert mode.memory_enforcement is enforcement
    assert mode.supervisor_memory() is supervisor
    assert mode.node_runner_memory() is runner


def test_which_process_jobs_run_under_the_supervisor() -> None:
    # Out of the runner's reach, held to memory or to a walltime: the supervisor.
    assert _mode(executor="WorkQueue", execution="process").supervises(None)
    assert _mode(executor="HighThroughput", provider="Slurm", execution="process").supervises(None)
    local = _mode(executor="HighThroughput", execution="process")
    assert not local.supervises(None) and local.supervises(60.0)
    assert not _mode(executor="ThreadPool", execution="process").supervises(None)


def test_what_ping_needs_and_reports() -> None:
    assert _mode(executor="ThreadPool").needs() == ()
    assert _mode(executor="WorkQueue").needs() == ("work_queue",)
    assert _mode(executor="WorkQueue", provider="Slurm").needs() == ("work_queue", "slurm")
    assert _mode(executor="HighThroughput", provider="Slurm").needs() == ("high_throughput", "slurm")
    assert _mode(executor="ThreadPool", provider="Slurm").site == "Local"
    assert _mode(executor="HighThroughput", provider="Slurm").site == "Slurm"
    assert _mode(executor="WorkQueue").takes_resource_spec and not _mode().takes_resource_spec


def test_srun_blocks_of_the_local_provider_need_an_allocation() -> None:
    walkthrough = ParslSettings.from_mapping({"executor": "WorkQueue", "nodes_per_block": 10})
    assert "needs a Slurm allocation" in (launch_problem(walkthrough, environ={}) or "")
    assert launch_problem(walkthrough, environ={"SLURM_JOB_ID": "42"}) is None  # inside salloc/sbatch
    assert launcher_description(walkthrough) == "srun starts a worker on each of 10 node(s) of this machine"
    single = ParslSettings.from_mapping(
        {"executor": "WorkQueue", "nodes_per_block": 10, "launcher": "Single"}
    )
    assert launch_problem(single, environ={}) is None
    # Slurm's own blocks are allocations; ThreadPool and HighThroughput's relay start no blocks.
    for section in (
        {"executor": "HighThroughput", "provider": "Slurm", "nodes_per_block": 3},
        {"executor": "ThreadPool", "nodes_per_block": 3},
        {"executor": "HighThroughput", "nodes_per_block": 3},
    ):
        assert launch_problem(ParslSettings.from_mapping(section), environ={}) is None
    assert launcher_description(ParslSettings.from_mapping({"executor": "ThreadPool"})) is None
