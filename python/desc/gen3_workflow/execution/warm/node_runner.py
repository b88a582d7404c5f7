"""Warm runners for Work Queue: one per node and run, reached through a socket.

A Work Queue task is a fresh process: a runner started by the task (as the
ThreadPool and HighThroughput workers keep theirs) would die with it.  So
with ``execution: in_process`` on Work Queue, a job's task only *asks*: it
connects to the node's runner of its run (an abstract Unix socket named
after the run's submit directory, `socket_name`), starting the runner
first if there is none (`connect`), and waits for the answer.

Only the run's owner gets in (`~.protocol`): the socket's name
comes from the run's key, a connection from another user is refused (one
line in the runner's log) and the runner goes on; a request must be signed
with the run's key and name log files inside the submit directory.

The runner (``python -m desc.gen3_workflow.execution.warm.node_runner``) binds
the socket before anything else (a second runner started by a racing task
finds the name taken and exits), imports the middleware once, warms its
caches on each QuantumGraph it meets, and hands each job to a forked
*executor* from that warm state, as the ThreadPool and HighThroughput
runners do (`~.in_process_runner`: the job's log files, ``pipetask run-qbb``
through pipetask's entry point): one executor per job running at once, each
running jobs one after another and replaced after ``--max-quanta`` quanta
(``max_quanta_per_worker``), each in a process group of its own, so a crash
takes only its job.  The runner holds each job to its memory request and
walltime, stops it (its executor) when asked to (``status/N.kill``) or when
its task goes away (a cancel, Work Queue killing the task), and answers with
its wait status and the reason it was stopped (the job supervisor's
reasons).  Work Queue keeps packing tasks by their declared cores, memory
and disk.

The runner ends when the Work Queue worker that started it ends, after
`IDLE_SECONDS` with nothing to do, or on SIGTERM/SIGINT/SIGHUP (``bps
cancel`` finds it by ``GEN3WF_RUN_DIR``); it stops its children first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

import psutil

from ..job_io import oom, run_secrets
from ..worker.supervise import stop_reason, tree_rss_mb
from .in_process_runner import executor_main, preload, warm_caches
from .job_argv import pipetask_argv, quantum_count, request_command
from .protocol import NAME_TAKEN_EXIT, decode_request, misplaced_logs, peer, socket_name

__all__ = ["IDLE_SECONDS", "main"]

POLL_SECONDS = 0.5
"""Between two looks at the children's memory, time and kill requests."""
IDLE_SECONDS = 300.0
"""A runner with no job for this long exits (its worker may live on)."""
STOP_GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL of a child that is stopped."""


@dataclasses.dataclass
class _ExecutorFork:
    """A forked executor (`~.in_process_runner.executor_main`): it runs the
    jobs it is given one after another until it has run ``max_quanta``."""

    pid: int
    requests: int
    replies: Any
    """Its reply pipe (a binary file object, for select)."""


@dataclasses.dataclass
class _Job:
    """A job an executor runs, and the task connection waiting for it."""

    conn: socket.socket
    request: dict[str, Any]
    executor: _ExecutorFork
    start: float
    oom_before: int | None
    reason: str = ""
    detail: str = ""
    kill_at: float | None = None


class _NodeRunner:
    def __init__(
        self, run_dir: str, key: bytes, listener: socket.socket, watch: psutil.Process | None, max_quanta: int
    ) -> None:
        self.run_dir = run_dir
        self.key = key
        self.listener = listener
        self.watch = watch
        self.max_quanta = max_quanta
        self.pending: dict[socket.socket, bytes] = {}
        self.jobs: dict[int, _Job] = {}
        """Jobs running, by their executor's pid."""
        self.idle: list[_ExecutorFork] = []
        self.warmed: set[str] = set()
        self.idle_since = time.monotonic()
        self.stopping = False
        wake_r, self.wake_w = os.pipe()
        self.wake = os.fdopen(wake_r, "rb", buffering=0)
        os.set_blocking(self.wake_w, False)
        os.set_blocking(wake_r, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._stop)

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def serve(self) -> None:
        next_look = time.monotonic()
        while not self.stopping:
            waiting: list[Any] = [self.listener, self.wake, *self.pending]
            for job in self.jobs.values():
                waiting += [job.conn, job.executor.replies]
            readable, _, _ = select.select(waiting, [], [], POLL_SECONDS)
            for stream in readable:
                if stream is self.listener:
                    self._accept()
                elif stream is self.wake:
                    with contextlib.suppress(BlockingIOError):
                        self.wake.read(512)
                elif stream in self.pending:
                    self._read_request(stream)
                elif isinstance(stream, socket.socket):
                    self._task_went_away(stream)
                else:
                    self._executor_answered(stream)
            self._reap()
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + POLL_SECONDS
                self._look()
                if self._should_exit():
                    break
        self._stop_all()

    def _accept(self) -> None:
        """Take a connection from a process of this user; refuse any other."""
        conn, _ = self.listener.accept()
        pid, uid = peer(conn)
        if uid != os.getuid():
            _log(f"refused a connection from uid {uid} (pid {pid}): only uid {os.getuid()} may send jobs")
            conn.close()
            return
        self.pending[conn] = b""

    def _read_request(self, conn: socket.socket) -> None:
        try:
            chunk = conn.recv(65536)
        except OSError:
            chunk = b""
        if not chunk:
            del self.pending[conn]
            conn.close()
            return
        data = self.pending[conn] + chunk
        if b"\n" not in data:
            self.pending[conn] = data
            return
        del self.pending[conn]
        request = decode_request(self.key, data.split(b"\n", 1)[0])
        if request is None:
            _log(f"refused a request from pid {peer(conn)[0]}: it is not signed with the run's key")
            conn.close()
            return
        refusal = misplaced_logs(self.run_dir, request)
        if refusal is not None:
            _log(f"refused job {request.get('seq')} from pid {peer(conn)[0]}: {refusal}")
            with contextlib.suppress(OSError):
                conn.sendall((json.dumps({"refused": refusal}) + "\n").encode())
            conn.close()
            return
        self._start(conn, request)

    def _start(self, conn: socket.socket, request: dict[str, Any]) -> None:
        pipetask = pipetask_argv(request_command(request), dict(os.environ))
        request["quanta"] = quantum_count(pipetask[1]) if pipetask is not None else 1
        if pipetask is not None:
            argv = pipetask[1]
            where = argv.index("run-qbb") + 2
            if where < len(argv) and argv[where] not in self.warmed:
                self.warmed.add(argv[where])
                warm_caches(argv)
                gc.collect()
                gc.freeze()
                while self.idle:  # forked before the warm-up: retire them
                    self._retire(self.idle.pop())
        executor = self.idle.pop() if self.idle else self._fork()
        self.jobs[executor.pid] = _Job(conn, request, executor, time.time(), oom.oom_kills())
        os.write(executor.requests, (json.dumps(request) + "\n").encode())
        self.idle_since = time.monotonic()

    def _fork(self) -> _ExecutorFork:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the executor, in a process group of its own
            try:
                os.setpgid(0, 0)
                signal.set_wakeup_fd(-1)
                self.listener.close()
                for other in [*self.pending, *(job.conn for job in self.jobs.values())]:
                    other.close()
                for fd in (down_w, up_r):
                    os.close(fd)
                executor_main(down_r, up_w, self.max_quanta)
            finally:
                os._exit(1)
        os.close(down_r)
        os.close(up_w)
        return _ExecutorFork(pid, down_w, os.fdopen(up_r, "rb", buffering=0))

    def _retire(self, executor: _ExecutorFork) -> None:
        """Close an idle executor's pipes: it exits, and is reaped later."""
        with contextlib.suppress(OSError):
            os.close(executor.requests)
        executor.replies.close()

    def _executor_answered(self, replies: Any) -> None:
        job = next(j for j in self.jobs.values() if j.executor.replies is replies)
        line = replies.readline()
        if not line:
            return  # it died: `_reap` reports its status
        answer = json.loads(line)
        del self.jobs[job.executor.pid]
        self._answer(job, answer["status"], answer.get("cpu"), answer.get("max_rss"), answer.get("start"))
        if answer["last"] or job.reason:
            self._retire(job.executor)
        else:
            self.idle.append(job.executor)

    def _task_went_away(self, conn: socket.socket) -> None:
        for job in self.jobs.values():
            if job.conn is conn and not job.reason:
                job.reason, job.detail = "terminated", "its Work Queue task ended"
                self._signal(job, signal.SIGTERM)

    def _signal(self, job: _Job, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.executor.pid, signum)
        if signum == signal.SIGTERM:
            job.kill_at = time.monotonic() + STOP_GRACE_SECONDS

    def _look(self) -> None:
        """Hold every job to its memory request, walltime and kill requests."""
        now = time.monotonic()
        for job in self.jobs.values():
            if job.kill_at is not None:
                if now >= job.kill_at:
                    self._signal(job, signal.SIGKILL)
                    job.kill_at = now + STOP_GRACE_SECONDS
                continue
            memory, walltime = job.request.get("memory"), job.request.get("walltime")
            used = 0.0
            if memory:
                with contextlib.suppress(psutil.Error):
                    used = tree_rss_mb(psutil.Process(job.executor.pid))
            elapsed = time.time() - job.start
            job.reason, job.detail = stop_reason(
                self.run_dir, job.request["seq"], used, memory, elapsed, walltime
            )
            if job.reason:
                _note(job.request, f"gen3_workflow: the payload {job.detail}; stopping it")
                self._signal(job, signal.SIGTERM)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # whatever its jobs left behind
            self.idle = [e for e in self.idle if e.pid != pid]
            job = self.jobs.pop(pid, None)
            if job is not None:  # it died under the job: the job's status
                self._answer(job, status)
                self._retire(job.executor)

    def _answer(
        self,
        job: _Job,
        status: int,
        cpu: float | None = None,
        max_rss: int | None = None,
        start: float | None = None,
    ) -> None:
        """Answer the job's task: its wait status, why it was stopped, its
        executor's start and end of the payload (else when it was handed
        over), what it used, and the host that ran it."""
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if not job.reason and oom.was_oom_kill(code, job.oom_before):
            job.reason, job.detail = "memory", oom.OOM_MESSAGE
        reply = {
            "status": status,
            "code": code,
            "reason": job.reason,
            "detail": job.detail,
            "runner": os.getpid(),
            "executor": job.executor.pid,
            "start": start or job.start,
            "end": time.time(),
            "cpu": cpu,
            "max_rss": max_rss,
            "host": socket.gethostname(),
        }
        with contextlib.suppress(OSError):
            job.conn.sendall((json.dumps(reply) + "\n").encode())
        job.conn.close()
        self.idle_since = time.monotonic()

    def _should_exit(self) -> bool:
        if self.watch is not None and not _alive(self.watch):
            return True
        return not self.jobs and not self.pending and time.monotonic() - self.idle_since > IDLE_SECONDS

    def _stop_all(self) -> None:
        for job in self.jobs.values():
            job.reason = job.reason or "terminated"
            job.detail = job.detail or "its node's runner was stopped"
            self._signal(job, signal.SIGTERM)
        for executor in self.idle:
            self._retire(executor)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while self.jobs and time.monotonic() < deadline:
            time.sleep(0.1)
            self._reap()
        for job in self.jobs.values():
            self._signal(job, signal.SIGKILL)
        self._reap()


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _log(message: str) -> None:
    """A line in the runner's own log."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} node runner {os.getpid()}: {message}", file=sys.stderr, flush=True)


def _note(request: dict[str, Any], message: str) -> None:
    """A line in the job's stderr log, as the supervisor writes it."""
    with contextlib.suppress(OSError), open(request["stderr"], "a") as log:
        print(message, file=log)


def main(argv: list[str] | None = None) -> int:
    """The runner's command line (see the module documentation)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--watch-pid", type=int, default=None, help="exit when this process ends")
    parser.add_argument("--max-quanta", type=int, default=100, help="quanta an executor runs (0: no limit)")
    args = parser.parse_args(argv)
    run_dir = os.path.abspath(args.run_dir)
    key = run_secrets.runner_key(run_dir)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_name(key))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return NAME_TAKEN_EXIT
        raise
    listener.listen(256)
    watch = None
    if args.watch_pid:
        with contextlib.suppress(psutil.Error):
            watch = psutil.Process(args.watch_pid)
    # The task that started the runner ends, and Work Queue deletes its sandbox.
    os.chdir(run_dir)
    # Whatever the runner prints outside jobs goes to its own log (stderr).
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    preload()
    gc.collect()
    gc.freeze()
    _NodeRunner(run_dir, key, listener, watch, args.max_quanta).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
