"""ctrl_bps's retry and memory rules as the runner applies them, the memory
budget of dispatch, and the plan that carries the rules per job."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsst.ctrl.bps import GenericWorkflowJob
from synthetic import job, write_store

from desc.gen3_workflow.execution.job_io.oom import memory_cgroup, oom_kills, was_oom_kill
from desc.gen3_workflow.execution.runner.retry_rules import RetryBook, decide
from desc.gen3_workflow.execution.runner.scheduler import MemoryBudget
from desc.gen3_workflow.plan.workflow import job_resources
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import AttemptRecord, JobState, JobUpdate

# ctrl_bps's bps_defaults.yaml, as the plan stores them.
DEFAULTS = {
    "memory": 2048,
    "retries": 5,
    "retry_unless_exit": [1, 2],
    "memory_multiplier": 2.0,
    "memory_max": 491520,
}


def _job(**resources: object):
    record = job(0, "isr")
    record.resources = {**DEFAULTS, **resources}
    return record


def test_exit_codes_in_retry_unless_exit_are_not_retried() -> None:
    decision = decide(_job(), 1, None, tries=1, memory_failures=0, retries_override=None)
    assert not decision.retry and "retryUnlessExit" in decision.why_not
    # A signal kill (137 through a shell) or a lost job is retried.
    assert decide(_job(), 137, None, 1, 0, None).retry
    assert decide(_job(), None, None, 1, 0, None).retry


def test_number_of_retries_per_job_and_the_parsl_override() -> None:
    assert decide(_job(retries=2), 137, None, tries=2, memory_failures=0, retries_override=None).retry
    stop = decide(_job(retries=2), 137, None, tries=3, memory_failures=0, retries_override=None)
    assert not stop.retry and stop.why_not == "2 retries allowed (numberOfRetries)"
    # parsl_config.retries replaces numberOfRetries, both ways.
    assert not decide(_job(retries=5), 137, None, 1, 0, retries_override=0).retry
    assert decide(_job(retries=0), 137, None, 3, 0, retries_override=3).retry
    # retryUnlessExit applies under the override too.
    assert not decide(_job(), 2, None, 1, 0, retries_override=3).retry


def test_memory_failures_double_the_request_up_to_the_cap() -> None:
    book = RetryBook(None, node_memory=None)
    record = _job(memory=1000, memory_max=3000)
    memories = []
    numbers = []
    for _ in range(3):
        # The store still says 0 attempts: the book counts them itself.
        numbers.append(book.started(record))
        memories.append(book.memory(record))
        decision = book.failed(record, 137, "memory")
    assert memories == [1000, 2000, 3000] and numbers == [1, 2, 3]
    # Already at the cap: trying again cannot help.
    assert not decision.retry and "3000 MB" in decision.why_not
    book.forget(record.seq)
    assert book.memory(record) == 1000


def test_memory_failure_is_retried_even_with_an_exit_code_not_to_retry() -> None:
    # The supervisor's kill may end the payload with any code.
    decision = decide(_job(memory=1000), 1, "memory", tries=1, memory_failures=1, retries_override=None)
    assert decision.retry and decision.memory == 2000


def test_a_node_smaller_than_the_cap_caps_the_request() -> None:
    decision = decide(_job(memory=3000), 137, "memory", 1, 1, None, node_memory=4000)
    assert decision.memory == 4000
    assert not decide(_job(memory=3000), 137, "memory", 2, 2, None, node_memory=4000).retry


def test_without_a_multiplier_memory_stays_and_retries_follow_the_count() -> None:
    decision = decide(_job(memory_multiplier=None), 137, "memory", 1, 1, None)
    assert decision.retry and decision.memory is None


def test_memory_budget_holds_jobs_back_but_never_a_job_alone() -> None:
    budget = MemoryBudget(5000)
    assert budget.take(3000) and not budget.take(3000) and budget.full
    budget.give_back(3000)
    assert not budget.full and budget.take(9000)  # alone: runs
    unbounded = MemoryBudget(None)
    assert all(unbounded.take(10**6) for _ in range(3))


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"number_of_retries": 5, "retry_unless_exit": [1, 2], "memory_multiplier": 2.0},
            {"retries": 5, "retry_unless_exit": [1, 2], "memory_multiplier": 2.0, "memory_max": 491520},
        ),
        # One code, a multiplier that does not grow (ctrl_bps turns scaling
        # off), requestMemoryMax below memoryLimit.
        (
            {"retry_unless_exit": 2, "memory_multiplier": 1.0, "request_memory_max": 8000},
            {"retries": None, "retry_unless_exit": [2], "memory_multiplier": None, "memory_max": 8000},
        ),
    ],
)
def test_the_plan_stores_each_jobs_rules(values: dict, expected: dict) -> None:
    gwjob = GenericWorkflowJob("isr_1", "isr", request_memory=2048, **values)
    resources = job_resources(gwjob, memory_limit=491520)
    assert {key: resources[key] for key in expected} == expected


def test_the_store_keeps_every_attempt(tmp_path: Path) -> None:
    write_store(tmp_path, [job(0, "isr")]).close()
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        store.apply(
            [JobUpdate(0, JobState.PENDING, 1.0, 1, 137, "memory")],
            [AttemptRecord(0, 1, False, 1.0, 137, 1000, "memory")],
        )
        store.apply([JobUpdate(0, JobState.EXEC_DONE, 2.0, 2, 0)], [AttemptRecord(0, 2, True, 2.0, 0, 2000)])
        retried, count = store.retried_jobs(10)
        attempts = store.attempts_of([0])[0]
    assert count == 1 and retried[0].attempts == 2
    assert [(a.number, a.succeeded, a.exit_code, a.memory) for a in attempts] == [
        (1, False, 137, 1000),
        (2, True, 0, 2000),
    ]


def _cgroup_tree(tmp_path: Path, v1: bool, kills: int) -> tuple[Path, Path]:
    proc = tmp_path / "cgroup"
    if v1:
        proc.write_text("9:name=systemd:/\n4:memory:/slurm/job_7\n0::/\n")
        directory = tmp_path / "memory" / "slurm" / "job_7"
        directory.mkdir(parents=True)
        (directory / "memory.oom_control").write_text(f"oom_kill_disable 0\nunder_oom 0\noom_kill {kills}\n")
    else:
        proc.write_text("0::/user.slice/job_7\n")
        directory = tmp_path / "user.slice" / "job_7"
        directory.mkdir(parents=True)
        (directory / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\n")
    return proc, directory


@pytest.mark.parametrize("v1", [True, False])
def test_oom_kills_are_read_from_the_memory_cgroup(tmp_path: Path, v1: bool) -> None:
    proc, directory = _cgroup_tree(tmp_path, v1, kills=2)
    assert memory_cgroup(str(proc), str(tmp_path)) == str(directory)
    assert oom_kills(str(directory)) == 2
    # A SIGKILL while the count rose is an OOM kill; other ends are not.
    assert was_oom_kill(137, 1, str(directory)) and was_oom_kill(-9, 1, str(directory))
    assert not was_oom_kill(137, 2, str(directory))
    assert not was_oom_kill(1, 1, str(directory)) and not was_oom_kill(137, None, str(directory))
    assert memory_cgroup(str(tmp_path / "absent"), str(tmp_path)) is None
