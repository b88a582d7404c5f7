"""One object per way of running a job: ThreadPool, HighThroughput, Work Queue.

An `ExecutionMode` answers everything the runner, the parsl session, the
submitter, ``bps ping`` and the reports need to know about how the jobs of
a run are run, from the validated settings alone, so that no other module
tests an executor's or a provider's name:

- how many jobs run at once (`worker_slots`), the most memory a node gives
  them (`node_memory`) and how much the runner may hand out at once
  (`memory_budget`);
- where a warm runner serves the jobs (`warm_runner`, ``execution:
  in_process``): none, in this process (one per ThreadPool thread), in
  each worker (HighThroughput blocks) or one per node (`RunnerPlace`);
- how a job's memory request is held (`memory_enforcement`) and whether
  its jobs run out of the runner's reach (`remote`: their wrappers record
  what the watchdog kills);
- which parsl executor runs them (`make_executor`: only there is parsl
  imported, with `~.executors`; reports never build one), and what ``bps
  ping`` checks (`needs`).

`mode_for` picks the mode of a settings object: adding an executor is one
new subclass and one entry in `MODES`.  psutil and the standard library
only.
"""

from __future__ import annotations

import abc
import enum
import os
import re
from typing import TYPE_CHECKING, ClassVar

import psutil

from ...settings.parsl_section import ParslSettings

if TYPE_CHECKING:
    from parsl.executors.base import ParslExecutor

PARSL_RUN_DIR = "parsl_runinfo"
"""parsl's run directory, in the submit directory."""

__all__ = [
    "MODES",
    "ExecutionMode",
    "HighThroughputMode",
    "MemoryEnforcement",
    "RunnerPlace",
    "ThreadPoolMode",
    "WorkQueueMode",
    "mode_for",
]


class RunnerPlace(enum.Enum):
    """Where the warm runners that run a mode's jobs live."""

    NONE = "none"
    """No warm runner: each job is a new process (``execution: process``)."""
    THIS_PROCESS = "this process"
    """One per ThreadPool thread, forked from ``bps submit``."""
    EACH_WORKER = "each worker"
    """One per parsl worker, started by the worker (HighThroughput blocks)."""
    EACH_NODE = "each node"
    """One per node and run, reached over a socket (`~..warm.node_runner`)."""


class MemoryEnforcement(enum.Enum):
    """What holds a job to its memory request."""

    NONE = "none"
    """Nothing (``enforce_resources: false``)."""
    BUDGET = "budget"
    """The runner dispatches jobs while their requests fit in the nodes'
    memory; a job the kernel kills for memory is retried with more."""
    SUPERVISOR = "supervisor"
    """The job's supervisor (or its node's runner) measures and stops it."""
    WORK_QUEUE = "work_queue"
    """Work Queue's resource monitor."""


class ExecutionMode(abc.ABC):
    """How the jobs of a run are run (see the module documentation).

    Parameters
    ----------
    settings : `ParslSettings`
        The validated ``parsl_config`` section.
    """

    executor: ClassVar[str]
    """The ``parsl_config.executor`` value this mode implements."""

    takes_resource_spec: ClassVar[bool] = False
    """Whether jobs carry parsl's ``parsl_resource_specification``."""

    default_label: ClassVar[str]
    """The parsl label of its executor when it has no ``name``."""

    def __init__(self, settings: ParslSettings) -> None:
        self.settings = settings

    @property
    def label(self) -> str:
        """The parsl label of its executor: its ``name``, if it has one."""
        return self.settings.name or self.default_label

    @property
    def remote(self) -> bool:
        """Whether jobs run out of the runner's reach (on other nodes, or
        under a scheduler that starts them): their wrappers then record their
        processes and exit themselves."""
        return False

    @property
    def site(self) -> str:
        """Where the jobs run, as ``bps report``'s SITE column says: the
        provider (``Local`` or ``Slurm``)."""
        return self.settings.provider

    @property
    def warm_runner(self) -> RunnerPlace:
        """Where warm runners serve the jobs."""
        return RunnerPlace.NONE

    @property
    def node_runner_here(self) -> bool:
        """Whether a node runner lives on this machine (started ahead of the
        first job, while the init job runs)."""
        return self.warm_runner is RunnerPlace.EACH_NODE and self.settings.local_provider

    @property
    def relays_locally(self) -> bool:
        """Whether parsl's workers would only relay jobs to this machine's
        node runner, so that threads of ``bps submit`` do it instead."""
        return False

    @property
    def starts_blocks(self) -> bool:
        """Whether parsl starts blocks of workers through the provider."""
        return not self.relays_locally

    @property
    def memory_enforcement(self) -> MemoryEnforcement:
        """What holds each job to its memory request."""
        return MemoryEnforcement.BUDGET if self.settings.enforce_resources else MemoryEnforcement.NONE

    def cores_per_node(self) -> int:
        """Cores of one node, as far as the settings tell."""
        return self.settings.cores_per_node or os.cpu_count() or 1

    def workers_per_node(self) -> int:
        """Jobs of one core each that one node runs at once."""
        return self.cores_per_node()

    def worker_slots(self) -> int:
        """How many jobs the executor runs at once, as far as the settings
        tell (the jobs of one core each that fit in every block it may
        start)."""
        settings = self.settings
        return self.workers_per_node() * settings.nodes_per_block * settings.max_blocks

    def node_memory(self) -> int | None:
        """The most memory (MB) one node gives the jobs: Slurm's
        ``mem_per_node`` on Slurm, this machine's memory otherwise; `None`
        if unknown."""
        if not self.settings.local_provider:
            return self.settings.mem_per_node * 1024 if self.settings.mem_per_node else None
        return int(psutil.virtual_memory().total / 2**20)

    def memory_budget(self) -> int | None:
        """How much memory (MB) the runner lets the jobs it dispatches ask
        for at once: every node's memory; `None` if unknown or if the
        executor packs jobs by memory itself."""
        per_node = self.node_memory()
        if per_node is None or self.settings.local_provider:
            return per_node
        return per_node * self.settings.nodes_per_block * self.settings.max_blocks

    def in_flight(self) -> int:
        """Most jobs handed to parsl at once."""
        return self.settings.max_in_flight or max(16, 2 * self.worker_slots())

    def supervisor_memory(self) -> bool:
        """Whether the job supervisor holds process-mode jobs to their memory
        request (``--memory``)."""
        return False

    def supervises(self, walltime: float | None) -> bool:
        """Whether a process-mode job runs under the job supervisor (rather
        than the bash builtins' wrapper): out of the runner's reach, held to
        its memory or to a walltime."""
        return self.remote or self.supervisor_memory() or walltime is not None

    def needs(self) -> tuple[str, ...]:
        """What ``bps ping`` must find working: ``work_queue``,
        ``high_throughput``, and the batch system of the provider
        (``slurm``, ``torque``)."""
        return ()

    def batch_system(self) -> tuple[str, ...]:
        """The batch system blocks are submitted to (none for Local)."""
        return () if self.settings.local_provider else (self.settings.provider.lower(),)

    def node_runner_memory(self) -> bool:
        """Whether node runners hold in-process jobs to their memory request."""
        return False

    @abc.abstractmethod
    def make_executor(self, submit_dir: str) -> ParslExecutor:
        """The parsl executor that runs the jobs (parsl is imported here
        only: reports and ``bps status`` never build one).

        Parameters
        ----------
        submit_dir : `str`
            The run's submit directory (parsl's files go in its
            ``parsl_runinfo``).
        """
        raise NotImplementedError


class ThreadPoolMode(ExecutionMode):
    """Jobs in threads of ``bps submit``, ``max_threads`` at once; warm
    runners forked from it, one per thread."""

    executor = "ThreadPool"
    default_label = "thread_pool"

    @property
    def site(self) -> str:
        return "Local"

    @property
    def starts_blocks(self) -> bool:
        return False

    @property
    def warm_runner(self) -> RunnerPlace:
        return RunnerPlace.THIS_PROCESS if self.settings.in_process else RunnerPlace.NONE

    def worker_slots(self) -> int:
        return self.settings.max_threads

    def node_memory(self) -> int | None:
        return int(psutil.virtual_memory().total / 2**20)

    def memory_budget(self) -> int | None:
        return self.node_memory()

    def make_executor(self, submit_dir: str) -> ParslExecutor:
        from parsl.executors import ThreadPoolExecutor

        run_dir = os.path.join(submit_dir, PARSL_RUN_DIR)
        return ThreadPoolExecutor(label=self.label, max_threads=self.worker_slots(), working_dir=run_dir)


class HighThroughputMode(ExecutionMode):
    """parsl's worker pools in blocks (Local or Slurm); warm runners in
    each worker, or, on this machine, the node runner fed by threads of
    ``bps submit`` (`relays_locally`)."""

    executor = "HighThroughput"

    @property
    def default_label(self) -> str:  # type: ignore[override]
        return "htex_local" if self.relays_locally else "htex"

    @property
    def remote(self) -> bool:
        return not self.settings.local_provider

    @property
    def relays_locally(self) -> bool:
        # A worker pool on this machine would add nothing but its start
        # (interchange, pool, workers: about 6 s before the first quantum).
        return self.settings.in_process and self.settings.local_provider

    @property
    def warm_runner(self) -> RunnerPlace:
        if not self.settings.in_process:
            return RunnerPlace.NONE
        return RunnerPlace.EACH_NODE if self.relays_locally else RunnerPlace.EACH_WORKER

    def workers_per_node(self) -> int:
        settings = self.settings
        return settings.max_workers or max(int(self.cores_per_node() / settings.cores_per_worker), 1)

    def needs(self) -> tuple[str, ...]:
        return ("high_throughput", *self.batch_system())

    def make_executor(self, submit_dir: str) -> ParslExecutor:
        from parsl.executors import ThreadPoolExecutor

        from .executors import high_throughput_executor

        run_dir = os.path.join(submit_dir, PARSL_RUN_DIR)
        if self.relays_locally:
            return ThreadPoolExecutor(label=self.label, max_threads=self.worker_slots(), working_dir=run_dir)
        return high_throughput_executor(self.settings, self.label, run_dir)


class WorkQueueMode(ExecutionMode):
    """Work Queue workers that the provider starts, packing jobs by their
    requests; warm runners one per node and run."""

    executor = "WorkQueue"
    default_label = "work_queue"
    takes_resource_spec = True

    @property
    def remote(self) -> bool:
        return True

    @property
    def warm_runner(self) -> RunnerPlace:
        return RunnerPlace.EACH_NODE if self.settings.in_process else RunnerPlace.NONE

    @property
    def memory_enforcement(self) -> MemoryEnforcement:
        if not self.settings.enforce_resources:
            return MemoryEnforcement.NONE
        if self.settings.resource_monitor == "work_queue":
            return MemoryEnforcement.WORK_QUEUE
        return MemoryEnforcement.SUPERVISOR

    def workers_per_node(self) -> int:
        match = re.search(r"--cores[= ](\d+)", self.settings.worker_options)
        return int(match.group(1)) if match else self.cores_per_node()

    def node_memory(self) -> int | None:
        if match := re.search(r"--memory[= ](\d+)", self.settings.worker_options):
            return int(match.group(1))
        return super().node_memory()

    def memory_budget(self) -> int | None:
        return None  # Work Queue packs its workers by the requests

    def supervisor_memory(self) -> bool:
        return self.memory_enforcement is MemoryEnforcement.SUPERVISOR

    def node_runner_memory(self) -> bool:
        return self.settings.enforce_resources

    def make_executor(self, submit_dir: str) -> ParslExecutor:
        """Each task declares cores, memory and disk, so a worker runs as
        many at once as fit (without that Work Queue runs one task per
        worker).  The manager takes only workers that know the run's
        password (`~..job_io.run_secrets`, made by the session before this runs);
        parsl gives every worker it starts ``--password``."""
        from .executors import work_queue_executor

        # parsl turns Work Queue's resource monitor on only with autolabel;
        # a job's explicit request still wins over labels, and exceeding it
        # is then a failure, not a retry.  By default the job supervisor
        # measures memory instead.
        autolabel = self.memory_enforcement is MemoryEnforcement.WORK_QUEUE
        working_dir = os.path.join(submit_dir, PARSL_RUN_DIR, self.label)
        return work_queue_executor(self.settings, self.label, submit_dir, working_dir, autolabel)

    def needs(self) -> tuple[str, ...]:
        return ("work_queue", *self.batch_system())


MODES: dict[str, type[ExecutionMode]] = {
    mode.executor: mode for mode in (ThreadPoolMode, HighThroughputMode, WorkQueueMode)
}
"""The mode of each ``parsl_config.executor`` value."""


def mode_for(settings: ParslSettings) -> ExecutionMode:
    """The way the jobs of a run with these settings are run."""
    return MODES[settings.executor](settings)
