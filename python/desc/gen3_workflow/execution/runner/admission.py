"""Which ready jobs go to parsl on a pass of the runner's loop, and their
records.

The scheduler says which jobs are ready, in priority order; the router
which executor takes each (`~.routing`), and that executor's slots and
memory budget whether it fits now; the store has their records.  Reading the
records of one pass's jobs with a query of their own cost a query per job
(a job ends, one goes out), and a job held back by the budget was read
again on each pass until it fitted (measured at 2x10^4 ThreadPool null
jobs: five records read per job submitted).  So the records of the next
jobs to go are read ahead, many in one query, and kept until the job goes:
at most `READ_AHEAD` plus the jobs of one pass, in proportion to what is
in flight, never to the workflow.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from ...store.job_store import JobStateStore
from ...store.records import JobRecord
from .routing import Lane, Router
from .scheduler import Scheduler

__all__ = ["MOST_HELD", "READ_AHEAD", "Admission"]

READ_AHEAD = 128
"""How many more ready jobs' records to read with those a pass needs."""

MOST_HELD = 4 * READ_AHEAD
"""Most jobs held for an executor without room, in all."""


class Admission:
    """Hands out ready jobs, each to the executor that takes it, as many as
    the executors have room for, with their records.

    A job whose executor has no room now is held (in priority order, per
    executor) and goes first when that executor has room again, while the
    jobs of other executors go on; at most `MOST_HELD` are held in all, so
    what the runner keeps is bounded by what is in flight.

    Parameters
    ----------
    store : `JobStateStore`
        The run's store.
    scheduler : `Scheduler`
        The run's ready jobs.
    router : `~.routing.Router`
        The run's executors.
    memory_of : callable
        This attempt's memory request (MB) of a job, `None` for none.
    """

    def __init__(
        self,
        store: JobStateStore,
        scheduler: Scheduler,
        router: Router,
        memory_of: Callable[[JobRecord], int | None],
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.router = router
        self.memory_of = memory_of
        self._records: dict[int, JobRecord] = {}
        """Records read ahead, of jobs not handed out yet."""
        self._held: dict[str, collections.deque[tuple[JobRecord, int | None]]] = {
            lane.name: collections.deque() for lane in router.lanes
        }
        self.unroutable: list[tuple[JobRecord, int | None]] = []
        """Jobs no executor takes (see `~.routing.Router.why_none`), for the
        runner to fail."""

    @property
    def held(self) -> int:
        """Jobs taken from the scheduler, waiting for their executor."""
        return sum(len(held) for held in self._held.values())

    def take(self) -> list[tuple[JobRecord, int | None, Lane]]:
        """Ready jobs for the executors with room, highest priority first
        within each, each with its memory request (claimed from its
        executor's budget) and its executor."""
        taken: list[tuple[JobRecord, int | None, Lane]] = []
        for lane in self.router.lanes:
            held = self._held[lane.name]
            while held and lane.claim(held[0][1]):
                job, memory = held.popleft()
                taken.append((job, memory, lane))
        while self.scheduler.ready and not self.router.full and self.held < MOST_HELD:
            seqs = self.scheduler.take(max(self.router.free(), 1))
            if any(seq not in self._records for seq in seqs):
                self._read(seqs)
            for seq in seqs:
                job = self._records.pop(seq)
                memory = self.memory_of(job)
                route = self.router.lane_for(job, memory)
                if route is None:
                    self.unroutable.append((job, memory))
                elif not self._held[route.name] and route.claim(memory):
                    taken.append((job, memory, route))
                else:
                    # Until a job in flight on that executor gives room back.
                    self._held[route.name].append((job, memory))
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
