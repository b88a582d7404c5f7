"""The ``parsl_config:`` section of a bps file, validated up front.

Every key the plug-in understands is a field of `ParslSettings`, with its
type and default.  `ParslSettings.from_mapping` rejects unknown keys, wrong
types and out-of-range values with a one-line
`~desc.gen3_workflow.errors.ParslConfigError` that names
the key and what it accepts, so that ``bps submit`` stops before the
QuantumGraph is built and before any job starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from typing import Any

from ..errors import ParslConfigError
from .executor_list import RUN_WIDE_KEYS, check_single_form, read_executor_list
from .value_checks import (
    EXECUTIONS,
    EXECUTORS,
    LAUNCHERS,
    LOG_LEVELS,
    PROVIDERS,
    RESOURCE_MONITORS,
    check_values,
    coerce,
    labels,
)

__all__ = [
    "EXECUTIONS",
    "EXECUTORS",
    "LAUNCHERS",
    "LOG_LEVELS",
    "PROVIDERS",
    "RESOURCE_MONITORS",
    "ParslSettings",
]


@dataclasses.dataclass(frozen=True, slots=True)
class ParslSettings:
    """Validated contents of the ``parsl_config`` section.

    Field docstrings double as the reference of the keys (see ``doc/``).
    """

    executor: str = "ThreadPool"
    """Parsl executor: ThreadPool, WorkQueue or HighThroughput."""

    provider: str = "Local"
    """Where workers run, for WorkQueue and HighThroughput: Local, Slurm or
    Torque (PBS/Torque batch jobs, parsl's TorqueProvider)."""

    launcher: str | None = None
    """How a block starts its workers: Single (one node), Srun (inside a
    Slurm allocation) or MpiRun (``mpirun``, one worker pool per node of a
    PBS/Torque job).  Default: Single when ``nodes_per_block`` is 1, else
    MpiRun with the Torque provider and Srun with the others."""

    retries: int | None = None
    """How many times a failed job is tried again, for every job, replacing
    ctrl_bps's ``numberOfRetries`` (default 5, per label with
    ``pipetask.<label>.numberOfRetries``), which applies when this is unset.
    ``retryUnlessExit`` and memory scaling apply either way (see "When jobs
    fail" in the user guide)."""

    monitoring: bool = False
    """Run parsl's MonitoringHub, database ``monitoring.db`` in the submit
    directory."""

    monitoring_resources: bool = False
    """With ``monitoring``, also parsl's resource monitoring: a monitor
    process per task sampling it with psutil, for parsl-visualize's resource
    plots.  Off by default: the plug-in measures each job's CPU time and
    peak memory itself, for every executor and at no cost, where parsl's
    monitors slowed short HighThroughput jobs eleven-fold (doc/scale.md)."""

    checkpoint: bool = False
    """Write parsl checkpoints at each task exit."""

    log_level: str = "WARNING"
    """Lowest level of parsl's messages echoed to the terminal; parsl's full
    log always goes to ``parsl.log`` in the submit directory."""

    progress: bool = True
    """Show the run's progress during ``bps submit``: per task label done,
    failed, running and total, rate and ETA; redrawn in place on a terminal,
    printed (and logged at INFO) every ``progress_interval`` seconds
    otherwise."""

    progress_interval: float = 60.0
    """Seconds between progress reports when the output is not a terminal."""

    max_threads: int = dataclasses.field(default_factory=lambda: os.cpu_count() or 1)
    """ThreadPool: number of jobs run at once (default: this machine's cores)."""

    nodes_per_block: int = 1
    """Nodes per provider block."""

    init_blocks: int = 1
    """Blocks requested when the run starts."""

    min_blocks: int = 0
    """Blocks kept even when idle."""

    max_blocks: int = 1
    """Most blocks requested at once."""

    worker_options: str = ""
    """WorkQueue: extra ``work_queue_worker`` options, e.g. ``--memory=90000``
    (not ``--password``: the plug-in gives workers the run's own)."""

    worker_init: str = ""
    """Shell commands run before workers start (e.g. activating an
    environment)."""

    port: int = 0
    """WorkQueue: manager port; 0 picks a free one."""

    wq_max_retries: int = 1
    """WorkQueue: how often Work Queue itself resubmits a task whose worker
    was lost, before parsl's own ``retries``."""

    enforce_resources: bool = True
    """WorkQueue: hold each job to its ctrl_bps memory request
    (``requestMemory``); a job that uses more is stopped and fails, with a
    message naming the memory it used, instead of crowding its neighbours.
    False trusts the requests without measuring (Work Queue still packs
    jobs by the cores, memory and disk they request)."""

    resource_monitor: str = "supervisor"
    """WorkQueue with ``enforce_resources``: what measures the jobs:
    ``supervisor`` (the plug-in's own job supervisor, which measures the
    payload's process tree every second) or ``work_queue`` (Work Queue's
    resource monitor, which has been seen to deadlock after its job ended;
    the watchdog then kills it)."""

    max_in_flight: int | None = None
    """Most jobs handed to parsl at once (the runner keeps the rest); by
    default twice the executor's worker slots, at least 16."""

    return_grace: float = 60.0
    """Seconds a job's task may take to come back after its payload ended;
    then its processes are killed and the job's own record of its payload
    decides how it went (a payload that succeeded is not run again)."""

    stuck_factor: float = 20.0
    """A job running this many times the median run time of its label's
    successful jobs (once five have succeeded) is stopped as stuck and
    retried; 0 never stops one.  ``requestWalltime`` stops a job too."""

    stuck_min_seconds: float = 600.0
    """... but not before it has run this many seconds."""

    max_workers: int | None = None
    """HighThroughput: workers per node (default: cores / cores_per_worker)."""

    cores_per_worker: float = 1.0
    """HighThroughput: cores each worker claims."""

    address: str | None = None
    """Work Queue and HighThroughput: the address workers reach ``bps submit``
    at.  Default: 127.0.0.1 when every worker runs on this host, else this
    host's address on the route to the compute nodes
    (`~desc.gen3_workflow.execution.bridge.worker_address`)."""

    partition: str | None = None
    """Slurm partition."""

    account: str | None = None
    """Slurm account (Torque: ``qsub -A``)."""

    queue: str | None = None
    """Torque: queue the blocks are submitted to (``qsub -q``)."""

    qos: str | None = None
    """Slurm quality of service."""

    constraint: str | None = None
    """Slurm node constraint (e.g. ``cpu`` at NERSC)."""

    cores_per_node: int | None = None
    """Slurm: cores requested per node (``--cpus-per-task``); without it
    Slurm grants one core however many workers run.  Torque: processors per
    node (``#PBS -l nodes=N:ppn=cores_per_node``, default 1)."""

    mem_per_node: int | None = None
    """Slurm: memory requested per node, in GB (``--mem``)."""

    walltime: str = "01:00:00"
    """Slurm and Torque: wall time of each block, ``[D-]HH:MM:SS``."""

    time_min: str | None = None
    """Slurm: minimum wall time (``--time-min``) for backfill."""

    scheduler_options: str = ""
    """Slurm: extra ``#SBATCH`` lines (Torque: ``#PBS`` lines)."""

    exclusive: bool = True
    """Slurm: request whole nodes."""

    execution: str = "in_process"
    """How a worker runs a quantum job: ``in_process`` (the default: a warm
    runner that imported the middleware once runs ``pipetask run-qbb`` in a
    forked process; one per worker, or per node and run with Work Queue) or
    ``process`` (a ``pipetask run-qbb`` subprocess per job; see
    ``doc/parsl_config.md``)."""

    max_quanta_per_worker: int = 100
    """in_process: quanta a forked executor runs before it exits and the
    runner forks a fresh one; 1 forks a fresh executor for every job (full
    isolation, slower), 0 never recycles."""

    name: str | None = None
    """The executor's name, shown in status and reports (default: the
    ``executor`` value); required in each entry of ``executors``."""

    worker_memory: int | None = None
    """MB: the largest memory request (``requestMemory``) of a job this
    executor takes, when a run has several (``executors``); each job goes
    to the executor with the smallest one that fits.  HighThroughput: also
    the memory each worker claims (parsl's ``mem_per_worker``)."""

    labels: tuple[str, ...] = ()
    """In an entry of ``executors``: task labels whose jobs always go to
    this executor (a memory-scaled retry that outgrows it moves on)."""

    executors: tuple[ParslSettings, ...] = ()
    """Several executors in one run: a list of entries, each with a
    ``name`` and any of the keys above but the run-wide ones (see
    `~.executor_list`); the other keys at the top are every entry's
    defaults.  Empty: one executor, the top-level keys'."""

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """Names of every accepted key, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def as_dict(self) -> dict[str, Any]:
        """Every key with its value (what `from_mapping` takes back)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        # An entry's run-wide keys are the top's: written there only.
        values["executors"] = [
            {k: v for k, v in e.as_dict().items() if k not in RUN_WIDE_KEYS} | {"labels": list(e.labels)}
            for e in self.executors
        ]
        del values["labels"]
        if not self.executors:
            del values["executors"]
        else:
            del values["name"]
        return values

    def executor_list(self) -> tuple[ParslSettings, ...]:
        """The run's executors: the ``executors`` entries, or this one."""
        return self.executors or (self,)

    @property
    def executor_name(self) -> str:
        """The executor's name in status and reports."""
        return self.name or self.executor

    @classmethod
    def from_mapping(cls, section: Mapping[str, Any] | None) -> ParslSettings:
        """Validate a ``parsl_config`` section.

        Parameters
        ----------
        section : `~collections.abc.Mapping` or `None`
            The section as read from the bps file; `None` or empty gives the
            defaults (ThreadPool on this machine's cores).

        Returns
        -------
        settings : `ParslSettings`
            The validated settings.

        Raises
        ------
        ParslConfigError
            One line naming the offending key and what it accepts.
        """
        section = dict(section or {})
        if "executors" in section:
            entries = section.pop("executors")
            executors = read_executor_list(section, entries, cls._from_keys)
            return dataclasses.replace(cls.from_mapping(section), executors=executors)
        check_single_form(section)
        return cls._from_keys(section)

    @classmethod
    def _from_keys(cls, section: dict[str, Any]) -> ParslSettings:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key not in fields:
                close = difflib.get_close_matches(str(key), fields, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ParslConfigError(
                    f"parsl_config.{key}: unknown key{hint}; allowed keys: {', '.join(fields)}"
                )
            values[key] = labels(value) if key == "labels" else coerce(key, value, fields[key].type)
        settings = cls(**values)
        check_values(settings)
        return settings

    @classmethod
    def from_bps_config(cls, config: Any) -> ParslSettings:
        """Validate the ``parsl_config`` section of a bps configuration.

        A ctrl_bps_parsl site (``computeSite`` and ``site.<computeSite>.class``)
        is translated first (`~.ctrl_bps_parsl_sites`); the keys of
        ``parsl_config`` then replace the translation's, key by key.

        Parameters
        ----------
        config : `lsst.ctrl.bps.BpsConfig`
            The run's configuration.
        """
        from .ctrl_bps_parsl_reading import merged_parsl_config, relabel_error, site_translation

        found, section = config.search("parsl_config", opt={"default": None})
        if found and section is not None and not hasattr(section, "items"):
            raise ParslConfigError(f"parsl_config: expected a mapping of settings, got {section!r}")
        own = section.toDict() if hasattr(section, "toDict") else section
        translation = site_translation(config)
        if translation is None:
            return cls.from_mapping(own)
        try:
            return cls.from_mapping(merged_parsl_config(translation, own))
        except ParslConfigError as exc:
            raise relabel_error(exc, translation, own) from None

    @property
    def in_process(self) -> bool:
        """Whether quantum jobs run in warm runners (``execution: in_process``)."""
        return self.execution == "in_process"

    @property
    def local_provider(self) -> bool:
        """Whether blocks of workers start on this machine (or inside the
        current allocation), rather than as batch jobs."""
        return self.provider == "Local"

    @property
    def effective_launcher(self) -> str:
        """The launcher used when none is configured."""
        if self.launcher is not None:
            return self.launcher
        if self.nodes_per_block == 1:
            return "Single"
        # srun does not exist inside a PBS job; mpirun is how its nodes are reached.
        return "MpiRun" if self.provider == "Torque" else "Srun"
