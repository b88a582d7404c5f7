"""parsl's executors as the plug-in builds them, with what it adds: its
block error handler and heartbeat, Work Queue's password in the workers'
command line, the fast start of Work Queue's task script.  Each
`~desc.gen3_workflow.execution.bridge.modes.ExecutionMode` builds its executor
with these (``make_executor``).
"""

from __future__ import annotations

import os
import shlex
import sys

from parsl.executors import HighThroughputExecutor, WorkQueueExecutor
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.error_handlers import windowed_error_handler
from parsl.jobs.states import JobStatus

from ...settings.parsl_section import ParslSettings
from ..job_io import run_secrets
from ..worker import wq_task
from .providers import make_provider
from .worker_address import worker_address

__all__ = [
    "HEARTBEAT_PERIOD",
    "HEARTBEAT_THRESHOLD",
    "PasswordWorkQueueExecutor",
    "block_error_handler",
    "fast_task_start",
    "high_throughput_executor",
    "work_queue_executor",
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


def high_throughput_executor(settings: ParslSettings, label: str, run_dir: str) -> HighThroughputExecutor:
    """parsl's HighThroughputExecutor of an executor's settings, its files in
    ``run_dir`` (parsl's run directory)."""
    return HighThroughputExecutor(
        label=label,
        provider=make_provider(settings),
        # One address the managers can reach, not parsl's probe of all of this host's.
        address=worker_address(settings).address,
        max_workers_per_node=settings.max_workers,
        cores_per_worker=settings.cores_per_worker,
        # A node starts no more workers than its memory holds at this much
        # each, unless the workers were counted (a node whose memory is
        # partly used would start none).
        mem_per_worker=settings.worker_memory / 1024
        if settings.worker_memory and not settings.max_workers
        else None,
        working_dir=run_dir,
        worker_logdir_root=os.path.join(run_dir, "htex_workers"),
        block_error_handler=block_error_handler,
        # A node lost without a word (scancel, a crash) is noticed after
        # HEARTBEAT_THRESHOLD s instead of parsl's 120; its jobs are retried.
        heartbeat_period=HEARTBEAT_PERIOD,
        heartbeat_threshold=HEARTBEAT_THRESHOLD,
        # CurveZMQ between the interchange and the workers (parsl's
        # default, stated so that it stays on): nobody else on the
        # network can hand a worker a task or read its results.
        encrypted=True,
    )


def work_queue_executor(
    settings: ParslSettings, label: str, submit_dir: str, working_dir: str, autolabel: bool
) -> PasswordWorkQueueExecutor:
    """parsl's WorkQueueExecutor of an executor's settings.

    Each task declares cores, memory and disk, so a worker runs as many at
    once as fit (without that Work Queue runs one task per worker).  The
    manager takes only workers that know the run's password
    (`~..job_io.run_secrets`, made by the session before this runs); parsl
    gives every worker it starts ``--password``.  Its files go in
    ``working_dir``; ``autolabel``: Work Queue's resource monitor measures
    the tasks.
    """
    executor = PasswordWorkQueueExecutor(
        label=label,
        provider=make_provider(settings),
        # Not parsl's default, this host's name, which compute nodes may not resolve.
        address=worker_address(settings).address,
        working_dir=working_dir,
        project_password_file=run_secrets.secret_path(submit_dir, run_secrets.WORK_QUEUE_PASSWORD),
        port=settings.port,
        shared_fs=True,
        max_retries=settings.wq_max_retries,
        # parsl pastes worker_options into a shell command line: re-quote it
        # word by word so that metacharacters reach the worker as literal text.
        worker_options=shlex.join(shlex.split(settings.worker_options)),
        autolabel=autolabel,
        autocategory=True,
    )
    # Its constructor takes no handler (parsl 2026.10): set it afterwards.
    executor.block_error_handler = block_error_handler
    if settings.in_process:
        # Only the plug-in's own python apps can skip parsl's imports; a
        # bash app's function needs parsl.dataflow to be unpickled, so the
        # fast start would import most of parsl and then hand over to
        # parsl's script, which imports it again (measured: 408 s against
        # 67 s for 200 null jobs in tests/test_watchdog_e2e.py's soak).
        fast_task_start(executor)
    return executor
