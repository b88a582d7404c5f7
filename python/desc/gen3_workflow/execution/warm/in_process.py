"""In-process execution of quantum jobs (``parsl_config.execution: in_process``).

In ``process`` mode every quantum job is a bash app starting a fresh
``pipetask run-qbb`` (about 1.5 s of imports before any work).  In
``in_process`` mode the job is a parsl python app, `run_quantum_job`, that
hands the job to a *runner*: a long-lived Python process, one per parsl
worker (per thread for ThreadPool), that imported the middleware once.  The
runner forks a child, its *executor*, which runs jobs one after another: it
redirects its stdout/stderr to each job's log files and runs the job's
quanta as ``pipetask run-qbb`` would:
pipetask's own option parsing and logging set-up, `~lsst.pipe.base.
single_quantum_executor.SingleQuantumExecutor` on a `~lsst.daf.butler.
QuantumBackedButler`, job summary -- the same outputs, logs, metadata and
exit codes as the subprocess, minus the imports, and with the QuantumGraph
opened once per executor rather than once per job
(`desc.gen3_workflow.execution.warm.warm_qbb`).

The fork gives isolation for free: task configs, logging handlers and butler
caches die with the child; a crash (signal, ``os._exit``) kills only the
child, and is reported like the bash app reports it (exit code 128 + signal),
so parsl retries it per ``retries``.  The runner itself never executes a
quantum; it is replaced by a fresh one after ``max_quanta_per_worker`` quanta
(0: never).  Runners and their children inherit ``GEN3WF_RUN_DIR`` at exec
time, so ``bps cancel`` kills them like bash jobs.

A job whose command is not a plain ``pipetask ... run-qbb`` (a
``commandPrepend`` container launcher, a custom ``runQuantumCommand``) still
runs through the runner: its child runs the command's shell line.

The submit side and every parsl worker import this module: it imports no
middleware (the runner, `desc.gen3_workflow.execution.warm.in_process_runner`,
imports it when it starts); Work Queue's tasks reach their node's runner
through `~.node_client`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

from ...constants import CANCELLED_EXIT_CODE, CANCELLED_MARK, RUN_DIR_VARIABLE
from ...errors import RunnerError
from ...store.records import JobCommand
from ..job_io import markers, run_secrets
from . import in_process_runner
from .node_client import call_node_runner, open_node_runner, runner_log

__all__ = [
    "prestart_node_runner",
    "prestart_runners",
    "run_quantum_job",
    "stop_runners",
    "warm_worker",
]

# --- the parsl side: runs in a parsl worker (or ThreadPool thread) --------


class _RunnerHandle:
    """A runner subprocess and the pipes to it.

    With ``fork``, the runner is a fork of this process rather than a new
    interpreter: the submitting process has most of the middleware imported
    already, so a prestarted ThreadPool runner is ready in a fraction of a
    second instead of 3-5 s (only before parsl starts its threads, see
    `prestart_runners`).
    """

    def __init__(self, run_dir: str, max_quanta: int, fork: bool = False) -> None:
        env = {**os.environ, RUN_DIR_VARIABLE: run_dir}
        self.proc: Any
        if fork:
            from .local_fork import ForkedRunner  # (the submit side only)

            self.proc = ForkedRunner(env, max_quanta, run_dir)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", in_process_runner.__name__, str(max_quanta)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                text=True,
                bufsize=1,
            )
        self.started = _start_time(self.proc.pid)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except OSError:
            line = ""
        if not line:
            status = self.proc.wait()
            raise RunnerError(f"in-process runner {self.proc.pid} died (exit status {status})")
        return json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _start_time(pid: int) -> float:
    """When a process started (seconds since the epoch), as psutil says."""
    import psutil  # here only: the submit side imports this module too

    return psutil.Process(pid).create_time()


_RUNNERS: dict[tuple[int, int, str], _RunnerHandle] = {}
_IDLE: dict[tuple[int, str], list[_RunnerHandle]] = {}
"""Runners started ahead (`prestart_runners`), for threads yet to ask."""
_LOCK = threading.Lock()


def _runner_for(run_dir: str, max_quanta: int) -> _RunnerHandle:
    key = (os.getpid(), threading.get_ident(), run_dir)
    with _LOCK:
        runner = _RUNNERS.get(key)
        if runner is None or not runner.alive():
            idle = _IDLE.get((os.getpid(), run_dir))
            runner = _RUNNERS[key] = idle.pop() if idle else _RunnerHandle(run_dir, max_quanta)
        return runner


def prestart_runners(run_dir: str, max_quanta: int, count: int, fork: bool = False) -> None:
    """Start ``count`` runners in this process ahead of its first jobs
    (ThreadPool: one per thread), so that they import the middleware while
    the init job runs; ``fork``: as forks of this process, which must not
    run other threads yet."""
    runners = [_RunnerHandle(run_dir, max_quanta, fork) for _ in range(count)]
    with _LOCK:
        _IDLE.setdefault((os.getpid(), run_dir), []).extend(runners)


def warm_worker(run_dir: str, max_quanta: int, hold: float = 0.5) -> int:
    """A parsl app that starts its worker's runner (HighThroughput: sent
    once per worker while the init job runs) and returns the worker's pid.
    It holds its worker for ``hold`` seconds, so that the others take the
    next ones."""
    _runner_for(run_dir, max_quanta)
    time.sleep(hold)
    return os.getpid()


def stop_runners(run_dir: str | None = None) -> None:
    """Stop this process's runners (of one run, or all)."""
    with _LOCK:
        keys = [k for k in _RUNNERS if k[0] == os.getpid() and run_dir in (None, k[2])]
        runners = [_RUNNERS.pop(k) for k in keys]
        for key in [k for k in _IDLE if k[0] == os.getpid() and run_dir in (None, k[1])]:
            runners.extend(_IDLE.pop(key))
    for runner in runners:
        runner.stop()


def prestart_node_runner(run_dir: str, max_quanta: int, fork: bool = False) -> None:
    """Start this machine's node runner of the run ahead of the first Work
    Queue task (the submitting process: it ends with this process); with
    ``fork``, as a fork of this process, which has the middleware imported
    (only while it runs no other thread)."""
    if not fork:
        open_node_runner(run_dir, max_quanta, watch=os.getpid()).close()
        return
    from .local_fork import fork_node_runner  # (the submit side only)

    run_secrets.owner_writable_dir(os.path.join(run_dir, "runners"))
    fork_node_runner(run_dir, max_quanta, runner_log(run_dir))


def run_quantum_job(
    command: JobCommand,
    log_stdout: str,
    log_stderr: str,
    run_dir: str,
    seq: int,
    max_quanta: int = 0,
    node_runner: bool = False,
    memory: int | None = None,
    walltime: float | None = None,
    relay: bool = False,
    **kwargs: object,
) -> dict[str, Any]:
    """Run one quantum job through this worker's runner (the parsl app).

    Like a job's supervisor in process mode, it records how the job's
    payload ended (`markers`), and does not run a payload that already
    succeeded.

    Parameters
    ----------
    command : `JobCommand`
        The job's command.
    log_stdout, log_stderr : `str`
        The job's log files.
    run_dir : `str`
        The run's submit directory.
    seq : `int`
        The job.
    max_quanta : `int`
        Quanta a runner's forked executor runs before it is replaced.
    node_runner : `bool`
        Hand the job to the node's runner over its socket (Work Queue,
        where every task is a new process) rather than to a runner this
        process keeps.
    memory, walltime : `int` or `float`, optional
        node_runner: what the runner holds the job to (MB, seconds).
    relay : `bool`
        node_runner: this is a thread of the submitting process
        (`~desc.gen3_workflow.execution.bridge.modes.ExecutionMode.relays_locally`), which
        must not be recorded as the job's to kill; the node's runner stops
        the job when asked (``status/N.kill``).
    **kwargs
        What the executor takes besides (``parsl_resource_specification``).

    Returns
    -------
    timing : `dict`
        ``runner``/``child`` pids and the child's ``start``/``end`` times.

    Raises
    ------
    parsl.app.errors.BashExitFailure
        The job exited non-zero or was killed (128 + signal), as a bash app
        would report it; 143 if the run was cancelled before it started.
    RunnerError
        The runner died under the job (killed by a cancel or the system).
    """
    from parsl.app.errors import BashExitFailure

    if os.path.exists(os.path.join(run_dir, CANCELLED_MARK)):
        raise BashExitFailure("cancelled", CANCELLED_EXIT_CODE)
    earlier = markers.read_exit(run_dir, seq)
    if earlier is not None and earlier.code == 0 and not earlier.reason:
        return {"status": 0, "skipped": True}
    request = {
        "argv": list(command.argv),
        "env": [list(pair) for pair in command.env],
        "stdout": log_stdout,
        "stderr": log_stderr,
    }
    if node_runner:
        request.update(seq=seq, memory=memory, walltime=walltime, cwd=os.getcwd())
        # Running from now: the node's runner starts it at once.  The
        # watchdog stops a hung job by killing this task (its runner then
        # stops the job); a relay thread of bps submit is not to be killed.
        processes: list[tuple[int, float]] = []
        if not relay:
            from ..job_io.processes import task_processes  # psutil: not for every import of this module

            processes = task_processes()
        markers.write_started(run_dir, seq, time.time(), processes)
        reply = call_node_runner(run_dir, max_quanta, request)
        code = int(reply["code"])
        reason, detail = reply.get("reason", ""), reply.get("detail", "")
    else:
        runner = _runner_for(run_dir, max_quanta)
        # Running from now (this worker's runner is this job's alone), and
        # what the watchdog kills (with its executor) should it hang or overrun.
        markers.write_started(run_dir, seq, time.time(), [(runner.proc.pid, runner.started)])
        reply = runner.call(request)
        status = int(reply["status"])
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        reason = detail = ""
    # The payload's own start and end, and host, where the runner measured them.
    record = markers.ExitRecord(
        code,
        reply.get("end") or time.time(),
        reason,
        detail,
        reply.get("cpu"),
        reply.get("max_rss"),
        reply.get("start"),
        reply.get("host") or markers.this_host(),
    )
    markers.write_exit(run_dir, seq, record)
    if code != 0:
        raise BashExitFailure("in-process quantum", code)
    return reply
