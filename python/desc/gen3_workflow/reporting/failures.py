"""What ``bps submit`` prints when a run ends badly, and the jobs that
needed more than one attempt (for every report)."""

from __future__ import annotations

from ..store.job_store import JobStateStore
from ..store.records import JobKind, JobState
from .text import MAX_LISTED, format_attempts, format_failed_job

__all__ = ["failure_summary", "final_job_notes", "retried_lines"]


def final_job_notes(store: JobStateStore, states: list[JobState]) -> list[str]:
    """One line per final job in these states that says why (e.g. held
    back by ``finalJob.whenRun: SUCCESS``)."""
    return [
        f"{job.name} {job.state.value}: {job.message}"
        for job in store.jobs(kind=JobKind.FINAL, states=states)
        if job.message
    ]


def retried_lines(store: JobStateStore) -> list[str]:
    """One line per job that took more than one attempt (at most
    `MAX_LISTED`, then a count): each attempt's exit code and memory
    request."""
    retried, count = store.retried_jobs(MAX_LISTED)
    attempts = store.attempts_of([job.seq for job in retried])
    lines = [format_attempts(job, attempts.get(job.seq, [])) for job in retried]
    if count > len(retried):
        lines.append(f"... and {count - len(retried)} more job(s) tried more than once")
    return lines


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
        log file), at most `MAX_LISTED` of them.
    """
    with JobStateStore.open(submit_dir) as store:
        failed = store.jobs(states=[JobState.FAILED])
        not_run = store.jobs(states=[JobState.DEP_FAIL, JobState.PENDING])
        counts = store.counts()
        retried = retried_lines(store)
        finals = final_job_notes(store, [JobState.DEP_FAIL])  # a failed one is listed with the failures
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
        lines.append("  " + format_failed_job(job.label, job.data_id, job.exit_code, job.message, job.stderr))
    if len(failed) > MAX_LISTED:
        lines.append(f"  ... and {len(failed) - MAX_LISTED} more failed job(s)")
    lines.extend("  " + line for line in finals)
    lines.extend("  " + line for line in retried)
    return "\n".join(lines)
