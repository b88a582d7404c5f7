"""Flatten a GenericWorkflow into the rows of the job-state store.

Every job gets its command line, resource request, log paths and a position
in one topological order; edges are kept as pairs of positions.  No-op
nodes (ctrl_bps's job-ordering helpers) are dissolved: their children depend
on their parents directly.  The walk is iterative (Kahn's algorithm in
networkx), so graph depth never meets Python's recursion limit.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import networkx
from lsst.ctrl.bps import BpsConfig, GenericWorkflow, GenericWorkflowJob
from lsst.ctrl.bps.generic_workflow import GenericWorkflowNodeType

from ..constants import FINAL_JOB_NAME, INIT_JOB_NAME
from ..errors import PlanError
from ..store.records import JobKind, JobRecord, RunInfo
from .commands import JobCommandBuilder
from .final_job import fit_aggregate_processes

__all__ = ["WorkflowPlan", "job_resources", "plan_workflow", "run_info"]


@dataclasses.dataclass
class WorkflowPlan:
    """A workflow ready for the store: jobs in topological order and
    edges between their positions."""

    jobs: list[JobRecord]
    edges: list[tuple[int, int]]


def job_resources(gwjob: GenericWorkflowJob, memory_limit: int | None = None) -> dict[str, Any]:
    """The job's resource request, in ctrl_bps units (MB, cores), and its
    retry rules.

    Parameters
    ----------
    gwjob : `lsst.ctrl.bps.GenericWorkflowJob`
        The job.
    memory_limit : `int`, optional
        The bps file's ``memoryLimit`` (MB), which caps every job's memory.

    Returns
    -------
    resources : `dict`
        ``cpus``, ``memory`` (MB), ``disk`` (MB), ``walltime`` and
        ``priority``; the retry rules ``retries`` (``numberOfRetries``),
        ``retry_unless_exit`` (a list), ``memory_multiplier`` (`None` when
        memory is not scaled) and ``memory_max`` (the least of
        ``requestMemoryMax`` and ``memoryLimit``); `None` where the workflow
        did not say.  `desc.gen3_workflow.execution.retry_rules` applies them.
    """
    unless = gwjob.retry_unless_exit
    unless = [] if unless is None else [unless] if isinstance(unless, int) else list(unless)
    caps = [int(value) for value in (gwjob.request_memory_max, memory_limit) if value]
    multiplier = gwjob.memory_multiplier
    return {
        "cpus": gwjob.request_cpus,
        "memory": gwjob.request_memory,
        "disk": gwjob.request_disk,
        "walltime": gwjob.request_walltime,
        "priority": gwjob.priority,
        "retries": None if gwjob.number_of_retries is None else int(gwjob.number_of_retries),
        "retry_unless_exit": [int(code) for code in unless],
        # ctrl_bps turns scaling off for a multiplier that does not grow.
        "memory_multiplier": float(multiplier) if multiplier and math.ceil(float(multiplier)) > 1 else None,
        "memory_max": min(caps) if caps else None,
    }


def _data_id(gwjob: GenericWorkflowJob) -> str:
    # ctrl_bps tags hold the data ID plus bookkeeping (label, QuantumGraph node).
    tags = {k: v for k, v in (gwjob.tags or {}).items() if k not in ("label", "node_number")}
    return json.dumps(tags, default=str, separators=(",", ":"))


LOG_BUCKET_SIZE = 1000
"""Most jobs whose logs share one directory."""


class LogLayout:
    """Where each job's log files go: ``logs/<label>/<name>.stdout|.stderr``,
    or, for a label of more than `LOG_BUCKET_SIZE` jobs,
    ``logs/<label>/<NNNN>/...`` with `LOG_BUCKET_SIZE` jobs per directory, so
    that no directory of a campaign holds 10^5 files.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    job_counts : `~collections.abc.Mapping` [`str`, `int`]
        Jobs per label.
    """

    def __init__(self, submit_dir: str, job_counts: Mapping[str, int]) -> None:
        self.root = os.path.join(submit_dir, "logs")
        self.job_counts = job_counts
        self._seen: dict[str, int] = {}

    def paths(self, gwjob: GenericWorkflowJob) -> tuple[str, str]:
        """The job's stdout and stderr files."""
        label = gwjob.label
        ordinal = self._seen.get(label, 0)
        self._seen[label] = ordinal + 1
        if self.job_counts.get(label, 0) > LOG_BUCKET_SIZE:
            base = os.path.join(self.root, label, f"{ordinal // LOG_BUCKET_SIZE:04d}", gwjob.name)
        else:
            base = os.path.join(self.root, label, gwjob.name)
        return f"{base}.stdout", f"{base}.stderr"


def command_prepend_lookup(config: BpsConfig) -> Callable[[str], str]:
    """``commandPrepend`` per job label, as ctrl_bps resolves other per-label
    values (``pipetask.<label>.commandPrepend`` beats the global one)."""
    cache: dict[str, str] = {}

    def lookup(label: str) -> str:
        if label not in cache:
            _, value = config.search(
                "commandPrepend",
                opt={"curvals": {"curr_pipetask": label}, "default": "", "replaceVars": True},
            )
            cache[label] = str(value or "")
        return cache[label]

    return lookup


def plan_workflow(config: BpsConfig, generic_workflow: GenericWorkflow, submit_dir: str) -> WorkflowPlan:
    """Turn the GenericWorkflow into store rows.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The run's configuration (for ``commandPrepend``).
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow ctrl_bps transformed from the QuantumGraph.
    submit_dir : `str`
        The run's submit directory (log files go under ``logs/``).

    Returns
    -------
    plan : `WorkflowPlan`
        Jobs with ``seq`` in topological order; the final job, if any, last.
    """
    builder = JobCommandBuilder(generic_workflow, command_prepend_lookup(config))
    logs = LogLayout(submit_dir, generic_workflow.job_counts)
    _, memory_limit = config.search("memoryLimit", opt={"default": None})
    limit = int(memory_limit) if memory_limit else None
    jobs: list[JobRecord] = []
    edges: list[tuple[int, int]] = []
    seq_of: dict[str, int] = {}
    # A no-op node stands for the set of real jobs it waits for.
    noop_parents: dict[str, set[int]] = {}
    final_sink: GenericWorkflowJob | None = None
    for name in networkx.topological_sort(generic_workflow):
        gwjob = generic_workflow.get_job(name)
        parents: set[int] = set()
        for parent in generic_workflow.predecessors(name):
            parents.update(noop_parents[parent] if parent in noop_parents else {seq_of[parent]})
        if gwjob.node_type == GenericWorkflowNodeType.NOOP:
            noop_parents[name] = parents
            continue
        if gwjob.node_type != GenericWorkflowNodeType.PAYLOAD:
            raise PlanError(
                f"gen3_workflow cannot run workflow node {name} of type {gwjob.node_type.name}"
                + (" (bpsBatchSubmission: set it to false)" if gwjob.node_type.name == "LAZY_GROUP" else "")
            )
        if name == FINAL_JOB_NAME and generic_workflow.out_degree(name) == 0:
            # finalJob.whenRun: SUCCESS makes the final job a sink that waits
            # for every job; the runner runs it after the others, if they all
            # succeeded.
            final_sink = gwjob
            continue
        kind = JobKind.INIT if name == INIT_JOB_NAME else JobKind.QUANTUM
        seq = len(jobs)
        seq_of[name] = seq
        jobs.append(_record(builder, logs, gwjob, seq, kind, limit))
        edges.extend((parent, seq) for parent in sorted(parents))
    final = generic_workflow.get_final()
    if final is not None and not isinstance(final, GenericWorkflowJob):
        raise PlanError("gen3_workflow runs a final job, not a final sub-workflow")
    for gwjob, when_run in ((final, "ALWAYS"), (final_sink, "SUCCESS")):
        if gwjob is not None:
            record = _record(builder, logs, gwjob, len(jobs), JobKind.FINAL, limit)
            record.resources["when_run"] = when_run
            jobs.append(record)
            script = next((a for a in record.command.argv if a.endswith(".bash") and os.path.isfile(a)), None)
            if script is not None:
                fit_aggregate_processes(script, sum(generic_workflow.quanta_counts.values()))
    return WorkflowPlan(jobs, edges)


def _record(
    builder: JobCommandBuilder,
    logs: LogLayout,
    gwjob: GenericWorkflowJob,
    seq: int,
    kind: JobKind,
    memory_limit: int | None,
) -> JobRecord:
    stdout, stderr = logs.paths(gwjob)
    return JobRecord(
        seq=seq,
        name=gwjob.name,
        label=gwjob.label,
        kind=kind,
        data_id=_data_id(gwjob),
        command=builder.command(gwjob),
        resources=job_resources(gwjob, memory_limit),
        stdout=stdout,
        stderr=stderr,
    )


def run_info(config: BpsConfig, parsl_config: dict[str, Any]) -> RunInfo:
    """What report and restart need to know about a run, from its config.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The run's configuration.
    parsl_config : `dict`
        Its validated ``parsl_config`` section, every key filled in.
    """
    values = {}
    for field, key in RunInfo.BPS_KEYS.items():
        _, value = config.search(key, opt={"default": None})
        values[field] = None if value is None else str(value)
    return RunInfo(**values, parsl_config=parsl_config)
