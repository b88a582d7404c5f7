"""Executor factories: how parsl runs the jobs it is given.

One small function per ``parsl_config.executor`` value, each returning an
`ExecutorChoice`: the parsl executor plus whether it understands parsl's
per-task resource specification.  Adding an executor is one new function and
one entry in `EXECUTOR_FACTORIES`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
from collections.abc import Callable

from parsl.addresses import address_by_hostname
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor, WorkQueueExecutor
from parsl.executors.base import ParslExecutor
from parsl.executors.status_handling import BlockProviderExecutor
from parsl.jobs.error_handlers import windowed_error_handler
from parsl.jobs.states import JobStatus

from ..execution import run_secrets, wq_task
from .capacity import relays_locally, worker_slots
from .parsl_section import ParslSettings
from .providers import make_provider

__all__ = [
    "EXECUTOR_FACTORIES",
    "PARSL_RUN_DIR",
    "ExecutorChoice",
    "PasswordWorkQueueExecutor",
    "fast_task_start",
    "make_executor",
]


@dataclasses.dataclass(frozen=True)
class ExecutorChoice:
    """A configured executor and what it accepts."""

    executor: ParslExecutor
    """The parsl executor that runs the quantum jobs."""

    takes_resource_spec: bool
    """Whether jobs should carry ``parsl_resource_specification``."""


PARSL_RUN_DIR = "parsl_runinfo"
"""parsl's run directory, in the submit directory."""

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


def thread_pool(settings: ParslSettings, submit_dir: str) -> ExecutorChoice:
    """Jobs in threads of the submitting process, ``max_threads`` at once."""
    run_dir = os.path.join(submit_dir, PARSL_RUN_DIR)
    return ExecutorChoice(
        ThreadPoolExecutor(label="thread_pool", max_threads=settings.max_threads, working_dir=run_dir),
        takes_resource_spec=False,
    )


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


def work_queue(settings: ParslSettings, submit_dir: str) -> ExecutorChoice:
    """Jobs on Work Queue workers that the provider starts.

    Each task declares cores, memory and disk, so a worker runs as many at
    once as fit; without that Work Queue runs one task per worker.  The
    manager takes only workers that know the run's password
    (`~desc.gen3_workflow.execution.run_secrets`, made by the session
    before this runs); parsl gives every worker it starts ``--password``.
    """
    # parsl pastes worker_options into a shell command line: re-quote it word
    # by word so that metacharacters reach work_queue_worker as literal text.
    worker_options = shlex.join(shlex.split(settings.worker_options))
    executor = PasswordWorkQueueExecutor(
        label="work_queue",
        provider=make_provider(settings),
        working_dir=os.path.join(submit_dir, PARSL_RUN_DIR, "work_queue"),
        project_password_file=run_secrets.secret_path(submit_dir, run_secrets.WORK_QUEUE_PASSWORD),
        port=settings.port,
        shared_fs=True,
        max_retries=settings.wq_max_retries,
        worker_options=worker_options,
        # parsl turns Work Queue's resource monitor on only with
        # autolabel; a job's explicit request still wins over labels,
        # and exceeding it is then a failure, not a retry.  By default the
        # job supervisor measures memory instead (see submitters).
        autolabel=settings.enforce_resources and settings.resource_monitor == "work_queue",
        autocategory=True,
    )
    # Its constructor takes no handler (parsl 2026.10): set it afterwards.
    executor.block_error_handler = block_error_handler
    if settings.execution == "in_process":
        # Only the plug-in's own python apps can skip parsl's imports; a bash
        # app's function needs parsl.dataflow to be unpickled, so the fast
        # start would import most of parsl and then hand over to parsl's
        # script, which imports it again (measured: 408 s against 67 s for
        # 200 null jobs in tests/test_watchdog_e2e.py's soak).
        fast_task_start(executor)
    return ExecutorChoice(executor, takes_resource_spec=True)


_PARSL_TASK = "python3 exec_parsl_function.py"


def fast_task_start(executor: WorkQueueExecutor) -> None:
    """Start parsl's task script through `desc.gen3_workflow.execution.
    wq_task`, which skips importing the whole of parsl (about 1.5 s per
    task); left as it is if this parsl builds its command otherwise."""
    launch = getattr(executor, "launch_cmd", None)
    if isinstance(launch, str) and _PARSL_TASK in launch:
        fast = f"{shlex.quote(sys.executable)} -m {wq_task.__name__} exec_parsl_function.py"
        executor.launch_cmd = launch.replace(_PARSL_TASK, fast)


def high_throughput(settings: ParslSettings, submit_dir: str) -> ExecutorChoice:
    """Jobs on parsl's own worker pools that the provider starts (on this
    machine in ``in_process`` mode: threads relaying to its runner, see
    `relays_locally`)."""
    run_dir = os.path.join(submit_dir, PARSL_RUN_DIR)
    if relays_locally(settings):
        threads = worker_slots(settings)
        relay = ThreadPoolExecutor(label="htex_local", max_threads=threads, working_dir=run_dir)
        return ExecutorChoice(relay, takes_resource_spec=False)
    address = settings.address
    if address is None:
        # Remote workers need an IP address they can reach; parsl refuses a
        # bare host name.
        address = "127.0.0.1" if settings.provider == "Local" else address_by_hostname()
    return ExecutorChoice(
        HighThroughputExecutor(
            label="htex",
            provider=make_provider(settings),
            address=address,
            max_workers_per_node=settings.max_workers,
            cores_per_worker=settings.cores_per_worker,
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
        ),
        takes_resource_spec=False,
    )


EXECUTOR_FACTORIES: dict[str, Callable[[ParslSettings, str], ExecutorChoice]] = {
    "ThreadPool": thread_pool,
    "WorkQueue": work_queue,
    "HighThroughput": high_throughput,
}


def make_executor(settings: ParslSettings, submit_dir: str) -> ExecutorChoice:
    """Build the executor named by ``settings.executor``.

    Parameters
    ----------
    settings : `ParslSettings`
        Validated ``parsl_config``.
    submit_dir : `str`
        The run's submit directory (the executor's own files go in its
        `PARSL_RUN_DIR`).
    """
    return EXECUTOR_FACTORIES[settings.executor](settings, submit_dir)
