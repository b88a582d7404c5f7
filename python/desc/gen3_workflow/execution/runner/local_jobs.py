"""Jobs the submitting process runs itself: pipetaskInit and the final job.

Each runs in a subprocess of its own session, with its output appended to
its log files, and can be stopped (a ``bps cancel`` while it runs).  The
final job runs whatever happened before it (it registers what did succeed)
unless ``finalJob.whenRun`` is ``SUCCESS``: then only after every job
succeeded, and ``bps restart`` runs it once they have.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable

from ...constants import SERVICE_VARIABLE
from ...store.job_store import JobStateStore
from ...store.records import AttemptRecord, JobKind, JobRecord, JobState, JobUpdate
from ..job_io.markers import this_host
from ..warm.local_fork import Child, ForkedJob, can_fork, runs_in_fork
from .attempts import exit_message

__all__ = ["final_job_held", "prepare_forks", "run_and_record", "run_local_job"]

_LOG = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often a running local job is asked whether it should stop."""
STOP_GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL for a local job that is stopped."""


def final_job_held(store: JobStateStore, job: JobRecord, cancelled: bool) -> str | None:
    """Why the final job must not run now, if it must not.

    With ``finalJob.whenRun: SUCCESS`` it waits until every other job has
    succeeded (and does not run after a cancel).
    """
    if job.resources.get("when_run") != "SUCCESS":
        return None
    # The store's per-label counts: no need to read the jobs themselves.
    left = sum(
        count
        for kind in (JobKind.INIT, JobKind.QUANTUM)
        for by_state in store.counts(kind).values()
        for state, count in by_state.items()
        if state != JobState.EXEC_DONE
    )
    if not left and not cancelled:
        return None
    why = "the run was cancelled" if cancelled else f"{left} job(s) did not succeed"
    return f"not run: finalJob.whenRun is SUCCESS and {why}; bps restart runs it once they have"


def prepare_forks(jobs: Iterable[JobRecord], run_dir: str) -> dict[int, ForkedJob]:
    """Forks of this process for the init and final jobs a fork can run
    (`~.local_fork.runs_in_fork`), by job ``seq``, made now, while no other
    thread runs (`~.local_fork.can_fork`): each waits for its job's turn.
    Empty if this process runs other threads."""
    if not can_fork():
        return {}
    return {job.seq: ForkedJob(job, run_dir, start=False) for job in jobs if runs_in_fork(job)}


def run_and_record(
    store: JobStateStore,
    job: JobRecord,
    should_stop: Callable[[], bool],
    fork: ForkedJob | None = None,
    started: Callable[[], None] = lambda: None,
) -> bool:
    """Run an init or final job (`run_local_job`), recording its start and
    end in the store; return whether it succeeded."""
    start = time.time()
    store.apply([JobUpdate(job.seq, JobState.RUNNING, start, attempts=job.attempts + 1)])
    stopped = False

    def stop_requested() -> bool:
        nonlocal stopped
        stopped = should_stop()
        return stopped

    exit_code, process = _run(job, stop_requested, fork, started)
    state = JobState.EXEC_DONE if exit_code == 0 else JobState.FAILED
    message = None if exit_code == 0 else "cancelled" if stopped else exit_message(exit_code)
    end = time.time()
    # A fork's resident memory counts the pages it shares with this process
    # (the GenericWorkflow's gigabytes at 10^6 jobs): its CPU time only.
    max_rss = None if process is fork else process.max_rss
    usage = (process.cpu, max_rss, start, this_host())  # it ran here, on the submitting host
    attempt = AttemptRecord(job.seq, job.attempts + 1, exit_code == 0, end, exit_code, None, message, *usage)
    store.apply([JobUpdate(job.seq, state, end, exit_code=exit_code, message=message)], [attempt])
    return exit_code == 0


def run_local_job(
    job: JobRecord,
    should_stop: Callable[[], bool] = lambda: False,
    fork: ForkedJob | None = None,
    started: Callable[[], None] = lambda: None,
) -> int:
    """Run an init or final job in a subprocess of the submitting process.

    Parameters
    ----------
    job : `JobRecord`
        The job.
    should_stop : callable, optional
        Asked every `POLL_SECONDS`; when it returns `True` the job's process
        group is terminated.
    fork : `~.local_fork.ForkedJob`, optional
        A fork of this process made for the job (`prepare_forks`), which
        runs it instead of a new process.
    started : callable, optional
        Called once the job's process is started (the runner starts parsl
        then: after the fork, never beside it).

    Returns
    -------
    exit_code : `int`
        The job's exit code (negative for a signal, as subprocess reports).
    """
    exit_code, _ = _run(job, should_stop, fork, started)
    return exit_code


def _run(
    job: JobRecord, should_stop: Callable[[], bool], fork: ForkedJob | None, started: Callable[[], None]
) -> tuple[int, ForkedJob | Child]:
    """`run_local_job`, and the process that ran the job (ended: its
    ``cpu`` and ``max_rss`` are known)."""
    os.makedirs(os.path.dirname(job.stdout), exist_ok=True)
    popen = None
    process: ForkedJob | Child
    if fork is not None:
        fork.start()
        process = fork
    else:
        command = job.command.shell()
        with open(job.stdout, "a") as out, open(job.stderr, "a") as err:
            print(f"--> executable follows <--\n{command}\n--> end executable <--", file=err, flush=True)
            # Its own session, so that stopping it reaches the butler command it starts.
            # Not marked as parsl's: the session's end must not stop the final job.
            env = {name: value for name, value in os.environ.items() if name != SERVICE_VARIABLE}
            popen = subprocess.Popen(
                ["/bin/bash", "-c", command], stdout=out, stderr=err, start_new_session=True, env=env
            )
        process = Child(popen.pid)  # reaped here, with its resource use
    started()
    while True:
        try:
            code = process.wait(timeout=POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            if should_stop():
                _LOG.warning("Stopping %s", job.name)
                code = _stop_group(process)
                break
    if popen is not None:
        popen.returncode = code  # (it must not wait for a child reaped already)
    return code, process


def _stop_group(process: ForkedJob | Child) -> int:
    """SIGTERM a local job's process group, SIGKILL it after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()
