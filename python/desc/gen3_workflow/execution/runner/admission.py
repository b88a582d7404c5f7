"""Which ready jobs go to parsl on a pass of the runner's loop, and their
records.

The scheduler says which jobs are ready, in priority order; the memory
budget how many of them fit; the store has their records.  Reading the
records of one pass's jobs with a query of their own cost a query per job
(a job ends, one goes out), and a job held back by the budget was read
again on each pass until it fitted (measured at 2x10^4 ThreadPool null
jobs: five records read per job submitted).  So the records of the next
jobs to go are read ahead, many in one query, and kept until the job goes:
at most `READ_AHEAD` plus the jobs of one pass, in proportion to what is
in flight, never to the workflow.
"""

from __future__ import annotations

from collections.abc import Callable

from ...store.job_store import JobStateStore
from ...store.records import JobRecord
from .scheduler import MemoryBudget, Scheduler

__all__ = ["READ_AHEAD", "Admission"]

READ_AHEAD = 128
"""How many more ready jobs' records to read with those a pass needs."""


class Admission:
    """Hands out ready jobs, within the memory budget, with their records.

    Parameters
    ----------
    store : `JobStateStore`
        The run's store.
    scheduler : `Scheduler`
        The run's ready jobs.
    budget : `MemoryBudget`
        The memory the jobs in flight may ask for.
    memory_of : callable
        This attempt's memory request (MB) of a job, `None` for none.
    """

    def __init__(
        self,
        store: JobStateStore,
        scheduler: Scheduler,
        budget: MemoryBudget,
        memory_of: Callable[[JobRecord], int | None],
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.budget = budget
        self.memory_of = memory_of
        self._records: dict[int, JobRecord] = {}
        """Records read ahead, of jobs not handed out yet."""

    def take(self, free: int) -> list[tuple[JobRecord, int | None]]:
        """Up to ``free`` ready jobs, highest priority first, as many as the
        memory budget holds (each with its memory request, claimed from the
        budget); those that do not fit stay ready."""
        if free <= 0 or not self.scheduler.ready or self.budget.full:
            return []
        seqs = self.scheduler.take(free)
        if any(seq not in self._records for seq in seqs):
            self._read(seqs)
        taken: list[tuple[JobRecord, int | None]] = []
        for i, seq in enumerate(seqs):
            job = self._records[seq]
            memory = self.memory_of(job)
            if not self.budget.take(memory):
                # Held back until a job in flight gives its memory back.
                for held in seqs[i:]:
                    self.scheduler.put_back(held)
                break
            del self._records[seq]
            taken.append((job, memory))
        return taken

    def _read(self, seqs: list[int]) -> None:
        """Read the records of ``seqs`` and of the next `READ_AHEAD` ready
        jobs (left ready: taken and put back, in the same order)."""
        ahead = self.scheduler.take(READ_AHEAD)
        for seq in reversed(ahead):
            self.scheduler.put_back(seq)
        if len(self._records) > 4 * READ_AHEAD:
            # Read ahead of jobs that others overtook (higher priorities
            # became ready meanwhile): read again when their turn comes.
            self._records.clear()
        wanted = [seq for seq in (*seqs, *ahead) if seq not in self._records]
        self._records.update((job.seq, job) for job in self.store.jobs_by_seq(wanted))
