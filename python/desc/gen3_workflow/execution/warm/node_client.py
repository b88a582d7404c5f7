"""A Work Queue task's side of its node's runner: find it, start it if
there is none, hand it a job (see `~.node_runner` and `~.protocol`).

Standard library and psutil (Work Queue tasks import it).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from typing import Any

from ...constants import RUN_DIR_VARIABLE
from ...errors import RunnerError
from ..job_io import run_secrets
from .protocol import NAME_TAKEN_EXIT, encode_request, peer, socket_name

__all__ = [
    "RUNNER_START_SECONDS",
    "call_node_runner",
    "connect_to_node_runner",
    "open_node_runner",
    "runner_log",
]

RUNNER_START_SECONDS = 300.0
"""How long a Work Queue task waits for its node's runner to answer at all."""


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


def runner_log(run_dir: str) -> str:
    """Where a node runner started from this process logs."""
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


def open_node_runner(run_dir: str, max_quanta: int, watch: int | None = None) -> socket.socket:
    """A connection to this node's runner of the run, started if need be
    (see `desc.gen3_workflow.execution.warm.node_runner`) and told to end with
    ``watch`` (by default the Work Queue worker of this task)."""
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
            log = runner_log(run_dir)
            from . import node_runner  # only to start one: it imports what only the runner needs

            words = [sys.executable, "-m", node_runner.__name__, "--run-dir", run_dir]
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


def call_node_runner(run_dir: str, max_quanta: int, request: dict[str, Any]) -> dict[str, Any]:
    """Hand a job to the node's runner; its answer once the job has ended."""
    with open_node_runner(run_dir, max_quanta) as conn:
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
