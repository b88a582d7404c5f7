"""ctrl_bps_parsl's site classes with several executors, as ``parsl_config.executors``.

`TripleSlurm` (and NERSC's `CoriKnl`, a TripleSlurm) and CC-IN2P3's
`Ccin2p3` build three or four HighThroughput executors on Slurm and send
each job to one of them by its memory request (``requestMemory``).  Each
becomes the list form of our ``parsl_config``: the keys the executors share
at the top, one entry per executor with its ``name``, its ``walltime`` and
the like, and its ``worker_memory`` (MB), the largest request it takes.
Our routing sends a job to the executor with the smallest ``worker_memory``
that fits, and to one without ``worker_memory`` when none does: their
``select_executor`` rules are reproduced by giving every executor but the
last its memory, and the last (which in theirs takes every job the others
do not) none.

This module also assembles the whole table of classes, `SITE_CLASSES`
(`~.ctrl_bps_parsl_sites` holds the single-executor ones and the building
blocks, and imports nothing from here).  See ``doc/ctrl_bps_parsl.md``.
"""

from __future__ import annotations

import dataclasses
import platform
from typing import Any

from ..errors import ParslConfigError
from .ctrl_bps_parsl_sites import (
    COMMON_KEYS,
    SINGLE_EXECUTOR_CLASSES,
    SITE_PACKAGE,
    SiteClass,
    SiteContext,
    SiteKey,
    SiteSection,
    common_parsl_config,
    slurm_keys,
    slurm_parsl_config,
)

__all__ = ["MULTI_EXECUTOR_CLASSES", "SITE_CLASSES"]


def _megabytes(context: SiteContext, key: str, gigabytes: float) -> int:
    """``worker_memory`` for a memory in GB.  Rounded down: a request of
    ``r`` MB fits ``floor(g * 1024)`` exactly when ``r / 1024 <= g``, their
    test (requests are whole MB)."""
    if gigabytes <= 0:
        raise ParslConfigError(f"site.{context.name}.{key}: expected a number of GB > 0, got {gigabytes!r}")
    return int(gigabytes * 1024)


def _check_order(context: SiteContext, memories: list[tuple[str, str, float]]) -> None:
    """Theirs tries the executors in the order written, ours the smallest
    that fits (the first written among equals): the same choice unless a
    memory is below the one before, and then theirs sends that executor no
    job at all.  Refuse that setting rather than route differently."""
    for (_, before, low), (name, key, high) in zip(memories, memories[1:], strict=False):
        if high < low:
            raise ParslConfigError(
                f"site.{context.name}.{key}: must be at least {before} ({low} GB), got {high} "
                f"(ctrl_bps_parsl would send no job to {name})"
            )


# -- TripleSlurm and CoriKnl (slurm.py, nersc.py) --------------------------------

_SIZES = ("small", "medium", "large")


def _triple_keys(**slurm_defaults: Any) -> tuple[SiteKey, ...]:
    """`TripleSlurm`'s keys: `Slurm`'s (``walltime`` optional: it replaces
    the three below), then the three executors' memory and time limit."""
    memories = {"small": 2.0, "medium": 4.0, "large": 8.0}
    walltimes = {"small": "10:00:00", "medium": "10:00:00", "large": "40:00:00"}
    return (
        slurm_keys(walltime=None, **slurm_defaults)
        + tuple(
            SiteKey(f"{size}_memory", float, memories[size], f"memory per worker of '{size}'", "GB")
            for size in _SIZES
        )
        + tuple(
            SiteKey(f"{size}_walltime", str, walltimes[size], f"time limit of each '{size}' job")
            for size in _SIZES
        )
        + COMMON_KEYS
    )


def _triple_slurm(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    """Three executors sharing the `Slurm` keys.  Theirs: ``small`` if
    request / 1024 <= ``small_memory``, else ``medium`` if <=
    ``medium_memory``, else ``large`` -- even above ``large_memory``, so
    ``large`` gets no ``worker_memory`` (it takes anything, after the
    others); its workers are then not limited to ``large_memory`` each."""
    values = slurm_parsl_config(site, context)
    values.pop("walltime", None)  # per executor below
    _check_order(context, [(size, f"{size}_memory", site[f"{size}_memory"]) for size in ("small", "medium")])
    entries = []
    for size in _SIZES:
        memory = _megabytes(context, f"{size}_memory", site[f"{size}_memory"])
        entry: dict[str, Any] = {"name": size, "walltime": site["walltime"] or site[f"{size}_walltime"]}
        if size != "large":
            entry["worker_memory"] = memory
        entries.append(entry)
    values["executors"] = entries
    return values


_TRIPLE_SOURCES = {"walltime": ("walltime", "{name}_walltime"), "worker_memory": ("{name}_memory",)}
"""Where an entry's values come from: a site `walltime` replaces all three."""

_CORI_TIME_MIN = "2:00:00"
_CORI_SCHEDULER_OPTIONS = "\n".join(
    ("#SBATCH --module=cvmfs", "#SBATCH --licenses=cvmfs", f"#SBATCH --time-min={_CORI_TIME_MIN}")
)


def _cori_knl(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    """TripleSlurm with the provider options `CoriKnl` always passes: whole
    nodes, one block per executor at most, started by srun.  Its
    ``scheduler_options`` default (which a site's replaces whole) holds a
    ``--time-min`` line: ours is ``time_min``."""
    values = _triple_slurm(site, context)
    if site["scheduler_options"] == _CORI_SCHEDULER_OPTIONS:
        lines = values["scheduler_options"].splitlines()
        values["scheduler_options"] = "\n".join(line for line in lines if "--time-min=" not in line)
        values["time_min"] = _CORI_TIME_MIN
    # Theirs starts blocks on demand (init_blocks 0, parallelism 0); ours
    # starts one per executor with the run (init_blocks >= 1), as for
    # LocalSrunWorkQueue.  Their heartbeats (60 s / 180 s) are not settings
    # of ours: lost workers are noticed sooner.
    values.update(exclusive=True, max_blocks=1, launcher="Srun")
    return values


# -- Ccin2p3 (ccin2p3.py) ------------------------------------------------------

_SLOTS = {"small": (4, 3_000), "medium": (10, 1_000), "large": (50, 100), "xlarge": (150, 10)}
"""Each slot's default ``memory`` (GB) and ``max_blocks``."""
_DEFAULT_PARTITIONS = {
    "x86_64": {"small": "lsst,htc", "medium": "lsst", "large": "lsst", "xlarge": "lsst"},
    "aarch64": dict.fromkeys(_SLOTS, "htc_arm"),
}
"""Their default partitions, by the submitting host's CPU architecture
(parsl needs its workers on the same architecture as ``bps submit``)."""
_CCIN2P3_WORKER_INIT = "ulimit -n hard && ulimit -u hard"


def _slot_key(slot: str) -> SiteKey:
    memory, max_blocks = _SLOTS[slot]
    return SiteKey(
        slot,
        dict,
        {},
        f"the '{slot}' executor's requirements",
        subkeys=(
            SiteKey("memory", int, memory, f"--mem of each '{slot}' job", "GB"),
            SiteKey("max_blocks", int, max_blocks, f"'{slot}' Slurm jobs at once"),
            SiteKey("partition", str, None, f"partition of '{slot}' jobs; default: the site's"),
            SiteKey("walltime", str, None, f"time limit of '{slot}' jobs; default: the site's"),
            SiteKey("scheduler_options", list, None, f"sbatch options of '{slot}' jobs; default: the site's"),
        ),
    )


_CCIN2P3_KEYS = (
    SiteKey("account", str, "lsst", "--account of every job"),
    SiteKey(
        "partition", str, None, "partition of every slot; default: lsst,htc for small, lsst for the others"
    ),
    SiteKey("walltime", str, "72:00:00", "time limit of every job"),
    SiteKey("scheduler_options", list, ["--licenses=sps"], "sbatch options of every job (a list)"),
    *(_slot_key(slot) for slot in _SLOTS),
    *(dataclasses.replace(key, default=0) if key.name == "retries" else key for key in COMMON_KEYS),
)


def _sbatch_line(context: SiteContext, key: str, options: list[Any]) -> str:
    """Their list of sbatch options, on one ``#SBATCH`` line as theirs."""
    if not all(isinstance(option, str) for option in options):
        raise ParslConfigError(f"site.{context.name}.{key}: expected a list of strings, got {options!r}")
    return f"#SBATCH {' '.join(options)}" if options else ""


def _partition(site: SiteSection, context: SiteContext, slot: str) -> str | None:
    """The slot's partition, else the site's, else their default for this
    host's architecture (needed only then: theirs refuses another
    architecture even when partitions are given)."""
    partition = site[slot]["partition"] or site["partition"]
    if partition is not None:
        return partition or None  # theirs: an empty site partition means none
    architecture = platform.machine()
    if architecture not in _DEFAULT_PARTITIONS:
        raise ParslConfigError(
            f"site.{context.name}.partition: no default partition for this host's architecture "
            f"{architecture!r} (ctrl_bps_parsl knows {', '.join(_DEFAULT_PARTITIONS)}); set it"
        )
    return _DEFAULT_PARTITIONS[architecture][slot]


def _ccin2p3(site: SiteSection, context: SiteContext) -> dict[str, Any]:
    """Four executors of one core and one worker per Slurm job.  Theirs:
    the first of small, medium, large whose ``memory`` >= request / 1024,
    else xlarge, which therefore gets no ``worker_memory``."""
    values = common_parsl_config(site)
    values["worker_init"] = "\n".join(
        part for part in (_CCIN2P3_WORKER_INIT, values.get("worker_init")) if part
    )
    values.update(
        executor="HighThroughput",
        provider="Slurm",
        account=site["account"],
        nodes_per_block=1,
        cores_per_node=1,
        max_workers=1,
        exclusive=False,
    )
    _check_order(
        context, [(slot, f"{slot}.memory", site[slot]["memory"]) for slot in ("small", "medium", "large")]
    )
    entries = []
    for slot in _SLOTS:
        own = site[slot]
        options_key = f"{slot}.scheduler_options" if own["scheduler_options"] else "scheduler_options"
        entry: dict[str, Any] = {
            "name": slot,
            "mem_per_node": own["memory"],
            "max_blocks": own["max_blocks"],
            "walltime": own["walltime"] or site["walltime"],
            "scheduler_options": _sbatch_line(
                context, options_key, own["scheduler_options"] or site["scheduler_options"]
            ),
        }
        partition = _partition(site, context, slot)
        if partition is not None:
            entry["partition"] = partition
        if slot != "xlarge":
            entry["worker_memory"] = _megabytes(context, f"{slot}.memory", own["memory"])
        entries.append(entry)
    values["executors"] = entries
    return values


_CCIN2P3_SOURCES = {
    "walltime": ("{name}.walltime", "walltime"),
    "partition": ("{name}.partition", "partition"),
    "scheduler_options": ("{name}.scheduler_options", "scheduler_options"),
    "mem_per_node": ("{name}.memory",),
    "worker_memory": ("{name}.memory",),
    "max_blocks": ("{name}.max_blocks",),
}

# -- The table -----------------------------------------------------------------

MULTI_EXECUTOR_CLASSES: tuple[SiteClass, ...] = (
    SiteClass(
        f"{SITE_PACKAGE}.slurm.TripleSlurm",
        (f"{SITE_PACKAGE}.TripleSlurm",),
        _triple_keys(),
        _triple_slurm,
        _TRIPLE_SOURCES,
    ),
    SiteClass(
        f"{SITE_PACKAGE}.nersc.CoriKnl",
        (),
        _triple_keys(nodes=1, constraint="knl", scheduler_options=_CORI_SCHEDULER_OPTIONS),
        _cori_knl,
        _TRIPLE_SOURCES,
    ),
    SiteClass(
        f"{SITE_PACKAGE}.ccin2p3.Ccin2p3",
        (f"{SITE_PACKAGE}.Ccin2p3",),
        _CCIN2P3_KEYS,
        _ccin2p3,
        _CCIN2P3_SOURCES,
    ),
)
"""ctrl_bps_parsl classes that run several executors, each job sent to one by its memory."""

SITE_CLASSES: tuple[SiteClass, ...] = SINGLE_EXECUTOR_CLASSES + MULTI_EXECUTOR_CLASSES
"""Every ctrl_bps_parsl site class this plug-in runs."""
