"""How much an executor runs at once, from the settings alone (no parsl).

The runner sizes its in-flight window and memory budget with these, and
``bps ping`` and ``bps report`` use them without importing parsl (about
1.8 s of imports for a command that reads a store in milliseconds).
"""

from __future__ import annotations

import os
import re

import psutil

from .parsl_section import ParslSettings

__all__ = ["memory_budget", "node_memory", "relays_locally", "worker_slots"]


def relays_locally(settings: ParslSettings) -> bool:
    """Whether HighThroughput's workers would only relay jobs to this
    machine's runner: ``execution: in_process`` with the Local provider.

    There every quantum job runs in a fork of this machine's node runner
    (`desc.gen3_workflow.execution.node_runner`, itself a fork of ``bps
    submit``); a worker pool would add nothing but its start (interchange,
    pool, workers: about 6 s before the first quantum, measured) and
    processes.  Threads of ``bps submit``, as many as the settings give
    workers, wait for the runner instead.
    """
    return (
        settings.executor == "HighThroughput"
        and settings.provider == "Local"
        and settings.execution == "in_process"
    )


def worker_slots(settings: ParslSettings) -> int:
    """How many jobs the executor runs at once, as far as the settings tell
    (the jobs of one core each that fit in every block it may start)."""
    if settings.executor == "ThreadPool":
        return settings.max_threads
    cores = settings.cores_per_node or os.cpu_count() or 1
    if settings.executor == "WorkQueue":
        match = re.search(r"--cores[= ](\d+)", settings.worker_options)
        per_node = int(match.group(1)) if match else cores
    else:
        per_node = settings.max_workers or max(int(cores / settings.cores_per_worker), 1)
    return per_node * settings.nodes_per_block * settings.max_blocks


def node_memory(settings: ParslSettings) -> int | None:
    """The most memory (MB) one node gives the jobs, as far as the settings
    tell: a Work Queue worker's ``--memory``, Slurm's ``mem_per_node``, or
    this machine's memory with the Local provider; `None` if unknown."""
    if settings.executor == "WorkQueue" and (
        match := re.search(r"--memory[= ](\d+)", settings.worker_options)
    ):
        return int(match.group(1))
    if settings.provider == "Slurm" and settings.executor != "ThreadPool":
        return settings.mem_per_node * 1024 if settings.mem_per_node else None
    return int(psutil.virtual_memory().total / 2**20)


def memory_budget(settings: ParslSettings) -> int | None:
    """How much memory (MB) the runner lets the jobs it dispatches ask for
    at once, on executors that do not pack jobs by memory themselves
    (ThreadPool, HighThroughput): every node's memory; `None` for Work
    Queue, which packs its workers by the requests, or if unknown."""
    if settings.executor == "WorkQueue" or (per_node := node_memory(settings)) is None:
        return None
    if settings.executor == "ThreadPool" or settings.provider == "Local":
        return per_node
    return per_node * settings.nodes_per_block * settings.max_blocks
