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

from ...constants import CANCEL_REQUEST, CANCELLED_EXIT_CODE, CANCELLED_MARK, RUN_DIR_VARIABLE
from ...store.job_store import JobStateStore
from ...store.liveness import Liveness, liveness

__all__ = ["clear_cancel_marks", "job_prefix", "request_cancel", "take_cancel_request"]


def job_prefix(submit_dir: str) -> str:
    """Shell text put before every job command of a run."""
    quoted = shlex.quote(submit_dir)
    return (
        f"export {RUN_DIR_VARIABLE}={quoted}; "
        f'[ ! -e "${RUN_DIR_VARIABLE}"/{CANCELLED_MARK} ] || exit {CANCELLED_EXIT_CODE}; '
    )


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
    with JobStateStore.open(submit_dir) as store:
        run = store.run()
    alive = liveness(run)
    if alive == Liveness.ENDED:
        return False, f"Run {submit_dir} is not running (state: {run.state.value}); nothing changed."
    if alive == Liveness.ELSEWHERE:
        return False, f"Run {submit_dir} runs on host {run.host} (pid {run.pid}); cancel it there."
    if alive == Liveness.GONE:
        return False, (
            f"The process that ran {submit_dir} (pid {run.pid}) is gone; nothing is running. "
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
                f"Run {submit_dir} (pid {run.pid}) did not answer the cancel request in {timeout:.0f} s.",
            )
        time.sleep(0.2)
    return True, (
        f"Cancelled run {submit_dir}: running jobs are being stopped; the final job then registers "
        "the outputs of the jobs that succeeded."
    )
