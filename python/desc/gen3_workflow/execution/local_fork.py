"""The init job in a fork of the submitting process (``execution: in_process``).

``bps submit`` has already imported ctrl_bps, pipe_base and daf_butler: a
fork of it runs ``pipetask pre-exec-init-qbb`` through pipetask's own entry
point (`~desc.gen3_workflow.execution.in_process_runner._execute`: the same
log files, exit code and environment as the subprocess) without paying the
2-3 s of imports a new ``pipetask`` process starts with.  The fork is a
session of its own, so stopping it works as for a subprocess, and a crash in
it is only its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from ..constants import SERVICE_VARIABLE
from ..store.records import JobRecord
from .in_process import pipetask_argv

__all__ = ["ForkedJob", "runs_in_fork"]

_WAIT_STEP = 0.05


_SUBCOMMAND = "pre-exec-init-qbb"


def runs_in_fork(job: JobRecord) -> bool:
    """Whether ``job`` is a ``pipetask pre-exec-init-qbb`` command (the init
    job), which a fork runs in-process."""
    return pipetask_argv(job.command, dict(os.environ), _SUBCOMMAND) is not None


class ForkedJob:
    """A local job run by a fork of this process; waited for and stopped as
    a `subprocess.Popen` of its own session is.

    Parameters
    ----------
    job : `JobRecord`
        The job (a ``pipetask`` command, see `runs_in_fork`).
    """

    def __init__(self, job: JobRecord) -> None:
        request = {
            "argv": list(job.command.argv),
            "env": [list(pair) for pair in job.command.env],
            "stdout": job.stdout,
            "stderr": job.stderr,
        }
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child ends in os._exit
            code = 1
            try:
                os.setsid()
                for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                    signal.signal(signum, signal.SIG_DFL)
                # Not one of parsl's processes (see parsl_session).
                os.environ.pop(SERVICE_VARIABLE, None)
                # Python's streams on the job's log files (which _execute puts
                # on fds 1 and 2), whatever the parent had made of them.
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                from .in_process_runner import _execute

                code = _execute(request, 0, 0, _SUBCOMMAND)
            finally:
                os._exit(code)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the job's end; its exit code (minus the signal that
        killed it), as `subprocess.Popen.wait`.

        Raises
        ------
        subprocess.TimeoutExpired
            If it is still running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"forked job {self.pid}", timeout or 0.0)
            time.sleep(_WAIT_STEP)
        return self.returncode
