"""The attempts handed to parsl, from submission until their tasks come back.

An attempt is *in flight* from its submission until it is concluded.  It
is usually concluded when its task comes back from the executor; but a job
whose payload succeeded says so first, in its exit record (`markers`), and
an executor may take a while to hand the task back: Work Queue's worker
starts its next task as soon as the last one's process exits, and parsl
returns that one up to a second or so later.  Concluding then would show
both jobs running on one worker.  So an attempt whose job recorded a
success is concluded from that record, and stays *returning* until its
task comes back (or the watchdog gives up on it): its files in ``status/``
stay until then, for the watchdog to kill a task that never returns.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator

from ..job_io import markers
from .attempts import Attempt

__all__ = ["InFlight"]


class InFlight:
    """The attempts of one run not yet concluded, and those returning.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory (where jobs record their ends).
    """

    def __init__(self, submit_dir: str) -> None:
        self.submit_dir = submit_dir
        self.attempts: dict[int, Attempt] = {}
        """The attempt in flight of each job (by ``seq``)."""
        self.returning: set[Attempt] = set()
        """Attempts concluded from their job's exit record whose task has
        not come back yet."""
        self._came_back: queue.SimpleQueue[Attempt] = queue.SimpleQueue()

    def __len__(self) -> int:
        return len(self.attempts)

    def add(self, attempt: Attempt) -> None:
        """Hold a submitted attempt until its task comes back."""
        self.attempts[attempt.job.seq] = attempt
        attempt.future.add_done_callback(lambda _future: self._came_back.put(attempt))

    def give_up(self, attempt: Attempt) -> None:
        """Treat an attempt the watchdog gave up on as come back."""
        self._came_back.put(attempt)

    def wait(self, timeout: float) -> None:
        """Sleep until a task comes back, at most ``timeout`` seconds."""
        try:
            self._came_back.put(self._came_back.get(timeout=timeout))
        except queue.Empty:
            pass

    def came_back(self) -> Iterator[Attempt]:
        """Yield the attempts whose tasks came back (or were given up on)
        since the last call: those in flight, for the caller to conclude
        (`conclude`), and those returning, to settle (`settle`)."""
        while True:
            try:
                attempt = self._came_back.get_nowait()
            except queue.Empty:
                return
            if attempt in self.returning or self.attempts.get(attempt.job.seq) is attempt:
                yield attempt

    def ended_by_record(self) -> Iterator[Attempt]:
        """Yield the attempts in flight whose jobs recorded a success but
        whose tasks have not come back; they are returning
        from now on.  One listing of ``status/`` (the files of the jobs in
        flight), and a read per job with an exit file (its start record
        while the bash-builtin wrapper's payload runs: no end yet)."""
        if not self.attempts:
            return
        for seq in markers.exit_files(self.submit_dir) & self.attempts.keys():
            attempt = self.attempts[seq]
            if attempt.future.done():
                continue  # concluded from parsl's answer, in `came_back`
            record = markers.read_exit(self.submit_dir, seq)
            # Only a success: a failure's retry would reuse the job's files,
            # which the watchdog needs while the failed task is returning.
            if record is not None and record.code == 0 and not record.reason:
                attempt.ended = record.time
                self.returning.add(attempt)
                yield attempt

    def conclude(self, attempt: Attempt) -> None:
        """Take an attempt out of flight (its outcome is decided)."""
        del self.attempts[attempt.job.seq]

    def settle(self, attempt: Attempt) -> None:
        """Forget a returning attempt (its task came back, or was given up on)."""
        self.returning.discard(attempt)

    def watched(self) -> list[Attempt]:
        """What the watchdog looks at: in flight, and returning."""
        return [*self.attempts.values(), *self.returning]
