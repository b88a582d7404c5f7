"""Which of a run's executors runs each attempt of a job.

A run has one executor, or several (``parsl_config.executors``), each a
`Lane` here: its submitter, how many attempts it takes at once, the memory
budget of those attempts and the largest request it takes
(``worker_memory``).  `Router.lane_for` applies the rule, per attempt:

1. a job whose task label an executor lists (``labels``), or whose
   ``computeSite`` names an executor, goes there, if its request fits;
2. otherwise, and for an attempt that outgrew that executor (a memory-
   scaled retry), the executor with the smallest ``worker_memory`` that
   holds the request; executors without one take any request, after all
   that have one, in the order written;
3. none fits: the attempt is not made (`Router.why_none`).

With one executor every attempt goes to it, whatever it asks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ...store.records import JobRecord
from ..bridge.modes import ExecutionMode
from ..bridge.submitters import Submitter
from .scheduler import MemoryBudget

__all__ = ["Lane", "Router", "router_for"]


@dataclasses.dataclass(eq=False)
class Lane:
    """One executor of the run, as the runner hands it attempts."""

    name: str
    """The executor's name (``name``, or its kind)."""
    mode: ExecutionMode
    submit: Submitter
    capacity: int
    """Most attempts in flight at once."""
    budget: MemoryBudget
    """The memory requests of its attempts in flight."""
    worker_memory: int | None
    """The largest request (MB) it takes; `None`: any."""
    labels: frozenset[str] = frozenset()
    in_flight: int = 0

    def fits(self, memory: int | None) -> bool:
        """Whether a request of ``memory`` MB is one this executor takes."""
        return self.worker_memory is None or (memory or 0) <= self.worker_memory

    def claim(self, memory: int | None) -> bool:
        """Take an attempt asking for ``memory`` MB, if there is room."""
        if self.in_flight >= self.capacity or not self.budget.take(memory):
            return False
        self.in_flight += 1
        return True

    def release(self, memory: int | None) -> None:
        """An attempt it took is concluded."""
        self.in_flight -= 1
        self.budget.give_back(memory)

    @property
    def full(self) -> bool:
        """Whether it takes no attempt now."""
        return self.in_flight >= self.capacity or self.budget.full


class Router:
    """The run's executors, and the rule that sends each attempt to one.

    Parameters
    ----------
    lanes : sequence of `Lane`
        The executors, in the order written.
    """

    def __init__(self, lanes: Sequence[Lane]) -> None:
        self.lanes = tuple(lanes)
        self.by_name = {lane.name: lane for lane in self.lanes}
        # Smallest worker_memory first; those without one last, as written.
        self._by_memory = sorted(
            self.lanes, key=lambda lane: (lane.worker_memory is None, lane.worker_memory or 0)
        )
        self._pinned = {label: lane for lane in self.lanes for label in lane.labels}

    @property
    def several(self) -> bool:
        """Whether the run has more than one executor."""
        return len(self.lanes) > 1

    def lane_for(self, job: JobRecord, memory: int | None) -> Lane | None:
        """The executor of an attempt of ``job`` asking for ``memory`` MB;
        `None` if none takes it."""
        if not self.several:
            return self.lanes[0]
        pinned = self._pinned.get(job.label) or self.by_name.get(job.resources.get("compute_site") or "")
        if pinned is not None and pinned.fits(memory):
            return pinned
        return next((lane for lane in self._by_memory if lane.fits(memory)), None)

    def memory_cap(self) -> int | None:
        """The most memory (MB) any executor gives one job (the limit of
        memory-scaled retries); `None` if unknown."""
        caps = [lane.worker_memory or lane.mode.node_memory() for lane in self.lanes]
        if any(cap is None for cap in caps):
            return None
        return max(cap for cap in caps if cap is not None)

    def why_none(self, memory: int | None) -> str:
        """Why no executor takes a request of ``memory`` MB."""
        largest = self._by_memory[-1]
        return (
            f"its memory request of {memory} MB is more than any executor takes "
            f"(largest: {largest.name}, worker_memory {largest.worker_memory} MB)"
        )

    @property
    def full(self) -> bool:
        """Whether no executor takes an attempt now."""
        return all(lane.full for lane in self.lanes)

    def free(self) -> int:
        """How many more attempts the executors take now, at most."""
        return sum(max(lane.capacity - lane.in_flight, 0) for lane in self.lanes)


def router_for(executors: Sequence[tuple[str, ExecutionMode]], submit_dir: str) -> Router:
    """The lanes of a run's executors (parsl labels and modes, as
    `~..bridge.parsl_factory.ParslRunConfig` has them)."""
    several = len(executors) > 1
    lanes = []
    for label, mode in executors:
        settings = mode.settings
        budget = MemoryBudget(mode.memory_budget() if settings.enforce_resources else None)
        lanes.append(
            Lane(
                settings.executor_name,
                mode,
                Submitter(mode, label, submit_dir),
                mode.in_flight(),
                budget,
                # One executor takes every job, whatever its worker_memory says.
                settings.worker_memory if several else None,
                frozenset(settings.labels),
            )
        )
    return Router(lanes)
