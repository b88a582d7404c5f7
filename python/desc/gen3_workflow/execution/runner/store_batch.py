"""What the runner writes to the store, in batches.

Only the submitting thread writes, once per pass of its loop: state
changes, the attempts that ended, and, once the store says a job succeeded,
the removal of that job's files in ``status/`` (a ``kill -9`` in between
must not make a restart run it again).
"""

from __future__ import annotations

from collections.abc import Iterable

from ...store.job_store import JobStateStore
from ...store.records import AttemptRecord, JobUpdate
from ..job_io import markers

__all__ = ["StoreBatch"]


class StoreBatch:
    """State changes and attempt records of one run, written together.

    Parameters
    ----------
    store : `JobStateStore`
        The run's store, open for writing.
    submit_dir : `str`
        The run's submit directory.
    """

    def __init__(self, store: JobStateStore, submit_dir: str) -> None:
        self.store = store
        self.submit_dir = submit_dir
        self._updates: list[JobUpdate] = []
        self._ended: list[AttemptRecord] = []
        self._succeeded: list[int] = []

    def record(self, updates: JobUpdate | Iterable[JobUpdate]) -> None:
        """Add state changes."""
        if isinstance(updates, JobUpdate):
            self._updates.append(updates)
        else:
            self._updates.extend(updates)

    def ended(self, attempt: AttemptRecord) -> None:
        """Add an attempt that ended."""
        self._ended.append(attempt)

    def succeeded(self, seq: int) -> None:
        """A job whose files go once its success is in the store."""
        self._succeeded.append(seq)

    def flush(self) -> None:
        """Write what was added."""
        # A job that ends within one batch must not be left 'running' by a
        # start recorded in the same batch: final states are written last.
        if self._updates or self._ended:
            self.store.apply(sorted(self._updates, key=lambda u: u.state.is_final), self._ended)
            self._updates = []
            self._ended = []
        markers.clear_jobs(self.submit_dir, self._succeeded)
        self._succeeded = []
