"""Which quantum jobs may start now: the ready set of a run's DAG.

The runner, not parsl, holds the DAG: parsl only ever sees jobs whose
parents have all succeeded, a bounded number at a time.  `Scheduler` keeps,
per job, how many parents have not succeeded yet, and each job's children,
in flat integer arrays (a few bytes per job and edge, whatever the size of
the run); the jobs ready to start wait in a heap ordered by ctrl_bps's
``priority`` (highest first), then by position in the graph.

Releasing the children of a job that succeeded, or marking the descendants
of a failure ``dep_fail``, costs time in proportion to those jobs only.
The walk over descendants is iterative: graph depth never meets Python's
recursion limit.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ...store.records import JobKind, JobState

if TYPE_CHECKING:
    from ...store.job_store import JobStateStore

__all__ = ["MemoryBudget", "Scheduler", "has_pending_quanta", "scheduler_for", "with_ancestors"]

_PENDING, _ACTIVE, _DONE, _BLOCKED = 0, 1, 2, 3
"""What the scheduler knows of a job: waits, is handed out (or retried),
succeeded, or will not run (failed, dep_fail, or not this run's)."""


class Scheduler:
    """The ready set of the quantum jobs of one run.

    Parameters
    ----------
    priorities : sequence of `int`
        Every job's priority, by ``seq`` (init and final jobs included, as
        the store numbers them).
    done : iterable of `int`
        The jobs that succeeded; any job neither done nor ``runnable``
        (failed, dep_fail, not this run's) blocks its descendants.
    edges : (sequence of `int`, sequence of `int`)
        The parents' and the children's ``seq``, pair by pair (the store's
        `~desc.gen3_workflow.store.templates.EdgeBlock`).
    runnable : iterable of `int`
        The jobs this run may start (pending quantum jobs, possibly only a
        chosen subset).
    """

    def __init__(
        self,
        priorities: Sequence[int],
        done: Iterable[int],
        edges: tuple[Sequence[int], Sequence[int]],
        runnable: Iterable[int],
    ) -> None:
        # (Arrays throughout: at 10^6 jobs, a Python loop per job was seconds.)
        self._priority = np.asarray(priorities, dtype=np.int64)
        size = len(self._priority)
        self._status = np.full(size, _BLOCKED, dtype=np.int8)
        self._status[np.fromiter(done, dtype=np.int64)] = _DONE
        parents, children = (np.asarray(seqs, dtype=np.int64) for seqs in edges)
        # Children of each job: _children[_start[p]:_start[p + 1]].
        children_of, self._start = _grouped(parents, children, size)
        self._children = children_of.astype(np.int32)
        # Parents that have not succeeded, per job.
        self._waiting = np.bincount(children[self._status[parents] != _DONE], minlength=size).astype(np.int32)
        self._ready: list[tuple[int, int]] = []
        self._status[np.fromiter(runnable, dtype=np.int64)] = _PENDING
        self._pending = int(np.count_nonzero(self._status == _PENDING))
        for ready in np.flatnonzero((self._status == _PENDING) & (self._waiting == 0)):
            self._push(int(ready))

    def _push(self, seq: int) -> None:
        heapq.heappush(self._ready, (-int(self._priority[seq]), seq))

    @property
    def ready(self) -> int:
        """How many jobs could start now."""
        return len(self._ready)

    @property
    def pending(self) -> int:
        """Jobs still to hand out (ready or waiting for parents)."""
        return self._pending

    def take(self, count: int) -> list[int]:
        """Hand out up to ``count`` ready jobs, highest priority first."""
        taken: list[int] = []
        while self._ready and len(taken) < count:
            _, seq = heapq.heappop(self._ready)
            self._status[seq] = _ACTIVE
            self._pending -= 1
            taken.append(seq)
        return taken

    def put_back(self, seq: int) -> None:
        """A job handed out is to be tried again: ready at once."""
        self._status[seq] = _PENDING
        self._pending += 1
        self._push(seq)

    def succeeded(self, seq: int) -> int:
        """Record a success; return how many children became ready."""
        self._status[seq] = _DONE
        released = 0
        for child in self._children[self._start[seq] : self._start[seq + 1]]:
            self._waiting[child] -= 1
            if self._waiting[child] == 0 and self._status[child] == _PENDING:
                self._push(int(child))
                released += 1
        return released

    def failed(self, seq: int) -> list[int]:
        """Record a failure; return its pending descendants, which now will
        not run (``dep_fail``).  Only those are visited: a descendant already
        blocked by an earlier failure has had its own descendants blocked."""
        self._status[seq] = _BLOCKED
        lost = []
        stack = [seq]
        while stack:
            parent = stack.pop()
            for child in self._children[self._start[parent] : self._start[parent + 1]]:
                child = int(child)
                if self._status[child] == _PENDING:
                    self._status[child] = _BLOCKED
                    self._pending -= 1
                    lost.append(child)
                    stack.append(child)
        return lost


def _grouped(keys: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``values`` grouped by ``keys`` (compressed sparse rows): the values
    of key ``k`` are ``grouped[start[k]:start[k + 1]]``, for keys below
    ``size``.  Two arrays, however many keys: not a list per job."""
    order = np.argsort(keys, kind="stable")
    return values[order], np.searchsorted(keys[order], np.arange(size + 1)).astype(np.int64)


def with_ancestors(edges: tuple[Sequence[int], Sequence[int]], seqs: Iterable[int]) -> set[int]:
    """The jobs ``seqs`` and every job they descend from.

    Parameters
    ----------
    edges : (sequence of `int`, sequence of `int`)
        The parents' and the children's ``seq``, pair by pair.
    seqs : iterable of `int`
        The jobs whose ancestors are wanted.

    Returns
    -------
    selected : `set` [`int`]
        Those jobs and their ancestors.  The walk is iterative and visits
        only them, over the edges grouped by child.
    """
    parents, children = (np.asarray(values, dtype=np.int64) for values in edges)
    todo = list(seqs)
    size = 1 + max(todo + [int(children.max(initial=-1)), int(parents.max(initial=-1))])
    parents_of, start = _grouped(children, parents, size)
    selected: set[int] = set()
    while todo:
        seq = todo.pop()
        if seq not in selected:
            selected.add(seq)
            todo.extend(parents_of[start[seq] : start[seq + 1]].tolist())
    return selected


def scheduler_for(store: JobStateStore, selected: set[int] | None = None) -> Scheduler:
    """The ready set of a run's pending quantum jobs (only ``selected``
    ones, if given), from its store's states and edges."""
    runnable: Iterable[int] = store.seqs(kind=JobKind.QUANTUM, states=[JobState.PENDING])
    if selected is not None:
        runnable = [seq for seq in runnable if seq in selected]
    done = store.seqs(states=[JobState.EXEC_DONE])
    return Scheduler(store.priorities(), done, store.edge_arrays(), runnable)


def has_pending_quanta(store: JobStateStore, selected: set[int] | None = None) -> bool:
    """Whether any quantum job is left to run (cheap: per-label counts)."""
    if selected is not None:
        return bool(selected)
    return any(counts[JobState.PENDING] for counts in store.counts(JobKind.QUANTUM).values())


class MemoryBudget:
    """The memory requests of the jobs in flight, held within a budget.

    For executors that do not pack jobs by memory themselves (ThreadPool,
    HighThroughput): a job waits until what the jobs in flight asked for,
    plus its own request, fits in the budget; a job alone is never held
    back, so that one asking for more than the budget still runs.

    Parameters
    ----------
    total : `int` or `None`
        The budget (MB); `None` for none.
    """

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.used = 0
        self.full = False
        """Whether a job was held back since memory was last given back."""

    def take(self, memory: int | None) -> bool:
        """Claim ``memory`` MB for a job, if it fits (else mark the budget full)."""
        if self.total is not None and self.used and self.used + (memory or 0) > self.total:
            self.full = True
            return False
        self.used += memory or 0
        return True

    def give_back(self, memory: int | None) -> None:
        """A job that claimed ``memory`` MB has ended."""
        self.used -= memory or 0
        self.full = False
