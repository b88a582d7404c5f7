"""ctrl_bps_parsl's ``computeSite`` / ``site:`` sections, read as they are.

A bps file written for lsst/ctrl_bps_parsl selects a site with
``computeSite: NAME`` and configures it under ``site.NAME``, whose ``class``
names one of ctrl_bps_parsl's `SiteConfig` subclasses.  `SiteClass` ties
each class this plug-in can run to the site keys it takes (with
ctrl_bps_parsl's meaning and defaults, as read from its source) and to a
function that turns them into a ``parsl_config`` mapping of ours.  This
module holds the building blocks and the single-executor classes
(`SINGLE_EXECUTOR_CLASSES`); `~.ctrl_bps_parsl_multi` adds the classes
that run several executors and holds the whole table (``SITE_CLASSES``).
`~.ctrl_bps_parsl_reading` reads a bps file's site section with it;
`ParslSettings.from_bps_config
<desc.gen3_workflow.settings.parsl_section.ParslSettings.from_bps_config>`
merges the result under the file's own ``parsl_config`` (whose keys win,
key by key).  See ``doc/ctrl_bps_parsl.md``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ParslConfigError

__all__ = [
    "COMMON_KEYS",
    "DOC_PAGE",
    "REFUSED_KEYS",
    "REQUIRED",
    "SINGLE_EXECUTOR_CLASSES",
    "SITE_PACKAGE",
    "SiteClass",
    "SiteContext",
    "SiteKey",
    "SiteTranslation",
    "common_parsl_config",
    "slurm_keys",
    "slurm_parsl_config",
]

SITE_PACKAGE = "lsst.ctrl.bps.parsl.sites"
DOC_PAGE = "doc/ctrl_bps_parsl.md"

REQUIRED = object()
"""Default of a key ctrl_bps_parsl requires."""


@dataclasses.dataclass(frozen=True)
class SiteKey:
    """One key of a ctrl_bps_parsl site section that this plug-in takes."""

    name: str
    kind: type
    """The type ctrl_bps_parsl requires (`int`, `str`, `bool`, `list`, `dict`; `float` takes an int)."""
    default: Any
    """ctrl_bps_parsl's default for this class (`None`: unset)."""
    meaning: str
    """What ctrl_bps_parsl does with it (for the documentation)."""
    unit: str = ""
    """The unit of a number (``GB``), named when a value is refused."""
    subkeys: tuple[SiteKey, ...] = ()
    """A mapping's keys (`dict` kind), checked and defaulted as the section's own."""

    @property
    def required(self) -> bool:
        """Whether ctrl_bps_parsl refuses a site without it."""
        return self.default is REQUIRED


SiteSection = dict[str, Any]
"""A site section, every key of the class present (their defaults applied)."""


@dataclasses.dataclass(frozen=True)
class SiteContext:
    """What a translation needs beyond the site section."""

    name: str
    """The site's name (``computeSite``)."""
    workflow_name: str
    """ctrl_bps_parsl's workflow name (``project.campaign``), its Slurm job name."""


@dataclasses.dataclass(frozen=True)
class SiteClass:
    """A ctrl_bps_parsl site class this plug-in runs."""

    path: str
    """Where ctrl_bps_parsl defines it, e.g. ``lsst.ctrl.bps.parsl.sites.slurm.Slurm``."""
    aliases: tuple[str, ...]
    """Other paths it is documented under (the ``sites`` package's exports)."""
    keys: tuple[SiteKey, ...]
    translate: Callable[[SiteSection, SiteContext], dict[str, Any]]
    """Site section (defaults applied) -> our ``parsl_config`` mapping."""
    entry_sources: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    """Multi-executor classes: for a key of an ``executors`` entry, the site
    keys its value may come from (``{name}`` is the entry's name, e.g.
    ``{name}_walltime``; ``small.memory`` is key ``memory`` of ``small``):
    the one that wins when several are given first, the default's last."""

    @property
    def key_names(self) -> tuple[str, ...]:
        """Every key it takes, ``class`` first."""
        return ("class", *(key.name for key in self.keys))


@dataclasses.dataclass(frozen=True)
class SiteTranslation:
    """A site section turned into ``parsl_config`` keys."""

    site: str
    """The site's name (``computeSite``)."""
    class_path: str
    """Its ``class``, as written."""
    parsl_config: dict[str, Any]
    """Our keys and values."""
    sources: dict[str, str]
    """For each of our keys, the site key it came from (for error messages)."""

    @property
    def origin(self) -> str:
        """Where the settings came from, as ``bps ping`` says it."""
        return f"site.{self.site} ({self.class_path})"


# -- Keys every ctrl_bps_parsl site takes (SiteConfig, site.py) -------------

COMMON_KEYS = (
    SiteKey("commandPrefix", str, "", "shell commands run before each job's command, in the job's shell"),
    SiteKey("environment", bool, False, "export the submitting shell's environment before each job"),
    SiteKey("retries", int, 1, "times parsl runs a failed job again"),
    SiteKey("monitorEnable", bool, False, "parsl's MonitoringHub"),
    SiteKey("checkpoint", bool, False, "parsl checkpoints at task exit (not read by ctrl_bps_parsl)"),
)

REFUSED_KEYS = {
    "monitorFilename": "the monitoring database is always monitoring.db in the submit directory, "
    "where bps report and workflow_summary read it; remove the key",
    "monitorInterval": "parsl's resource monitoring has no interval setting here; the plug-in measures "
    "each job's CPU time and peak memory itself (parsl_config.monitoring_resources: true adds parsl's)",
    "run_dir": "parsl's run directory is parsl_runinfo in the submit directory; remove the key",
    "cmd_timeout": "the provider's command timeout is parsl's own; remove the key",
    "strategy": "blocks are scaled by parsl's default strategy (idle ones end after a while); remove the key",
}
"""ctrl_bps_parsl keys that this plug-in knowingly does not take, and why."""

_ENVIRONMENT_SKIPPED = re.compile(
    r"^(DISPLAY|PWD|OLDPWD|SHLVL|_|HOSTNAME|(SLURM|PBS|GEN3WF)_\w*"
    r"|\w*(PASSWORD|PASSWD|TOKEN|SECRET|CREDENTIAL|API_KEY|PRIVATE_KEY)\w*)$",
    re.IGNORECASE,
)
"""Variables not copied into a batch job: per-shell or per-host values, the
batch system's own (a job's SLURM_JOB_ID must stay its own), the plug-in's,
and secrets (``PGPASSWORD``, tokens...): the exports are written into the
job's script and the run's recorded settings, which must never hold one."""
_SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _environment_exports() -> str:
    """Shell lines that recreate this process's environment (what
    ctrl_bps_parsl's ``export_environment`` writes), every value quoted.

    Exported bash functions (``BASH_FUNC_name%%``) are left out: their names
    are not variable names and their bodies would run as code.
    """
    return "\n".join(
        f"export {name}={shlex.quote(value)}"
        for name, value in sorted(os.environ.items())
        if _SHELL_NAME.match(name) and not _ENVIRONMENT_SKIPPED.match(name)
    )


def common_parsl_config(site: SiteSection, *, export_environment: bool = False) -> dict[str, Any]:
    """Our keys for the common ones, on a site whose workers start in blocks.

    ``commandPrefix`` and ``environment`` become the blocks' ``worker_init``:
    it runs once in each block's shell before its workers start, and what
    it sets reaches every job of the block (ctrl_bps_parsl ran them before
    every job).  ``export_environment`` is the site's own default
    (Tiger and Sdf always export the environment to their workers).
    """
    init = [
        _environment_exports() if site["environment"] or export_environment else "",
        site["commandPrefix"],
    ]
    values: dict[str, Any] = {
        "retries": site["retries"],
        "monitoring": site["monitorEnable"],
        "checkpoint": site["checkpoint"],
    }
    # Newlines, not ';': a prefix may end with a comment.
    worker_init = "\n".join(part for part in init if part)
    if worker_init:
        values["worker_init"] = worker_init
    return values


# -- Local (sites/local.py) -------------------------------------------------


def _local(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    if site["commandPrefix"]:
        raise ParslConfigError(
            f"site.{context.name}.commandPrefix: not supported with lsst.ctrl.bps.parsl.sites.Local by "
            "desc.gen3_workflow: its jobs run in forks of bps submit, in bps submit's own environment; "
            "run these commands before bps submit (or use ctrl_bps's commandPrepend for a per-job wrapper)"
        )
    # environment: jobs inherit bps submit's environment already.
    return {
        "executor": "HighThroughput",
        "provider": "Local",
        "max_workers": site["cores"],
        "retries": site["retries"],
        "monitoring": site["monitorEnable"],
        "checkpoint": site["checkpoint"],
    }


_LOCAL_KEYS = (SiteKey("cores", int, REQUIRED, "workers of the local HighThroughputExecutor"),)


# -- Slurm and its single-executor subclasses (slurm.py, princeton.py, slac.py)


def slurm_keys(
    *,
    nodes: Any = REQUIRED,
    cores_per_node: int | None = None,
    walltime: Any = REQUIRED,
    mem_per_node: int | None = None,
    qos: str | None = None,
    constraint: str | None = None,
    singleton: bool = False,
    scheduler_options: str | None = None,
) -> tuple[SiteKey, ...]:
    """The keys of `Slurm.make_executor`, with a subclass's defaults."""
    return (
        SiteKey("nodes", int, nodes, "nodes of each Slurm job (block); srun starts workers when > 1"),
        SiteKey("cores_per_node", int, cores_per_node, "--cpus-per-task of each job; default: Slurm's"),
        SiteKey("walltime", str, walltime, "time limit of each job"),
        SiteKey("mem_per_node", int, mem_per_node, "--mem of each job, GB; default: Slurm's"),
        SiteKey("qos", str, qos, "--qos of each job"),
        SiteKey("constraint", str, constraint, "--constraint of each job"),
        SiteKey("singleton", bool, singleton, "one job of this workflow's name runs at a time"),
        # Their default is False, but their make_executor never passes it to
        # parsl's SlurmProvider, whose own default (True) is what they run.
        SiteKey("exclusive", bool, True, "whole nodes (--exclusive)"),
        SiteKey("account", str, None, "--account of each job"),
        SiteKey("scheduler_options", str, scheduler_options, "#SBATCH lines added to each job's script"),
    )


_SLURM_JOB_NAME = re.compile(r"[^A-Za-z0-9_.+-]")


def slurm_parsl_config(
    site: SiteSection, context: SiteContext, *, export_environment: bool = False
) -> dict[str, Any]:
    """Our keys for `Slurm`'s (and subclasses'): HighThroughput on Slurm; unset keys left out."""
    scheduler_options = [site["scheduler_options"] or ""]
    if site["singleton"]:
        # singleton holds jobs of one name: ctrl_bps_parsl names its blocks
        # after the workflow (parsl's own names differ per block).
        job_name = _SLURM_JOB_NAME.sub("_", context.workflow_name)
        scheduler_options += [f"#SBATCH --job-name={job_name}", "#SBATCH --dependency=singleton"]
    values = {
        "executor": "HighThroughput",
        "provider": "Slurm",
        "nodes_per_block": site["nodes"],
        "cores_per_node": site["cores_per_node"],
        "walltime": site["walltime"],
        "mem_per_node": site["mem_per_node"],
        "qos": site["qos"],
        "constraint": site["constraint"],
        "exclusive": site["exclusive"],
        "account": site["account"],
        "scheduler_options": "\n".join(line for line in scheduler_options if line),
        **common_parsl_config(site, export_environment=export_environment),
    }
    return {key: value for key, value in values.items() if value is not None}


def _queued_singleton(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    """Tiger and Sdf: one block at a time runs, others wait in the queue
    (``min_blocks`` 1, ``max_blocks`` 2), workers started by srun, the
    submitting environment exported to them."""
    return {
        **slurm_parsl_config(site, context, export_environment=True),
        "init_blocks": 1,
        "min_blocks": 1,
        "max_blocks": site["max_blocks"],
        "launcher": "Srun",
    }


_MAX_BLOCKS_KEY = SiteKey("max_blocks", int, 2, "Slurm jobs at once: one runs, the others wait in the queue")

# -- LocalSrunWorkQueue (work_queue.py) -------------------------------------


def _local_srun_work_queue(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    # ctrl_bps_parsl starts its one block on demand (init_blocks 0,
    # parallelism 0); ours starts it with the run: the same block.
    return {
        "executor": "WorkQueue",
        "provider": "Local",
        "nodes_per_block": site["nodes_per_block"],
        "port": site["port"],
        "worker_options": site["worker_options"],
        "wq_max_retries": site["wq_max_retries"],
        **common_parsl_config(site),
    }


_WORK_QUEUE_KEYS = (
    SiteKey("port", int, 0, "Work Queue manager port; 0 picks a free one"),
    SiteKey("worker_options", str, "", "extra work_queue_worker options, e.g. --memory=90000"),
    SiteKey("wq_max_retries", int, 1, "Work Queue's own resubmissions of a task"),
    SiteKey("nodes_per_block", int, 1, "nodes of the allocation; srun starts workers when > 1"),
)

# -- Torque (torque.py) -----------------------------------------------------


def _torque(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    values = common_parsl_config(site)
    # Their worker_init goes first (the provider's), then the per-job prefix.
    values["worker_init"] = "\n".join(
        part for part in (site["worker_init"], values.get("worker_init")) if part
    )
    # ctrl_bps_parsl runs tasks_per_node single-worker pools per node under
    # mpirun; one pool of tasks_per_node workers per node is the same capacity.
    values.update(
        executor="HighThroughput",
        provider="Torque",
        nodes_per_block=site["nodes"],
        walltime=site["walltime"],
        cores_per_node=site["tasks_per_node"],
        max_workers=site["tasks_per_node"],
        scheduler_options=site["scheduler_options"] or "",
    )
    if site["queue"] is not None:
        values["queue"] = site["queue"]
    return values


_TORQUE_KEYS = (
    SiteKey("nodes", int, REQUIRED, "nodes of each Torque job (block)"),
    SiteKey("walltime", str, REQUIRED, "time limit of each job"),
    SiteKey("queue", str, None, "queue of each job (qsub -q)"),
    SiteKey("tasks_per_node", int, 1, "workers per node (ppn of each job)"),
    SiteKey("worker_init", str, "", "shell commands run before the workers start"),
    SiteKey("scheduler_options", str, None, "#PBS lines added to each job's script"),
)

# -- The single-executor classes ------------------------------------------------

SINGLE_EXECUTOR_CLASSES: tuple[SiteClass, ...] = (
    SiteClass(f"{SITE_PACKAGE}.local.Local", (f"{SITE_PACKAGE}.Local",), _LOCAL_KEYS + COMMON_KEYS, _local),
    SiteClass(
        f"{SITE_PACKAGE}.slurm.Slurm",
        (f"{SITE_PACKAGE}.Slurm",),
        slurm_keys() + COMMON_KEYS,
        slurm_parsl_config,
    ),
    SiteClass(
        f"{SITE_PACKAGE}.princeton.Tiger",
        (),
        slurm_keys(nodes=4, cores_per_node=112, walltime="05:00:00", mem_per_node=980, singleton=True)
        + (_MAX_BLOCKS_KEY,)
        + COMMON_KEYS,
        _queued_singleton,
    ),
    SiteClass(
        f"{SITE_PACKAGE}.slac.Sdf",
        (),
        slurm_keys(
            nodes=1,
            cores_per_node=100,
            walltime="02:00:00",
            mem_per_node=400,
            qos="normal",
            singleton=True,
            scheduler_options="#SBATCH --partition=rubin",
        )
        + (_MAX_BLOCKS_KEY,)
        + COMMON_KEYS,
        _queued_singleton,
    ),
    SiteClass(
        f"{SITE_PACKAGE}.work_queue.LocalSrunWorkQueue",
        (f"{SITE_PACKAGE}.LocalSrunWorkQueue",),
        _WORK_QUEUE_KEYS + COMMON_KEYS,
        _local_srun_work_queue,
    ),
    SiteClass(
        f"{SITE_PACKAGE}.torque.Torque", (f"{SITE_PACKAGE}.Torque",), _TORQUE_KEYS + COMMON_KEYS, _torque
    ),
)
"""ctrl_bps_parsl classes that run one executor (the others: `~.ctrl_bps_parsl_multi`)."""
