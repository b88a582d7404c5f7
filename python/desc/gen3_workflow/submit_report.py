"""What ``bps submit`` prints when a run ends badly."""

from __future__ import annotations

from .state_store import JobState, JobStateStore

__all__ = ["MAX_LISTED", "failure_summary"]

MAX_LISTED = 20
"""Failed jobs listed one per line; the rest are counted."""


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
    store = JobStateStore.in_dir(submit_dir)
    try:
        failed = store.jobs(states=[JobState.FAILED])
        not_run = store.jobs(states=[JobState.DEP_FAIL, JobState.PENDING])
        counts = store.counts()
    finally:
        store.close()
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
        exit_code = "none" if job.exit_code is None else job.exit_code
        lines.append(
            f"  FAILED {job.label} {job.data_id} exit code {exit_code} ({job.message or 'no message'}); "
            f"log: {job.stderr}"
        )
    if len(failed) > MAX_LISTED:
        lines.append(f"  ... and {len(failed) - MAX_LISTED} more failed job(s)")
    return "\n".join(lines)
