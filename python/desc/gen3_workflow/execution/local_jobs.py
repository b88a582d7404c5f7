"""Jobs the submitting process runs itself: pipetaskInit and the final job.

Each runs in a subprocess of its own session, with its output appended to
its log files, and can be stopped (a ``bps cancel`` while it runs).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Callable

from ..store.records import JobRecord

__all__ = ["run_local_job"]

_LOG = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""How often a running local job is asked whether it should stop."""
STOP_GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL for a local job that is stopped."""


def run_local_job(job: JobRecord, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Run an init or final job in a subprocess of the submitting process.

    Parameters
    ----------
    job : `JobRecord`
        The job.
    should_stop : callable, optional
        Asked every `POLL_SECONDS`; when it returns `True` the job's process
        group is terminated.

    Returns
    -------
    exit_code : `int`
        The job's exit code (negative for a signal, as subprocess reports).
    """
    os.makedirs(os.path.dirname(job.stdout), exist_ok=True)
    command = job.command.shell()
    with open(job.stdout, "a") as out, open(job.stderr, "a") as err:
        print(f"--> executable follows <--\n{command}\n--> end executable <--", file=err, flush=True)
        # Its own session, so that stopping it reaches the butler command it starts.
        process = subprocess.Popen(
            ["/bin/bash", "-c", command], stdout=out, stderr=err, start_new_session=True
        )
        while True:
            try:
                return process.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                if should_stop():
                    _LOG.warning("Stopping %s", job.name)
                    return _stop_group(process)


def _stop_group(process: subprocess.Popen) -> int:
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
