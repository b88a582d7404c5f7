"""What ``bps submit`` prints when a run ends badly, and the jobs that
needed more than one attempt (for every report)."""

from __future__ import annotations

import os
import re

from ..store.job_store import JobStateStore
from ..store.records import JobKind, JobState
from .text import MAX_LISTED, format_attempts, format_failed_job

__all__ = [
    "failure_summary",
    "final_job_notes",
    "first_error",
    "last_hosts",
    "noted_lines",
    "retried_lines",
    "tried_again_lines",
]

_TAIL_BYTES = 1 << 20
"""How much of the end of a job's log `first_error` reads."""
_ATTEMPT_START = re.compile(r"^--> (?:in-process execution|executable) follows <--$", re.MULTILINE)
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Failure): .+$", re.MULTILINE)
_MOST_CHARACTERS = 400


def final_job_notes(store: JobStateStore, states: list[JobState]) -> list[str]:
    """One line per final job in these states that says why (e.g. held
    back by ``finalJob.whenRun: SUCCESS``)."""
    return [
        f"{job.name} {job.state.value}: {job.message}"
        for job in store.jobs(kind=JobKind.FINAL, states=states)
        if job.message
    ]


def last_hosts(store: JobStateStore, seqs: list[int]) -> dict[int, str]:
    """The host the last attempt of each of these jobs ran on, for those
    whose last attempt recorded one (the jobs a report lists: a read in
    proportion to them)."""
    found = store.attempts_of(seqs)
    return {seq: tries[-1].host for seq, tries in found.items() if tries and tries[-1].host}


def retried_lines(store: JobStateStore) -> list[str]:
    """One line per job that took more than one attempt (at most
    `MAX_LISTED`, then a count): each attempt's exit code and memory
    request, and the host it ran on."""
    retried, count = store.retried_jobs(MAX_LISTED)
    attempts = store.attempts_of([job.seq for job in retried])
    lines = [format_attempts(job, attempts.get(job.seq, [])) for job in retried]
    if count > len(retried):
        lines.append(f"... and {count - len(retried)} more job(s) tried more than once")
    return lines


def noted_lines(store: JobStateStore) -> list[str]:
    """One line per job that succeeded with a note (at most `MAX_LISTED`,
    then a count): its first host lost under it and the job run again
    elsewhere, or its task killed by the watchdog after its payload ended."""
    noted, count = store.noted_jobs(MAX_LISTED)
    lines = [f"NOTE {job.label} {job.data_id} succeeded: {job.message}; log: {job.stderr}" for job in noted]
    if count > len(noted):
        lines.append(f"... and {count - len(noted)} more job(s) that succeeded with a note")
    return lines


def tried_again_lines(store: JobStateStore) -> list[str]:
    """What went wrong on the way even where it ended well: the jobs tried
    more than once (`retried_lines`), then those that succeeded with a note
    (`noted_lines`)."""
    return retried_lines(store) + noted_lines(store)


def first_error(log: str) -> str | None:
    """What went wrong in a job's last attempt, in the payload's words: the
    first ``ERROR`` line its log has after the attempt's start (the
    middleware's, e.g. "Execution of task 'isr' on quantum ... failed.
    Exception ValueError: ..."), else the last exception line of a
    traceback; `None` if the log says neither (or cannot be read).

    Parameters
    ----------
    log : `str`
        The job's stderr log (every attempt appends to it).
    """
    try:
        with open(log, "rb") as fh:
            fh.seek(max(os.fstat(fh.fileno()).st_size - _TAIL_BYTES, 0))
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    starts = list(_ATTEMPT_START.finditer(text))
    last = text[starts[-1].end() :] if starts else text
    for line in last.splitlines():
        if line.startswith("ERROR "):
            # The LSST log format: "ERROR <time> <logger> (<quantum>)(<file>:<line>) - <message>".
            message = line.split(" - ", 1)[-1]
            return message[:_MOST_CHARACTERS]
    exceptions = _EXCEPTION.findall(last)
    return exceptions[-1][:_MOST_CHARACTERS] if exceptions else None


def failure_summary(submit_dir: str) -> str:
    """Describe the jobs of a run that did not succeed.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.

    Returns
    -------
    text : `str`
        Counts per label, then each failed job (label, data ID, exit code,
        the host it last ran on, log file, and the error its log gives, see
        `first_error`), at most `MAX_LISTED` of them.
    """
    with JobStateStore.open(submit_dir) as store:
        failed = store.jobs(states=[JobState.FAILED])
        not_run = store.jobs(states=[JobState.DEP_FAIL, JobState.PENDING])
        counts = store.counts()
        retried = tried_again_lines(store)
        finals = final_job_notes(store, [JobState.DEP_FAIL])  # a failed one is listed with the failures
        hosts = last_hosts(store, [job.seq for job in failed[:MAX_LISTED]])
    lines = [
        f"Run in {submit_dir} did not succeed: {len(failed)} job(s) failed, {len(not_run)} could not run."
    ]
    for label, by_state in counts.items():
        bad = by_state[JobState.FAILED] + by_state[JobState.DEP_FAIL] + by_state[JobState.PENDING]
        if bad:
            lines.append(
                f"  {label}: {by_state[JobState.EXEC_DONE]} succeeded, {by_state[JobState.FAILED]} failed, "
                f"{by_state[JobState.DEP_FAIL] + by_state[JobState.PENDING]} not run"
            )
    for job in failed[:MAX_LISTED]:
        line = format_failed_job(
            job.label, job.data_id, job.exit_code, job.message, job.stderr, host=hosts.get(job.seq)
        )
        lines.append("  " + line)
        if (error := first_error(job.stderr)) is not None:
            lines.append(f"    error: {error}")
    if len(failed) > MAX_LISTED:
        lines.append(f"  ... and {len(failed) - MAX_LISTED} more failed job(s)")
    lines.extend("  " + line for line in finals)
    lines.extend("  " + line for line in retried)
    return "\n".join(lines)
