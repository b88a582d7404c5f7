"""The runner of in-process execution (see `desc.gen3_workflow.execution.warm.in_process`).

``python -m desc.gen3_workflow.execution.warm.in_process_runner MAX_QUANTA`` reads
one JSON request per line on stdin (a job's argument vector, environment and
log files) and answers one
JSON line on stdout (its wait status, pids and times).  It imports the
middleware and warms its caches on the QuantumGraph once, then forks an
*executor* that runs the jobs one after another (`execute_request`: the job's
stdout/stderr on its log files, ``run-qbb`` jobs on the QuantumGraph the
executor holds open (`desc.gen3_workflow.execution.warm.warm_qbb`), other pipetask
and butler commands through their own entry points, environment and logging
restored afterwards).  After
``MAX_QUANTA`` quanta (0: never) the executor exits and the next job gets a
fresh fork of the warm runner; a crash of the executor kills only it, and the
runner reports its wait status as the job's.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..job_io.job_usage import QuantumUsage
from ..job_io.processes import JOB_VARIABLE
from .job_argv import pipetask_argv, quantum_count, request_command
from .warm_qbb import run_qbb_job

__all__ = ["execute_request", "executor_main", "preload", "remove_shared_cache", "runner_main", "warm_caches"]


def preload() -> None:
    """Import what every quantum needs, once, before any fork."""
    _share_one_cache_directory()
    import lsst.ctrl.mpexec.cli.pipetask as pipetask
    import lsst.ctrl.mpexec.cli.script.run_qbb  # noqa: F401
    import lsst.daf.butler  # noqa: F401
    import lsst.pipe.base.single_quantum_executor  # noqa: F401
    from lsst.daf.butler.cli.cliLog import CliLog

    pipetask.cli.list_commands(None)  # type: ignore[attr-defined, arg-type]
    CliLog.resetLog()


_SHARED_CACHE: dict[int, str] = {}
"""The datastore cache directory each runner process made, by pid."""


def _share_one_cache_directory() -> None:
    """Give the runner's executors one datastore cache directory, removed
    when the runner exits (`remove_shared_cache`).

    Otherwise each quantum's ``pipetask`` makes its own ``butler-cache-dir-*``
    in the temporary directory and removes it from an ``atexit`` hook, which a
    forked executor (ended by ``os._exit``) never runs: one directory would be
    left behind per quantum, 10^6 of them in a campaign.  A cache directory
    the user set (``DAF_BUTLER_CACHE_DIRECTORY*``) is left alone.
    """
    if os.environ.get("DAF_BUTLER_CACHE_DIRECTORY") or os.environ.get("DAF_BUTLER_CACHE_DIRECTORY_IF_UNSET"):
        return
    path = tempfile.mkdtemp(prefix="butler-cache-dir-gen3wf-")
    os.environ["DAF_BUTLER_CACHE_DIRECTORY_IF_UNSET"] = path
    _SHARED_CACHE[os.getpid()] = path
    atexit.register(remove_shared_cache)


def remove_shared_cache() -> None:
    """Remove the cache directory this process made, if any (never one a
    parent made: forks share the dictionary)."""
    path = _SHARED_CACHE.pop(os.getpid(), None)
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def warm_caches(argv: list[str]) -> None:
    """Warm the runner's caches on a QuantumGraph before forking executors:
    import its task classes, read the job's quanta and open (and close) a
    quantum-backed butler for them, as ``run-qbb`` does, without running
    anything.  A failure is left for the job itself to report in its log."""
    try:
        import uuid

        from lsst.ctrl.mpexec.cli.script.run_qbb import _QBBFactory
        from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

        start = argv.index("run-qbb")
        repo, qgraph = argv[start + 1], argv[start + 2]
        ids = {uuid.UUID(argv[argv.index("--qgraph-node-id") + 1].split(",")[0])}
        qg = PredictedQuantumGraph.read_execution_quanta(qgraph, quantum_ids=ids)
        factory = _QBBFactory(
            butler_config=repo,
            dimensions=qg.pipeline_graph.universe,
            dataset_types={d.name: d.dataset_type for d in qg.pipeline_graph.dataset_types.values()},
            config_search_path=None,
        )
        for quantum in qg.build_execution_quanta().values():
            factory(quantum).close()
    except Exception:
        pass


def execute_request(
    request: dict[str, Any],
    served: int,
    max_quanta: int,
    subcommand: str = "run-qbb",
    program: str = "pipetask",
) -> int:
    """In an executor: run one job with its stdout/stderr on its log files.

    Returns
    -------
    code : `int`
        The exit code ``pipetask`` (or bash) would have returned.
    """
    import click

    cli: click.Command
    if program == "butler":  # the final job (local_fork)
        from lsst.daf.butler.cli.butler import cli as butler_cli

        cli = butler_cli
    else:
        from lsst.ctrl.mpexec.cli.pipetask import cli as pipetask_cli

        cli = pipetask_cli
    from lsst.daf.butler.cli.cliLog import CliLog

    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    code = 1
    try:
        if "seq" in request:  # Work Queue's node runner: as the supervisor marks a payload
            os.environ[JOB_VARIABLE] = str(request["seq"])
        if request.get("cwd"):
            with contextlib.suppress(OSError):
                os.chdir(request["cwd"])  # the task's sandbox, as in process mode
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(log, fd)
            os.close(log)
        command = request_command(request)
        print(
            f"--> in-process execution follows <--\n{command.shell()}\n--> end executable <--\n"
            f"gen3_workflow in_process: runner pid {os.getppid()}, executor pid {os.getpid()} "
            f"(quanta run before this job: {served}; recycled after {max_quanta or 'unlimited'})",
            file=sys.stderr,
            flush=True,
        )
        pipetask = pipetask_argv(command, dict(os.environ), subcommand, program)
        if pipetask is None:
            returncode = subprocess.run(["/bin/bash", "-c", command.shell()], check=False).returncode
            return 128 - returncode if returncode < 0 else returncode  # as a shell reports a signal
        exports, argv = pipetask
        os.environ.update(exports)
        sys.argv = argv
        CliLog.resetLog()
        try:
            direct = run_qbb_job(argv) if (program, subcommand) == ("pipetask", "run-qbb") else None
            if direct is None:
                CliLog.resetLog()
                cli.main(args=argv[1:], prog_name=program)
            code = direct or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
        except Exception:
            import traceback

            traceback.print_exc()
            code = 1
        return code
    finally:
        CliLog.resetLog()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        with contextlib.suppress(OSError):
            os.chdir(saved_cwd)


def executor_main(requests: int, replies: int, max_quanta: int) -> None:
    """The forked executor: run jobs from the runner until ``max_quanta``
    quanta have run (then exit, to be replaced by a fresh fork)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    reader = os.fdopen(requests, "r")
    served = 0
    for line in reader:
        request = json.loads(line)
        start = time.time()
        usage = QuantumUsage()
        code = execute_request(request, served, max_quanta)
        cpu, max_rss = usage.end()
        served += int(request["quanta"])
        last = bool(max_quanta) and served >= max_quanta
        reply = {
            "status": code << 8,
            "executor": os.getpid(),
            "start": start,
            "end": time.time(),
            "last": last,
            "cpu": cpu,
            "max_rss": max_rss,
        }
        os.write(replies, (json.dumps(reply) + "\n").encode())
        if last:
            break
    os._exit(0)


class _ExecutorHandle:
    """The runner's handle on its forked executor."""

    def __init__(self, max_quanta: int) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(down_w)
            os.close(up_r)
            try:
                executor_main(down_r, up_w, max_quanta)
            finally:
                os._exit(1)
        os.close(down_r)
        os.close(up_w)
        self.requests = os.fdopen(down_w, "w")
        self.replies = os.fdopen(up_r, "r")

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self.requests.write(json.dumps(request) + "\n")
            self.requests.flush()
            line = self.replies.readline()
        except OSError:
            line = ""
        if line:
            reply = json.loads(line)
            if reply["last"]:
                self.close()
            return reply
        # The executor died under the job (a signal, os._exit): report its
        # status as the job's.
        _, status = os.waitpid(self.pid, 0)
        self.close(reap=False)
        return {"status": status, "executor": self.pid, "last": True}

    def close(self, reap: bool = True) -> None:
        for stream in (self.requests, self.replies):
            try:
                stream.close()
            except OSError:
                pass
        if reap:
            os.waitpid(self.pid, 0)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so that atexit hooks (the cache directory's) run


def runner_main(max_quanta: int) -> None:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)
    requests = os.fdopen(os.dup(0), "r")
    replies = os.fdopen(os.dup(1), "w")
    # Whatever the runner and its executors print outside jobs goes to its
    # stderr, never into the reply pipe.
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    try:
        _serve(requests, replies, max_quanta)
    finally:
        remove_shared_cache()  # a forked runner ends in os._exit: no atexit


def _serve(requests: Any, replies: Any, max_quanta: int) -> None:
    preload()
    warmed: set[str] = set()
    executor: _ExecutorHandle | None = None
    for line in requests:
        request = json.loads(line)
        pipetask = pipetask_argv(request_command(request), dict(os.environ))
        argv = pipetask[1] if pipetask is not None else []
        request["quanta"] = quantum_count(argv) if argv else 1
        if argv and len(argv) > argv.index("run-qbb") + 2 and argv[argv.index("run-qbb") + 2] not in warmed:
            warmed.add(argv[argv.index("run-qbb") + 2])
            warm_caches(argv)
            if executor is not None:  # fork again, from the warmer runner
                executor.requests.close()
                executor.close()
                executor = None
        if executor is None:
            gc.collect()
            gc.freeze()
            executor = _ExecutorHandle(max_quanta)
        reply = executor.call(request)
        if reply["last"]:
            executor = None
        replies.write(json.dumps({**reply, "runner": os.getpid()}) + "\n")
        replies.flush()


if __name__ == "__main__":
    runner_main(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
