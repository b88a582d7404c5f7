"""The runner's ready set: release of children, priorities, retries,
dep_fail of descendants, partial runs, and a deep chain."""

from __future__ import annotations

from desc.gen3_workflow.execution.runner.scheduler import Scheduler, with_ancestors
from desc.gen3_workflow.store.records import JobState
from desc.gen3_workflow.store.templates import edge_block

D = JobState.EXEC_DONE

# 0 init -> 1, 2 (isr) ; 1 -> 3, 2 -> 4 (calibrate) ; 3, 4 -> 5 (summary) ; 6 final.
EDGES = edge_block([(0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 5)])


def _jobs(states: dict[int, JobState], priority: dict[int, int] | None = None) -> tuple[list, list]:
    """Priorities and done jobs of the 7 jobs above."""
    return [(priority or {}).get(seq, 0) for seq in range(7)], [
        seq for seq in range(7) if states.get(seq) == D
    ]


def test_children_are_released_as_parents_succeed() -> None:
    scheduler = Scheduler(*_jobs({0: D}), EDGES, runnable=[1, 2, 3, 4, 5])
    assert scheduler.pending == 5 and scheduler.ready == 2
    assert scheduler.take(10) == [1, 2]
    assert scheduler.succeeded(1) == 1 and scheduler.take(10) == [3]
    assert scheduler.succeeded(3) == 0  # 5 still waits for 4
    assert scheduler.succeeded(2) == 1 and scheduler.take(10) == [4]
    assert scheduler.succeeded(4) == 1 and scheduler.take(1) == [5]
    assert scheduler.pending == 0 and scheduler.ready == 0


def test_priority_then_graph_order() -> None:
    scheduler = Scheduler(*_jobs({0: D}, {2: 5}), EDGES, runnable=[1, 2, 3, 4, 5])
    assert scheduler.take(1) == [2]  # the higher priority first
    assert scheduler.take(1) == [1]


def test_failure_blocks_only_pending_descendants() -> None:
    scheduler = Scheduler(*_jobs({0: D}), EDGES, runnable=[1, 2, 3, 4, 5])
    scheduler.take(2)
    assert scheduler.failed(1) == [3, 5]
    assert scheduler.pending == 1  # 4, waiting for 2
    assert scheduler.succeeded(2) == 1 and scheduler.take(5) == [4]
    assert scheduler.succeeded(4) == 0  # 5 will not run
    assert scheduler.failed(4) == []  # nothing left below it


def test_retry_puts_a_job_back() -> None:
    scheduler = Scheduler(*_jobs({0: D}), EDGES, runnable=[1, 2, 3, 4, 5])
    assert scheduler.take(1) == [1]
    scheduler.put_back(1)
    assert scheduler.pending == 5 and scheduler.take(2) == [1, 2]


def test_restart_and_partial_runs() -> None:
    # A restart: 1 and 3 succeeded before; 2 failed and is pending again.
    scheduler = Scheduler(*_jobs({0: D, 1: D, 3: D}), EDGES, runnable=[2, 4, 5])
    assert scheduler.take(10) == [2]
    # A partial run of 3 and what it needs: 5 is not this run's, so a
    # failure of 3 reports no dep_fail.
    partial = Scheduler(*_jobs({0: D}), EDGES, runnable=[1, 3])
    assert partial.take(10) == [1]
    assert partial.succeeded(1) == 1 and partial.take(10) == [3]
    assert partial.failed(3) == []


def test_deep_chain_and_wide_fan_out() -> None:
    n = 200_000  # far deeper than Python's recursion limit
    chain = edge_block((i, i + 1) for i in range(n - 1))
    scheduler = Scheduler([0] * n, [], chain, runnable=range(n))
    assert scheduler.take(5) == [0]
    assert len(scheduler.failed(0)) == n - 1 and scheduler.pending == 0
    fan = Scheduler(
        [0] * n,
        [0],
        edge_block((0, i) for i in range(1, n)),
        range(1, n),
    )
    assert fan.ready == n - 1 and len(fan.take(n)) == n - 1
    assert with_ancestors(chain, [n - 1]) == set(range(n))


def test_a_partial_run_takes_the_named_jobs_and_their_ancestors() -> None:
    assert with_ancestors(EDGES, [3]) == {0, 1, 3}
    assert with_ancestors(EDGES, [5]) == {0, 1, 2, 3, 4, 5}
    assert with_ancestors(EDGES, [4, 1]) == {0, 1, 2, 4}
    assert with_ancestors(EDGES, [6]) == {6}  # the final job: no edge at all
    assert with_ancestors(edge_block([]), [0]) == {0}
