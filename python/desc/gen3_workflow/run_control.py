"""Cancelling a run that another process is executing.

``bps cancel`` cannot reach into the submitting process, so the two talk
through files in the submit directory (shared with every worker):

1. the canceller writes `CANCEL_REQUEST` and waits for it to vanish;
2. the runner, at its next poll, removes it and writes `CANCELLED_MARK`;
   every job command starts by checking that mark, so jobs that parsl or a
   worker still holds exit at once (status 143) instead of starting;
3. the runner kills the processes of jobs already running, found by the
   ``GEN3WF_RUN_DIR`` variable each job exports, shuts parsl down (which
   cancels Slurm blocks and stops Work Queue workers) and runs the final job.
"""

from __future__ import annotations

import os
import shlex
import time

from .processes import kill_processes
from .run_index import submitter_alive
from .state_store import JobStateStore, RunState

__all__ = [
    "CANCELLED_MARK",
    "CANCEL_REQUEST",
    "RUN_DIR_VARIABLE",
    "job_prefix",
    "kill_run_processes",
    "request_cancel",
]

CANCEL_REQUEST = "cancel.request"
CANCELLED_MARK = "cancelled.mark"
RUN_DIR_VARIABLE = "GEN3WF_RUN_DIR"
CANCELLED_EXIT_CODE = 143  # what a job killed by SIGTERM reports


def job_prefix(submit_dir: str) -> str:
    """Shell text put before every job command of a run."""
    quoted = shlex.quote(submit_dir)
    return (
        f"export {RUN_DIR_VARIABLE}={quoted}; "
        f'[ ! -e "${RUN_DIR_VARIABLE}"/{CANCELLED_MARK} ] || exit {CANCELLED_EXIT_CODE}; '
    )


def _run_processes(submit_dir: str) -> list[int]:
    """Pids of this machine's processes that belong to jobs of the run."""
    needle = f"{RUN_DIR_VARIABLE}={submit_dir}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                variables = fh.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if needle in variables:
            pids.append(int(entry))
    return pids


def kill_run_processes(submit_dir: str, grace: float = 3.0) -> int:
    """Terminate every local process of the run's jobs.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    grace : `float`
        Seconds between SIGTERM and SIGKILL.

    Returns
    -------
    count : `int`
        How many processes were signalled.
    """
    pids = _run_processes(submit_dir)
    kill_processes(pids, timeout=grace)
    return len(pids)


def clear_cancel_marks(submit_dir: str) -> None:
    """Forget an earlier cancellation (before a restart)."""
    for name in (CANCEL_REQUEST, CANCELLED_MARK):
        try:
            os.remove(os.path.join(submit_dir, name))
        except FileNotFoundError:
            pass


def take_cancel_request(submit_dir: str) -> bool:
    """For the runner: whether a cancel was requested; if so, acknowledge it
    and mark the run so that waiting jobs do not start."""
    request = os.path.join(submit_dir, CANCEL_REQUEST)
    if not os.path.exists(request):
        return False
    with open(os.path.join(submit_dir, CANCELLED_MARK), "w") as fh:
        fh.write(f"{time.time()}\n")
    os.remove(request)
    return True


def request_cancel(submit_dir: str, timeout: float = 30.0) -> tuple[bool, str]:
    """Ask the process running ``submit_dir`` to cancel it.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    timeout : `float`
        Seconds to wait for the runner to acknowledge.

    Returns
    -------
    cancelled : `bool`
        Whether the runner took the request.
    message : `str`
        What happened, for the user.
    """
    store = JobStateStore.in_dir(submit_dir)
    try:
        run = store.run_info()
    finally:
        store.close()
    if run["state"] != RunState.RUNNING:
        return False, f"Run {submit_dir} is not running (state: {run['state'].value}); nothing changed."
    if run["host"] != os.uname().nodename:
        return False, f"Run {submit_dir} runs on host {run['host']} (pid {run['pid']}); cancel it there."
    if not submitter_alive(run["pid"], run["start_time"]):
        return False, (
            f"The process that ran {submit_dir} (pid {run['pid']}) is gone; nothing is running. "
            "Use bps restart to finish the run."
        )
    request = os.path.join(submit_dir, CANCEL_REQUEST)
    with open(request, "w") as fh:
        fh.write(f"{os.getpid()} {time.time()}\n")
    deadline = time.monotonic() + timeout
    while os.path.exists(request):
        if time.monotonic() > deadline:
            return (
                False,
                f"Run {submit_dir} (pid {run['pid']}) did not answer the cancel request in {timeout:.0f} s.",
            )
        time.sleep(0.2)
    return True, (
        f"Cancelled run {submit_dir}: running jobs are being stopped; the final job then registers "
        "the outputs of the jobs that succeeded."
    )
