"""What the runner hands out per pass: ready jobs in priority order within
the memory budget, their records read ahead once; and the batched removal
of recorded jobs' files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from desc.gen3_workflow.execution.job_io import markers
from desc.gen3_workflow.execution.runner.admission import Admission
from desc.gen3_workflow.execution.runner.routing import Lane, Router
from desc.gen3_workflow.execution.runner.scheduler import MemoryBudget, Scheduler
from desc.gen3_workflow.store.templates import edge_block


class _Store:
    """`JobStateStore.jobs_by_seq` alone, counting what it reads."""

    def __init__(self, memory: dict[int, int]) -> None:
        self.read: list[int] = []
        self.memory = memory

    def jobs_by_seq(self, seqs: list[int]) -> list[Any]:
        self.read += seqs
        return [
            SimpleNamespace(seq=seq, memory=self.memory.get(seq, 1000), label="t", resources={})
            for seq in seqs
        ]


def _lane(
    name: str, capacity: int, budget: int | None = None, worker_memory: int | None = None, labels=()
) -> Lane:
    # Neither the mode nor the submitter is used by admission.
    return Lane(name, None, None, capacity, MemoryBudget(budget), worker_memory, frozenset(labels))  # type: ignore[arg-type]


def _admission(
    lanes: list[Lane], memory: dict[int, int] | None = None, n: int = 10
) -> tuple[Admission, Scheduler, _Store]:
    # n independent jobs, ready at once, the lower seq first.
    scheduler = Scheduler([0] * n, [], edge_block([]), runnable=range(n))
    store = _Store(memory or {})
    admission = Admission(store, scheduler, Router(lanes), lambda job: job.memory)  # type: ignore[arg-type]
    return admission, scheduler, store


def _seqs(taken: list[Any]) -> list[int]:
    return [job.seq for job, _, _ in taken]


def test_records_are_read_once_and_held_back_jobs_go_first() -> None:
    lane = _lane("only", 4, budget=2500)
    admission, scheduler, store = _admission([lane])
    assert _seqs(admission.take()) == [0, 1]  # 2 x 1000 MB fit in 2500
    assert sorted(store.read) == list(range(10))  # the rest read ahead, in one query
    assert admission.take() == []  # full until memory comes back
    assert scheduler.ready + admission.held == 8
    lane.release(1000)
    assert _seqs(admission.take()) == [2]
    assert sorted(store.read) == list(range(10))  # no record read twice


def test_without_a_budget_every_free_slot_is_filled() -> None:
    lane = _lane("only", 3)
    admission, scheduler, store = _admission([lane])
    assert _seqs(admission.take()) == [0, 1, 2]
    lane.capacity = 100
    assert _seqs(admission.take()) == list(range(3, 10))
    assert scheduler.ready == 0 and admission.held == 0 and len(store.read) == 10


def test_each_job_goes_to_the_smallest_executor_it_fits() -> None:
    small, large = _lane("small", 10, worker_memory=2048), _lane("large", 10, worker_memory=8192)
    admission, _, _ = _admission([large, small], memory={3: 4000, 7: 9000})
    taken = {job.seq: lane.name for job, _, lane in admission.take()}
    assert taken == {seq: "large" if seq == 3 else "small" for seq in range(10) if seq != 7}
    ((job, memory),) = admission.unroutable  # 9000 MB: more than any takes
    assert job.seq == 7 and "largest: large, worker_memory 8192 MB" in admission.router.why_none(memory)


def test_a_full_executor_holds_its_jobs_and_not_the_others() -> None:
    small, large = _lane("small", 2, worker_memory=2048), _lane("large", 5, worker_memory=8192)
    admission, _, _ = _admission([small, large], memory={8: 4000, 9: 4000})
    taken = admission.take()
    assert [(job.seq, lane.name) for job, _, lane in taken] == [
        (0, "small"),
        (1, "small"),
        (8, "large"),
        (9, "large"),
    ]
    small.release(1000)
    assert _seqs(admission.take()) == [2]  # the first held, in priority order


def test_labels_and_compute_site_pin_a_job_until_it_outgrows_the_executor() -> None:
    small = _lane("small", 10, worker_memory=2048)
    large = _lane("large", 10, worker_memory=8192, labels=["isr"])
    router = Router([small, large])
    job = SimpleNamespace(label="isr", resources={})
    assert router.lane_for(job, 1000) is large  # type: ignore[arg-type]
    other = SimpleNamespace(label="calibrate", resources={"compute_site": "large"})
    assert router.lane_for(other, 1000) is large  # type: ignore[arg-type]
    plain = SimpleNamespace(label="calibrate", resources={"compute_site": "somewhere"})
    assert router.lane_for(plain, 1000) is small  # type: ignore[arg-type]
    # A memory-scaled retry moves on to the next that fits, and none after the largest.
    assert router.lane_for(plain, 4096) is large  # type: ignore[arg-type]
    assert router.lane_for(job, 9000) is None  # type: ignore[arg-type]
    assert router.memory_cap() == 8192


def test_one_executor_takes_every_job_whatever_it_asks() -> None:
    only = _lane("only", 10, worker_memory=None)
    assert Router([only]).lane_for(SimpleNamespace(label="x", resources={}), 10**6) is only  # type: ignore[arg-type]


def test_a_batch_of_recorded_jobs_loses_its_files_and_no_other(tmp_path: Path) -> None:
    status = tmp_path / markers.STATUS_DIR
    status.mkdir()
    for name in ("1.exit", "1.pids", "2.exit", "2.kill", "3.pids", "forked.pids"):
        (status / name).write_text("x")
    markers.clear_jobs(str(tmp_path), [1, 2, 9])
    assert sorted(p.name for p in status.iterdir()) == ["3.pids", "forked.pids"]
