"""What the plug-in adds to parsl's executors: its block error handler and
heartbeat, Work Queue's password in the workers' command line, the fast
start of Work Queue's task script.  Each
`~desc.gen3_workflow.execution.bridge.modes.ExecutionMode` builds its executor
with these (``make_executor``).
"""

from __future__ import annotations

import shlex
import sys

from parsl.executors import WorkQueueExecutor
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.error_handlers import windowed_error_handler
from parsl.jobs.states import JobStatus

from ..worker import wq_task

__all__ = [
    "HEARTBEAT_PERIOD",
    "HEARTBEAT_THRESHOLD",
    "PasswordWorkQueueExecutor",
    "block_error_handler",
    "fast_task_start",
]


# A block that dies (a lost node, a killed worker) is replaced; only this
# many failed blocks in a row (workers that cannot start at all) fail the
# run's remaining jobs instead of waiting for workers forever.
BLOCK_FAILURES_IN_A_ROW = 3
HEARTBEAT_PERIOD = 10
HEARTBEAT_THRESHOLD = 45


def block_error_handler(executor: BlockProviderExecutor, status: dict[str, JobStatus]) -> None:
    """parsl's windowed handler over the last `BLOCK_FAILURES_IN_A_ROW` blocks.

    parsl's default gives up on the executor as soon as its ``init_blocks``
    blocks have all failed, i.e. at the first lost block of a one-block run.
    """
    windowed_error_handler(executor, status, threshold=BLOCK_FAILURES_IN_A_ROW)


class PasswordWorkQueueExecutor(WorkQueueExecutor):
    """parsl's `~parsl.executors.WorkQueueExecutor`, with the workers'
    password file quoted in their command line (parsl pastes the path as it
    is, and a submit directory may hold spaces)."""

    def _construct_worker_command(self) -> str:
        command: str = super()._construct_worker_command()
        path = self.project_password_file
        if path:
            command = command.replace(f" --password {path}", f" --password {shlex.quote(path)}", 1)
        return command


_PARSL_TASK = "python3 exec_parsl_function.py"


def fast_task_start(executor: WorkQueueExecutor) -> None:
    """Start parsl's task script through `~..worker.wq_task`, which skips
    importing the whole of parsl (about 1.5 s per task); left as it is if
    this parsl builds its command otherwise."""
    launch = getattr(executor, "launch_cmd", None)
    if isinstance(launch, str) and _PARSL_TASK in launch:
        fast = f"{shlex.quote(sys.executable)} -m {wq_task.__name__} exec_parsl_function.py"
        executor.launch_cmd = launch.replace(_PARSL_TASK, fast)
