"""Forks of the submitting process (``execution: in_process``): the init
and final jobs, and ThreadPool's runners.

``bps submit`` has already imported ctrl_bps, pipe_base and daf_butler: a
fork of it runs ``pipetask pre-exec-init-qbb`` through pipetask's own entry
point (`~desc.gen3_workflow.execution.warm.in_process_runner.execute_request`: the same
log files, exit code and environment as the subprocess) without paying the
2-3 s of imports a new ``pipetask`` process starts with; the same goes for
the final job's ``butler aggregate-graph`` (when its script is the one
ctrl_bps writes, see `~desc.gen3_workflow.plan.final_job.final_script_argv`),
and a forked
runner (`ForkedRunner`) is ready as soon.  Both are made before parsl starts
its threads.  The init job's fork is a session of its own, so stopping it
works as for a subprocess, and a crash in it is only its own.  A child
closes every inherited descriptor but its standard streams (another
runner's pipe left open in it would keep that runner from seeing its end)
and freezes the inherited objects for the garbage collector, so that it
does not copy the parent's memory by walking it.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any

from ...constants import RUN_DIR_VARIABLE, SERVICE_VARIABLE
from ...errors import RunnerError
from ...plan.final_job import final_script_argv
from ...store.records import JobKind, JobRecord
from ..job_io import markers, run_secrets
from ..job_io.job_usage import figures
from .job_argv import pipetask_argv
from .node_client import RUNNER_START_SECONDS, connect_to_node_runner
from .protocol import socket_name

__all__ = ["Child", "ForkedJob", "ForkedRunner", "can_fork", "fork_node_runner", "runs_in_fork"]

_WAIT_STEP = 0.05


_INIT = ("pipetask", "pre-exec-init-qbb")
_FINAL = ("butler", "aggregate-graph")


def _fork_request(job: JobRecord) -> tuple[dict[str, Any], tuple[str, str]] | None:
    """What a fork runs for ``job`` (its request for `~.in_process_runner.execute_request`, and the
    program and subcommand), or `None` if it needs a process of its own."""
    request: dict[str, Any] = {
        "argv": list(job.command.argv),
        "env": [list(pair) for pair in job.command.env],
        "stdout": job.stdout,
        "stderr": job.stderr,
    }
    if job.kind == JobKind.INIT and pipetask_argv(job.command, dict(os.environ), _INIT[1]) is not None:
        return request, _INIT
    if job.kind == JobKind.FINAL and job.command.argv and not job.command.env:
        argv = final_script_argv(job.command.argv[0], list(job.command.argv[1:]))
        if argv is not None and _FINAL[1] in argv:
            return {**request, "argv": argv}, _FINAL
    return None


def runs_in_fork(job: JobRecord) -> bool:
    """Whether ``job`` is the init job's ``pipetask pre-exec-init-qbb`` or the
    final job's one ``butler aggregate-graph``, which a fork runs in-process."""
    return _fork_request(job) is not None


def can_fork() -> bool:
    """Whether this process may fork its local jobs and runners: no thread
    runs but this one and the main thread (``bps submit`` waiting for the
    run).  A process with more (parsl's, a notebook kernel's) could hand a
    fork a lock some other thread held; its jobs get new processes."""
    return threading.active_count() <= 2


class _Fork:
    """A child forked here, waited for as a `subprocess.Popen` is."""

    pid: int
    returncode: int | None = None
    cpu: float | None = None
    """CPU seconds (user + system) it and the children it waited for took,
    once it has ended."""
    max_rss: int | None = None
    """Its peak resident memory (bytes), once it has ended.  For a fork of
    this process it counts the pages it shares with this one."""

    def poll(self) -> int | None:
        """The exit code (minus the signal that killed it) if the child has
        ended, else `None`."""
        if self.returncode is None:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self.cpu, self.max_rss = figures(usage)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child's end.

        Raises
        ------
        subprocess.TimeoutExpired
            If it is still running after ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(f"forked process {self.pid}", timeout or 0.0)
            time.sleep(_WAIT_STEP)
        return code


class Child(_Fork):
    """A child of this process started otherwise (a `subprocess.Popen`),
    reaped here for its resource use (the `~subprocess.Popen` must then be
    told its ``returncode``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid


class ForkedJob(_Fork):
    """A local job run by a fork of this process; waited for and stopped as
    a `subprocess.Popen` of its own session is.

    Parameters
    ----------
    job : `JobRecord`
        The job (see `runs_in_fork`).
    run_dir : `str`
        The run's submit directory (where the fork is recorded).
    start : `bool`, optional
        Run the job now; if `False` the fork is made now (before parsl's
        threads exist) and waits for `start` (the final job), or ends
        without running anything after `discard`.
    """

    def __init__(self, job: JobRecord, run_dir: str, start: bool = True) -> None:
        found = _fork_request(job)
        if found is None:
            raise ValueError(f"{job.name} is not a job for a fork")
        request, (program, subcommand) = found
        go_r, go_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child ends in os._exit
            code = 1
            try:
                os.setsid()
                os.dup2(go_r, 0)
                _become_child(f"gen3wf {job.name} of {run_dir}")
                if os.read(0, 1) != b"g":
                    _exit(0)  # discarded: the job is not to run
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                # Not one of parsl's processes (see parsl_session).
                os.environ.pop(SERVICE_VARIABLE, None)
                from .in_process_runner import execute_request

                code = execute_request(request, 0, 0, subcommand, program)
            finally:
                _exit(code)
        os.close(go_r)
        self._go: int | None = go_w
        self._run_dir, self._kind = run_dir, job.kind.value
        if start:
            self.start()

    def start(self) -> None:
        """Let the fork run the job."""
        if self._go is not None:
            # Listed for cancel and restart only now: a cancel's sweep of the
            # run's processes must not take a final job still to come (a fork
            # left waiting ends when this process does: its pipe closes).
            _record(self._run_dir, self.pid, self._kind)
            with contextlib.suppress(OSError):
                os.write(self._go, b"g")
            os.close(self._go)
            self._go = None

    def discard(self) -> None:
        """End a fork that was never started, without running the job."""
        if self._go is not None:
            os.close(self._go)
            self._go = None
            with contextlib.suppress(subprocess.TimeoutExpired, ChildProcessError):
                self.wait(timeout=10)


class ForkedRunner(_Fork):
    """An in-process runner (`~desc.gen3_workflow.execution.warm.in_process_runner`)
    forked from this process, with the part of the `subprocess.Popen`
    interface the runner's handle uses (``pid``, text ``stdin`` and
    ``stdout`` pipes, ``poll``, ``wait``, ``kill``).

    Parameters
    ----------
    env : `dict` [`str`, `str`]
        The runner's environment.
    max_quanta : `int`
        Quanta per executor before it is recycled (0: never).
    run_dir : `str`
        The run's submit directory (where the fork is recorded).
    """

    def __init__(self, env: dict[str, str], max_quanta: int, run_dir: str) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child ends in os._exit
            code = 1
            try:
                os.dup2(down_r, 0)
                os.dup2(up_w, 1)
                _become_child(f"gen3wf runner of {run_dir}")
                os.environ.clear()
                os.environ.update(env)
                from .in_process_runner import runner_main

                runner_main(max_quanta)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            finally:
                _exit(code)
        _record(run_dir, self.pid, "runner")
        os.close(down_r)
        os.close(up_w)
        self.stdin: IO[str] = os.fdopen(down_w, "w", buffering=1)
        self.stdout: IO[str] = os.fdopen(up_r, "r")

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the runner's end (`subprocess.TimeoutExpired` after
        ``timeout``) and close its pipes."""
        code = super().wait(timeout)
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass
        return code

    def kill(self) -> None:
        """SIGKILL the runner."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def fork_node_runner(run_dir: str, max_quanta: int, log: str) -> int:
    """Fork this machine's node runner of the run (Work Queue with a Local
    provider), watching this process; return its pid once it listens.

    Raises
    ------
    RunnerError
        If it ended, or did not listen within `~.node_client.RUNNER_START_SECONDS`.
    """
    name = socket_name(run_secrets.runner_key(run_dir))
    watch = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child ends in os._exit
        code = 1
        try:
            os.setsid()
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
            os.dup2(out, 1)
            os.dup2(out, 2)
            _become_child(f"gen3wf node runner of {run_dir}")
            os.environ[RUN_DIR_VARIABLE] = run_dir  # for the bash jobs it starts
            from .node_runner import main

            code = main(["--run-dir", run_dir, "--max-quanta", str(max_quanta), "--watch-pid", str(watch)])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            _exit(code)
    _record(run_dir, pid, "node_runner")
    deadline = time.monotonic() + RUNNER_START_SECONDS
    while True:
        conn = connect_to_node_runner(name)
        if conn is not None:
            conn.close()
            return pid
        ended, status = os.waitpid(pid, os.WNOHANG)
        if ended or time.monotonic() > deadline:
            why = f"ended (status {status})" if ended else f"did not listen in {RUNNER_START_SECONDS:.0f} s"
            raise RunnerError(f"the forked node runner {pid} {why}")
        time.sleep(_WAIT_STEP)


def _record(run_dir: str, pid: int, kind: str) -> None:
    import psutil

    with contextlib.suppress(psutil.Error):
        markers.record_fork(run_dir, pid, psutil.Process(pid).create_time(), kind)


def _exit(code: int) -> None:
    """End a fork: its own exit hooks (pipetask's removal of its cache
    directory), none of its parent's, then no more."""
    with contextlib.suppress(BaseException):
        atexit._run_exitfuncs()
    os._exit(code)


def _become_child(title: str) -> None:
    """What every fork made here does first (``title``: its name in ``ps``,
    rather than its parent's ``bps submit ...``)."""
    gc.freeze()  # before anything could start a collection
    atexit._clear()  # the parent's exit hooks are not the fork's
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    # Python's streams on fds 1 and 2, whatever the parent had made of them.
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    with contextlib.suppress(Exception):
        import setproctitle  # parsl's dependency

        setproctitle.setproctitle(title)
