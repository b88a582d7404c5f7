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
(`desc.gen3_workflow.execution.warm_qbb`).

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

This module imports only the standard library and the package's import-free
modules (the submit side and every parsl worker import it); the runner, with
the middleware, is `desc.gen3_workflow.execution.in_process_runner`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from ..constants import CANCELLED_EXIT_CODE, CANCELLED_MARK, RUN_DIR_VARIABLE
from ..errors import RunnerError
from ..store.records import JobCommand
from . import markers, run_secrets
from .runner_protocol import encode_request, peer, socket_name

__all__ = [
    "connect_to_node_runner",
    "pipetask_argv",
    "prestart_node_runner",
    "prestart_runners",
    "quantum_count",
    "run_quantum_job",
    "stop_runners",
    "warm_worker",
]

RUNNER_START_SECONDS = 300.0
"""How long a Work Queue task waits for its node's runner to answer at all."""


def pipetask_argv(
    command: JobCommand, environ: dict[str, str], subcommand: str = "run-qbb", program: str = "pipetask"
) -> tuple[dict[str, str], list[str]] | None:
    """The variables to set and the ``pipetask`` argument vector of a job
    that runs ``pipetask ... run-qbb`` (or ``subcommand``, of ``program``);
    `None` for any other command.

    Parameters
    ----------
    command : `JobCommand`
        The job's command.
    environ : `dict` [`str`, `str`]
        The environment in which ``<ENV:NAME>`` markers are expanded.
    subcommand : `str`, optional
        The subcommand to accept.
    program : `str`, optional
        The program to accept (``butler`` for the final job).
    """
    exports, argv = command.expanded(environ)
    if not argv or os.path.basename(argv[0]) != program or subcommand not in argv:
        return None
    return exports, argv


def quantum_count(argv: list[str]) -> int:
    """How many quanta (QuantumGraph node ids) a ``run-qbb`` command runs."""
    count = 0
    for i, word in enumerate(argv):
        if word in ("--qgraph-node-id", "--qgraph-node-ids") and i + 1 < len(argv):
            count += len([n for n in argv[i + 1].split(",") if n])
        elif word.startswith("--qgraph-node-id="):
            count += len([n for n in word.split("=", 1)[1].split(",") if n])
    return max(count, 1)


# --- the parsl side: runs in a parsl worker (or ThreadPool thread) --------


class _Runner:
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
            from .local_fork import ForkedRunner  # (it imports this module)

            self.proc = ForkedRunner(env, max_quanta, run_dir)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "desc.gen3_workflow.execution.in_process_runner", str(max_quanta)],
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


_RUNNERS: dict[tuple[int, int, str], _Runner] = {}
_IDLE: dict[tuple[int, str], list[_Runner]] = {}
"""Runners started ahead (`prestart_runners`), for threads yet to ask."""
_LOCK = threading.Lock()


def _runner_for(run_dir: str, max_quanta: int) -> _Runner:
    key = (os.getpid(), threading.get_ident(), run_dir)
    with _LOCK:
        runner = _RUNNERS.get(key)
        if runner is None or not runner.alive():
            idle = _IDLE.get((os.getpid(), run_dir))
            runner = _RUNNERS[key] = idle.pop() if idle else _Runner(run_dir, max_quanta)
        return runner


def prestart_runners(run_dir: str, max_quanta: int, count: int, fork: bool = False) -> None:
    """Start ``count`` runners in this process ahead of its first jobs
    (ThreadPool: one per thread), so that they import the middleware while
    the init job runs; ``fork``: as forks of this process, which must not
    run other threads yet."""
    runners = [_Runner(run_dir, max_quanta, fork) for _ in range(count)]
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


def _worker_pid() -> int | None:
    """The Work Queue worker this task runs under, if any."""
    import psutil

    for parent in psutil.Process().parents():
        try:
            if parent.name().startswith("work_queue_work"):
                return parent.pid
        except psutil.Error:
            break
    return None


def prestart_node_runner(run_dir: str, max_quanta: int, fork: bool = False) -> None:
    """Start this machine's node runner of the run ahead of the first Work
    Queue task (the submitting process: it ends with this process); with
    ``fork``, as a fork of this process, which has the middleware imported
    (only while it runs no other thread)."""
    if not fork:
        _connect_node_runner(run_dir, max_quanta, watch=os.getpid()).close()
        return
    from .local_fork import fork_node_runner  # (it imports this module)

    run_secrets.owner_writable_dir(os.path.join(run_dir, "runners"))
    fork_node_runner(run_dir, max_quanta, _runner_log(run_dir))


def _runner_log(run_dir: str) -> str:
    return os.path.join(run_dir, "runners", f"{socket.gethostname()}.{os.getpid()}.log")


def connect_to_node_runner(name: str) -> socket.socket | None:
    """A connection to the runner listening on the abstract socket
    ``name``, or `None` if none listens.

    Raises
    ------
    RunnerError
        If what listens there is not a process of this user.
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(name)
    except (ConnectionRefusedError, FileNotFoundError):
        conn.close()
        return None
    pid, uid = peer(conn)
    if uid != os.getuid():
        conn.close()
        raise RunnerError(
            f"the node runner's socket is held by uid {uid} (pid {pid}), not by the run's owner"
        )
    return conn


def _connect_node_runner(run_dir: str, max_quanta: int, watch: int | None = None) -> socket.socket:
    """A connection to this node's runner of the run, started if need be
    (see `desc.gen3_workflow.execution.node_runner`) and told to end with
    ``watch`` (by default the Work Queue worker of this task)."""
    from .node_runner import NAME_TAKEN_EXIT

    name = socket_name(run_secrets.runner_key(run_dir))
    deadline = time.monotonic() + RUNNER_START_SECONDS
    started: subprocess.Popen[bytes] | None = None
    while True:
        conn = connect_to_node_runner(name)
        if conn is not None:
            return conn
        if started is not None and started.poll() not in (None, NAME_TAKEN_EXIT):
            raise RunnerError(f"the node's in-process runner exited with status {started.returncode}")
        if time.monotonic() > deadline:
            raise RunnerError(f"no in-process runner answered within {RUNNER_START_SECONDS:.0f} s")
        if started is None or started.poll() == NAME_TAKEN_EXIT:
            run_secrets.owner_writable_dir(os.path.join(run_dir, "runners"))
            log = _runner_log(run_dir)
            words = [sys.executable, "-m", "desc.gen3_workflow.execution.node_runner", "--run-dir", run_dir]
            words += ["--max-quanta", str(max_quanta)]
            if (watched := watch or _worker_pid()) is not None:
                words += ["--watch-pid", str(watched)]
            with open(os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640), "ab") as out:
                started = subprocess.Popen(
                    words,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    env={**os.environ, RUN_DIR_VARIABLE: run_dir},
                    start_new_session=True,  # not stopped with this task's process group
                )
        time.sleep(0.05)


def _call_node_runner(run_dir: str, max_quanta: int, request: dict[str, Any]) -> dict[str, Any]:
    """Hand a job to the node's runner; its answer once the job has ended."""
    with _connect_node_runner(run_dir, max_quanta) as conn:
        conn.sendall(encode_request(run_secrets.runner_key(run_dir), request))
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                raise RunnerError("the node's in-process runner ended under the job")
            data += chunk
    reply = json.loads(data)
    if "refused" in reply:
        raise RunnerError(f"the node's in-process runner refused the job: {reply['refused']}")
    return reply


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
        (`~desc.gen3_workflow.settings.capacity.relays_locally`), which
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
        if not relay:
            # The watchdog stops a hung job by killing this task; its runner
            # then stops the job.
            from .processes import task_processes  # psutil: not for every import of this module

            markers.write_pids(run_dir, seq, task_processes())
        reply = _call_node_runner(run_dir, max_quanta, request)
        code = int(reply["code"])
        record = markers.ExitRecord(
            code,
            time.time(),
            reply.get("reason", ""),
            reply.get("detail", ""),
            reply.get("cpu"),
            reply.get("max_rss"),
        )
    else:
        runner = _runner_for(run_dir, max_quanta)
        # What the watchdog kills (with its executor) should this job hang or overrun.
        markers.write_pids(run_dir, seq, [(runner.proc.pid, runner.started)])
        reply = runner.call(request)
        status = int(reply["status"])
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        record = markers.ExitRecord(code, time.time(), cpu=reply.get("cpu"), max_rss=reply.get("max_rss"))
    markers.write_exit(run_dir, seq, record)
    if code != 0:
        raise BashExitFailure("in-process quantum", code)
    return reply
