"""What the runner hands out per pass: ready jobs in priority order within
the memory budget, their records read ahead once; and the batched removal
of recorded jobs' files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from desc.gen3_workflow.execution.job_io import markers
from desc.gen3_workflow.execution.runner.admission import Admission
from desc.gen3_workflow.execution.runner.scheduler import MemoryBudget, Scheduler
from desc.gen3_workflow.store.templates import edge_block


class _Store:
    """`JobStateStore.jobs_by_seq` alone, counting what it reads."""

    def __init__(self) -> None:
        self.read: list[int] = []

    def jobs_by_seq(self, seqs: list[int]) -> list[Any]:
        self.read += seqs
        return [SimpleNamespace(seq=seq, memory=1000) for seq in seqs]


def _admission(budget: int | None) -> tuple[Admission, Scheduler, _Store]:
    # 10 independent jobs, ready at once, the lower seq first.
    scheduler = Scheduler([0] * 10, [], edge_block([]), runnable=range(10))
    store = _Store()
    admission = Admission(store, scheduler, MemoryBudget(budget), lambda job: job.memory)  # type: ignore[arg-type]
    return admission, scheduler, store


def test_records_are_read_once_and_held_back_jobs_stay_ready() -> None:
    admission, scheduler, store = _admission(2500)
    assert [job.seq for job, memory in admission.take(4)] == [0, 1]  # 2 x 1000 MB fit in 2500
    assert sorted(store.read) == list(range(10))  # the rest read ahead, in one query
    assert scheduler.ready == 8 and admission.take(4) == []  # full until memory comes back
    admission.budget.give_back(1000)
    assert [job.seq for job, _ in admission.take(4)] == [2]
    assert sorted(store.read) == list(range(10))  # no record read twice


def test_without_a_budget_every_free_slot_is_filled() -> None:
    admission, scheduler, store = _admission(None)
    assert [job.seq for job, _ in admission.take(3)] == [0, 1, 2]
    assert [job.seq for job, _ in admission.take(100)] == list(range(3, 10))
    assert scheduler.ready == 0 and len(store.read) == 10


def test_a_batch_of_recorded_jobs_loses_its_files_and_no_other(tmp_path: Path) -> None:
    status = tmp_path / markers.STATUS_DIR
    status.mkdir()
    for name in ("1.exit", "1.pids", "2.exit", "2.kill", "3.pids", "forked.pids"):
        (status / name).write_text("x")
    markers.clear_jobs(str(tmp_path), [1, 2, 9])
    assert sorted(p.name for p in status.iterdir()) == ["3.pids", "forked.pids"]
