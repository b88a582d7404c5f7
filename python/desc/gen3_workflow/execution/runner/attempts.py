"""One try of one job, and what its end means.

The runner hands parsl one *attempt* at a time per job.  When an attempt's
task comes back (or is given up on), `outcome` decides how the job fared,
from the job's own record of its payload's end (`markers`) first and from
what parsl reports second: a payload that succeeded counts even if its task
was then lost, and a task lost before its payload ended is a failure to try
again.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterable

from parsl.app.errors import BashExitFailure
from parsl.dataflow.futures import AppFuture
from parsl.dataflow.states import States

from ...constants import CANCELLED_EXIT_CODE
from ...store.records import AttemptRecord, JobRecord
from ..job_io.markers import ExitRecord, read_start_and_first_host, started_host
from ..job_io.oom import OOM_MESSAGE, was_oom_kill

__all__ = [
    "WQ_EXHAUSTION",
    "Attempt",
    "Outcome",
    "attempt_host",
    "attempt_record",
    "exit_message",
    "log_written_since",
    "moved_note",
    "note_in_log",
    "outcome",
    "seen_running",
    "with_oom_kill",
]

WQ_EXHAUSTION = "task used more resources than requested"
"""How parsl words Work Queue's resource-exhaustion result."""


@dataclasses.dataclass(eq=False)
class Attempt:
    """A job handed to parsl, until its task comes back."""

    job: JobRecord
    number: int
    """1 for the first try, 2 for the first retry, ..."""
    future: AppFuture
    submitted: float
    launched: float | None = None
    """When parsl handed it to the executor."""
    running: float | None = None
    """When the job started, as it says (or when it was seen to)."""
    first_host: str = ""
    """The host it was first seen running on (Work Queue runs a task whose
    worker was lost again elsewhere, within the same attempt)."""
    ended: float | None = None
    """When its payload ended, if it was concluded from its job's exit
    record before its task came back (`~.in_flight.InFlight`)."""
    note: str = ""
    """What the watchdog found and did, for the job's message."""
    action: str = ""
    """What the watchdog did: ``kill`` (the task did not come back after
    its payload ended), ``stop`` (the job ran too long), ``abandon``."""
    stopped: float | None = None
    """When the watchdog stopped it (or asked it to stop)."""
    supervised: bool = False
    """Whether a job supervisor on the node watches it (and reads stop
    requests); otherwise the runner kills its processes itself."""
    memory: int | None = None
    """Its memory request (MB), if it made one."""
    oom_kills: int | None = None
    """The OOM killer's count in the runner's memory cgroup when it was
    submitted (jobs the runner's host runs unsupervised)."""
    executor: str = ""
    """The name of the executor it was handed to."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How an attempt ended."""

    succeeded: bool
    exit_code: int | None = None
    message: str | None = None
    retry: bool = False
    """Whether another attempt may help (not for a cancelled job)."""
    exceeded: str | None = None
    """The resource the job was stopped for using too much of: ``memory``
    or ``walltime``."""


def exit_message(exit_code: int) -> str:
    """Say how a job ended, naming the signal that killed it if one did.

    A process killed by signal N shows as -N to its parent (subprocess) or as
    128+N through a shell; an OOM kill is a SIGKILL.
    """
    number = -exit_code if exit_code < 0 else exit_code - 128 if 128 < exit_code < 128 + 65 else 0
    try:
        name = signal.Signals(number).name if number else None
    except ValueError:
        name = None
    if name is None:
        return f"exit code {exit_code}"
    return f"exit code {exit_code} (killed by signal {number}, {name})"


def outcome(
    attempt: Attempt, error: BaseException | None, record: ExitRecord | None, cancelled: bool
) -> Outcome:
    """Decide how an attempt ended.

    Parameters
    ----------
    attempt : `Attempt`
        The attempt.
    error : `BaseException` or `None`
        What parsl's future raised (`None` if it succeeded, or if the
        attempt was given up on before it came back).
    record : `ExitRecord` or `None`
        The job's own record of its payload's end, if it wrote one.
    cancelled : `bool`
        Whether the run was cancelled meanwhile.
    """
    note = f"; {attempt.note}" if attempt.note else ""
    if record is not None and record.code == 0 and not record.reason:
        # A job asked to stop just as it succeeded needs no explanation.
        return Outcome(True, 0, attempt.note if attempt.action in ("kill", "abandon") else None)
    if record is None and error is None and not attempt.note:
        return Outcome(True, 0)
    if cancelled:
        return Outcome(False, None if record is None else record.code, "cancelled")
    if record is not None:
        message = record.detail or exit_message(record.code)
        if record.detail and record.code:
            message = f"{exit_message(record.code)}: {record.detail}"
        exceeded = record.reason if record.reason in ("memory", "walltime") else None
        return Outcome(False, record.code, message + note, retry=True, exceeded=exceeded)
    if isinstance(error, BashExitFailure):
        code = error.exitcode
        message = "cancelled" if code == CANCELLED_EXIT_CODE and cancelled else exit_message(code)
        return Outcome(False, code, message + note, retry=True)
    if error is None:
        return Outcome(False, None, attempt.note or "no result", retry=True)
    text = f"{type(error).__name__}: {error}".strip()[:2000]
    # Work Queue's own monitor (resource_monitor: work_queue) does not say
    # which resource; memory is the one a job's request can be raised for.
    exceeded = "memory" if WQ_EXHAUSTION in text else None
    return Outcome(False, None, text + note, retry=True, exceeded=exceeded)


def attempt_host(record: ExitRecord | None, submit_dir: str, seq: int) -> str | None:
    """The host that ran an attempt of job ``seq``: as its exit record says,
    else (a task lost before its payload ended) as its started record says;
    `None` if neither does (it never started, or wrote them before hosts
    were kept).  A file read for an attempt that ended without its record,
    none otherwise."""
    if record is not None and record.host:
        return record.host
    return started_host(submit_dir, seq) or None


def moved_note(attempt: Attempt, host: str | None) -> str | None:
    """What to say of an attempt that ended on another host than the one
    it was seen starting on: its first host was lost (with its worker) and
    the executor ran the job again elsewhere; `None` if it did not move."""
    if not attempt.first_host or not host or host == attempt.first_host:
        return None
    return f"its first host, {attempt.first_host}, was lost; run again on {host}"


def attempt_record(
    attempt: Attempt, result: Outcome, record: ExitRecord | None, now: float, submit_dir: str
) -> AttemptRecord:
    """How an attempt ended, as the store keeps it.

    The payload's own start and end where the job recorded them (its
    node's clock): wall times without the time it queued; else it ended
    ``now``.  Its message says if its first host was lost under it.
    """
    job = attempt.job
    start = None if record is None else record.start
    end = now if start is None or record is None else record.time
    cpu, max_rss = (None, None) if record is None else (record.cpu, record.max_rss)
    host = attempt_host(record, submit_dir, job.seq)
    message = result.message
    if moved := moved_note(attempt, host):
        message = f"{message}; {moved}" if message else moved
    code = 0 if result.succeeded else result.exit_code
    return AttemptRecord(
        job.seq,
        attempt.number,
        result.succeeded,
        end,
        code,
        attempt.memory,
        message,
        cpu,
        max_rss,
        start,
        host,
        attempt.executor or None,
    )


def with_oom_kill(result: Outcome, attempt: Attempt) -> Outcome:
    """A SIGKILL of an unsupervised job on the runner's host while the OOM
    killer's count rose is a memory failure (supervised jobs record that
    themselves)."""
    if result.succeeded or result.exceeded or not was_oom_kill(result.exit_code, attempt.oom_kills):
        return result
    return dataclasses.replace(result, exceeded="memory", message=f"{result.message}: {OOM_MESSAGE}")


def log_written_since(path: str, since: float) -> bool:
    """parsl writes the command to a job's stderr as it starts; a write
    after the launch means this attempt is running."""
    try:
        return os.stat(path).st_mtime >= since - 1.0
    except FileNotFoundError:
        return False


def note_in_log(path: str, line: str) -> None:
    """Say in a job's log why the runner stopped it (a supervisor would)."""
    try:
        with open(path, "a") as log:
            print(line, file=log)
    except OSError:
        pass


def seen_running(attempts: Iterable[Attempt], now: float, submit_dir: str) -> list[tuple[int, float]]:
    """Note which attempts in flight started since the last look: launched
    when parsl gave the attempt to its executor; running from when the job
    says it started, on the node that runs it (`markers.write_started`: its
    wrapper, supervisor or warm runner), or, failing that, from when it was
    seen writing its log.  Returns the jobs now running, with their start.

    A look costs a file read per attempt launched but not yet running: in
    proportion to what is in flight, never to the workflow.
    """
    running = []
    for attempt in attempts:
        if attempt.running is not None:
            continue
        if attempt.launched is None:
            if attempt.future.task_record.get("status") not in (States.launched, States.running):
                continue
            attempt.launched = now
        started, attempt.first_host = read_start_and_first_host(submit_dir, attempt.job.seq)
        if started is None and log_written_since(attempt.job.stderr, attempt.launched):
            started = now
        if started is not None:
            attempt.running = started
            running.append((attempt.job.seq, started))
    return running
