"""What ``bps submit`` prints when a run ends badly."""

from __future__ import annotations

from ..store.job_store import JobStateStore
from ..store.records import JobState
from .text import MAX_LISTED, format_failed_job

__all__ = ["failure_summary"]


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
    return "\n".join(lines)
