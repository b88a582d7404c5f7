"""Jobs that do not come back: found, stopped, and reported.

Every `CHECK_SECONDS` the runner asks the `Watchdog` about its attempts in
flight.  Two things are looked for:

*The payload ended but the task did not come back.*  The job's own exit
record (`markers`) says when its payload ended; if the executor has not
returned the task `return_grace` seconds later (Work Queue's resource
monitor has been seen deadlocked after its child exited), the task's
processes are killed so that the executor gives it back, and the job's
record decides how it went: a payload that succeeded is not run again.

*The job runs far longer than it should.*  Past its ``requestWalltime``, or
past ``stuck_factor`` times the median time of its label's successful jobs
(and at least ``stuck_min_seconds``), the job is asked to stop; its
supervisor stops the payload and the job fails, to be retried under the
retry rules.

A task that still has not come back `return_grace` seconds after it was
stopped (its processes are out of reach, on another node) is given up on.
Time per check is proportional to the attempts in flight.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import statistics
from collections.abc import Iterable

from ...store.records import walltime_seconds
from ..job_io import markers
from ..job_io.processes import kill_job_processes
from .attempts import Attempt, note_in_log

_LOG = logging.getLogger(__name__)

__all__ = ["CHECK_SECONDS", "Action", "Watchdog"]

CHECK_SECONDS = 5.0
"""Between two checks."""
_SAMPLES = 1000
"""Successful durations kept per label for its median (the latest ones)."""
_MIN_SAMPLES = 5
"""A label's median is trusted from this many successful jobs on."""


@dataclasses.dataclass(frozen=True)
class Action:
    """What the runner should do about one attempt."""

    attempt: Attempt
    kind: str
    """``kill`` (kill the task's processes), ``stop`` (ask the job to stop)
    or ``abandon`` (stop waiting for the task)."""
    message: str


class Watchdog:
    """Finds attempts that do not come back.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory (where jobs record their ends).
    executor : `str`
        The executor's name, for messages.
    return_grace : `float`
        Seconds a task may take to come back after its payload ended.
    stuck_factor : `float`
        A job running this many times its label's median is stopped (0: never).
    stuck_min_seconds : `float`
        ... if it has run at least this long.
    """

    def __init__(
        self,
        submit_dir: str,
        executor: str,
        return_grace: float,
        stuck_factor: float,
        stuck_min_seconds: float,
    ) -> None:
        self.submit_dir = submit_dir
        self.executor = executor
        self.return_grace = return_grace
        self.stuck_factor = stuck_factor
        self.stuck_min_seconds = stuck_min_seconds
        self._durations: dict[str, collections.deque[float]] = {}
        self._medians: dict[str, float] = {}

    def succeeded(self, label: str, seconds: float) -> None:
        """Count the run time of a job that succeeded towards its label's median."""
        samples = self._durations.setdefault(label, collections.deque(maxlen=_SAMPLES))
        samples.append(seconds)
        self._medians.pop(label, None)

    def median(self, label: str) -> float | None:
        """The median run time of the label's successful jobs, once there
        are enough of them."""
        if label not in self._medians:
            samples = self._durations.get(label, ())
            if len(samples) < _MIN_SAMPLES:
                return None
            self._medians[label] = statistics.median(samples)
        return self._medians[label]

    def medians(self) -> dict[str, float]:
        """Every label's median that can be trusted."""
        return {label: m for label in self._durations if (m := self.median(label)) is not None}

    def check(self, attempts: Iterable[Attempt], now: float) -> list[Action]:
        """What to do about the attempts in flight."""
        actions = []
        for attempt in attempts:
            action = self._check_one(attempt, now)
            if action is not None:
                actions.append(action)
        return actions

    def act(self, attempts: Iterable[Attempt], now: float) -> list[Attempt]:
        """Check the attempts in flight and act on what `check` finds: kill
        a task's processes, ask a job to stop (and, where nothing on its node
        reads the request, stop it from here); return the attempts given up
        on, whose own record decides how they went."""
        abandoned = []
        for action in self.check(attempts, now):
            attempt = action.attempt
            if attempt.future.done():
                # It came back meanwhile, and its runner (a warm one is the
                # thread's, not the job's) may already serve the next job:
                # stopping it now would stop that one.  It is concluded next.
                continue
            _LOG.warning("%s: %s", attempt.job.name, action.message)
            attempt.note = f"{attempt.note}; {action.message}" if attempt.note else action.message
            attempt.action = action.kind
            attempt.stopped = now
            if action.kind == "kill":
                kill_job_processes(self.submit_dir, attempt.job.seq)
            elif action.kind == "stop":
                markers.request_kill(self.submit_dir, attempt.job.seq, action.message)
                if not attempt.supervised:  # nothing on the node reads the request
                    note_in_log(
                        attempt.job.stderr, f"gen3_workflow: the payload {action.message}; stopping it"
                    )
                    kill_job_processes(self.submit_dir, attempt.job.seq)
            else:  # abandon: out of reach; what the job recorded decides
                abandoned.append(attempt)
        return abandoned

    def _check_one(self, attempt: Attempt, now: float) -> Action | None:
        if attempt.stopped is not None:
            if now - attempt.stopped > self.return_grace:
                return Action(
                    attempt, "abandon", f"the task had not come back {self.return_grace:.0f} s after that"
                )
            return None
        if attempt.ended is not None:  # concluded: only its task is missing
            record: markers.ExitRecord | None = markers.ExitRecord(0, attempt.ended)
        else:
            record = markers.read_exit(self.submit_dir, attempt.job.seq)
        if record is not None:
            if now - record.time > self.return_grace:
                return Action(
                    attempt,
                    "kill",
                    f"payload ended with exit {record.code} but {self.executor} did not return the task "
                    f"within {self.return_grace:.0f} s; task killed",
                )
            return None
        if attempt.running is None:
            return None
        elapsed = now - attempt.running
        walltime = walltime_seconds(attempt.job.resources.get("walltime"))
        if walltime is not None and elapsed > walltime:
            return Action(attempt, "stop", f"ran past its requested walltime ({walltime:.0f} s)")
        median = self.median(attempt.job.label)
        if (
            self.stuck_factor
            and median is not None
            and elapsed > max(self.stuck_factor * median, self.stuck_min_seconds)
        ):
            return Action(
                attempt,
                "stop",
                f"ran {elapsed:.0f} s, more than {self.stuck_factor:g} times the median "
                f"({median:.1f} s) of {attempt.job.label}; stopped as stuck",
            )
        return None
