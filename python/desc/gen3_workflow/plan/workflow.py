"""Flatten a GenericWorkflow into the rows of the job-state store.

Every job gets its command line, resource request, log paths and a position
in one topological order; edges are kept as pairs of positions.  What a
label's jobs share is kept once, in a template (`~.job_templates`).  No-op
nodes (ctrl_bps's job-ordering helpers) are dissolved: their children depend
on their parents directly.  The order is ctrl_bps's own where it is a
topological one (`insertion_order`), else Kahn's (`topological_names`);
neither walk recurses, so graph depth never meets Python's recursion limit.  Rows
go to a `~desc.gen3_workflow.store.templates.PlanSink` as they are made
(`stream_plan`): ``bps submit`` writes them while it plans.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import itertools
import logging
import math
import operator
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import networkx
from lsst.ctrl.bps import BpsConfig, GenericWorkflow, GenericWorkflowJob
from lsst.ctrl.bps.generic_workflow import GenericWorkflowNodeType

from ..constants import FINAL_JOB_NAME, INIT_JOB_NAME
from ..errors import PlanError
from ..store.records import JobKind, RunInfo
from ..store.templates import PlanRow, PlanSink, WorkflowPlan
from .commands import JobCommandBuilder
from .final_job import fit_aggregate_processes
from .job_templates import TemplateGrouper

__all__ = [
    "LogLayout",
    "WorkflowPlan",
    "insertion_order",
    "job_resources",
    "node_items",
    "plan_workflow",
    "run_info",
    "stream_plan",
    "topological_names",
]

_LOG = logging.getLogger(__name__)


def job_resources(
    gwjob: GenericWorkflowJob, memory_limit: int | None = None, run_site: str | None = None
) -> dict[str, Any]:
    """The job's resource request, in ctrl_bps units (MB, cores), and its
    retry rules.

    Parameters
    ----------
    gwjob : `lsst.ctrl.bps.GenericWorkflowJob`
        The job.
    memory_limit : `int`, optional
        The bps file's ``memoryLimit`` (MB), which caps every job's memory.
    run_site : `str`, optional
        The bps file's own ``computeSite``: a job's that differs (set per
        task label) may name one of the run's executors.

    Returns
    -------
    resources : `dict`
        ``cpus``, ``memory`` (MB), ``disk`` (MB), ``walltime`` and
        ``priority``; the retry rules ``retries`` (``numberOfRetries``),
        ``retry_unless_exit`` (a list), ``memory_multiplier`` (`None` when
        memory is not scaled) and ``memory_max`` (the least of
        ``requestMemoryMax`` and ``memoryLimit``), ``compute_site`` (its
        own ``computeSite``, where it is not the run's); `None` where the
        workflow did not say.  `desc.gen3_workflow.execution.runner.retry_rules`
        applies the rules.
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
        # Names the executor of the job's attempts, if it names one of the run's.
        "compute_site": gwjob.compute_site if gwjob.compute_site != run_site else None,
    }


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
        # Per label: jobs given a directory so far, and the current one.
        self._seen: dict[str, list[Any]] = {}

    def log_dir(self, label: str) -> str:
        """The directory of the next job of ``label`` (jobs are numbered per
        label in the order they are asked for)."""
        seen = self._seen.get(label)
        if seen is None:
            seen = self._seen[label] = [0, f"{self.root}/{label}"]
        ordinal = seen[0]
        seen[0] = ordinal + 1
        if ordinal % LOG_BUCKET_SIZE == 0 and self.job_counts.get(label, 0) > LOG_BUCKET_SIZE:
            seen[1] = f"{self.root}/{label}/{ordinal // LOG_BUCKET_SIZE:04d}"
        return seen[1]

    def paths(self, gwjob: GenericWorkflowJob) -> tuple[str, str]:
        """The next job's stdout and stderr files."""
        base = f"{self.log_dir(gwjob.label)}/{gwjob.name}"
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


def topological_names(graph: networkx.DiGraph) -> Iterator[str]:
    """The graph's nodes, parents before children: Kahn's algorithm, in the
    order of networkx's `~networkx.topological_sort` (generation by
    generation, each in the order its nodes became ready).

    It reads networkx's adjacency dictionaries directly: through its views,
    networkx's own sort was 3.7-4.2 s of planning 10^6 jobs.

    Raises
    ------
    PlanError
        The graph has a cycle.
    """
    pred, succ = graph._pred, graph._succ  # noqa: SLF001 (see above)
    waiting = {name: len(parents) for name, parents in pred.items() if parents}
    ready = collections.deque(name for name, parents in pred.items() if not parents)
    while ready:
        name = ready.popleft()
        yield name
        for child in succ[name]:
            left = waiting[child] - 1
            if left:
                waiting[child] = left
            else:
                del waiting[child]
                ready.append(child)
    if waiting:
        raise PlanError(f"the workflow has a cycle through {len(waiting)} jobs, e.g. {next(iter(waiting))}")


def insertion_order(graph: networkx.DiGraph) -> Iterator[str]:
    """The graph's sources, then every other node in the order it was added.

    ctrl_bps adds a workflow's jobs in topological order, then the sources
    (``pipetaskInit``) and sinks it adds around them: this is then a
    topological order, without a walk of the graph.  It is not checked
    here: `stream_plan` finds a parent not yet planned as it plans, and
    starts over in `topological_names` order (checking first was 1.3 s of
    planning 10^6 jobs).
    """
    pred = graph._pred  # noqa: SLF001 (see topological_names)
    yield from (name for name, parents in pred.items() if not parents)
    yield from (name for name, parents in pred.items() if parents)


NodeItem = tuple[tuple[str, dict[str, Any]], dict[str, Any]]
"""``((name, node data), parents)`` of one node, as networkx holds them."""


def node_items(graph: networkx.DiGraph, kahn: bool) -> Iterator[NodeItem]:
    """The graph's nodes, with their data and parents, in `insertion_order`
    (``kahn`` false) or `topological_names` order.

    networkx adds and removes a node in its node, successor and predecessor
    dictionaries together, so they share one order: the insertion order is
    then read by zipping them, at C speed.  Looking each node up by name
    instead was 1.6 s of planning 10^6 jobs (two probes of 10^6-entry
    tables per job, each a cache miss).
    """
    nodes, pred = graph._node, graph._pred  # noqa: SLF001 (see topological_names)
    if kahn or len(nodes) != len(pred) or not all(map(operator.is_, nodes, pred)):
        names = topological_names(graph) if kahn else insertion_order(graph)
        return (((name, nodes[name]), pred[name]) for name in names)
    return itertools.chain(
        itertools.compress(zip(nodes.items(), pred.values(), strict=True), map(operator.not_, pred.values())),
        itertools.compress(zip(nodes.items(), pred.values(), strict=True), pred.values()),
    )


class _OutOfOrderError(Exception):
    """A job came before one of its parents."""


def plan_workflow(config: BpsConfig, generic_workflow: GenericWorkflow, submit_dir: str) -> WorkflowPlan:
    """Turn the GenericWorkflow into store rows, kept in memory (small
    workflows and tests; `stream_plan` writes them as they are made).

    Returns
    -------
    plan : `WorkflowPlan`
        Jobs with ``seq`` in topological order; the final job, if any, last.
    """
    plan = WorkflowPlan([], [], [])
    stream_plan(config, generic_workflow, submit_dir, plan)
    return plan


CHUNK = 10_000
"""Rows (and edges) handed to the sink at a time."""


def stream_plan(config: BpsConfig, generic_workflow: GenericWorkflow, submit_dir: str, sink: PlanSink) -> int:
    """Turn the GenericWorkflow into store rows, handed to ``sink`` in chunks
    as they are made.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The run's configuration (for ``commandPrepend``).
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow ctrl_bps transformed from the QuantumGraph.
    submit_dir : `str`
        The run's submit directory (log files go under ``logs/``).
    sink : `PlanSink`
        Takes the rows, with ``seq`` in topological order (the final job,
        if any, last), their edges, then the templates the rows refer to.

    Returns
    -------
    jobs : `int`
        How many jobs the plan has.
    """
    with _collector_paused():
        try:
            order = node_items(generic_workflow, kahn=False)
            return _stream_plan(config, generic_workflow, submit_dir, sink, order)
        except _OutOfOrderError as exc:
            _LOG.debug("Planning again, in Kahn's order: %s", exc)
            sink.reset()
            order = node_items(generic_workflow, kahn=True)
            return _stream_plan(config, generic_workflow, submit_dir, sink, order)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off: its full passes walk every
    object of ctrl_bps's GenericWorkflow, again and again as rows are made
    (1.5 s of planning 10^6 jobs), and planning makes no reference cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stream_plan(
    config: BpsConfig,
    generic_workflow: GenericWorkflow,
    submit_dir: str,
    sink: PlanSink,
    order: Iterable[NodeItem],
) -> int:
    """`stream_plan` with jobs taken in ``order``.

    Raises
    ------
    _OutOfOrderError
        A job came before one of its parents.
    """
    builder = JobCommandBuilder(generic_workflow, command_prepend_lookup(config))
    logs = LogLayout(submit_dir, generic_workflow.job_counts)
    _, memory_limit = config.search("memoryLimit", opt={"default": None})
    limit = int(memory_limit) if memory_limit else None
    _, run_site = config.search("computeSite", opt={"default": None})
    grouper = TemplateGrouper(builder, lambda gwjob: job_resources(gwjob, limit, run_site))
    rows: list[PlanRow] = []
    parent_seqs, child_seqs = array("q"), array("q")  # the edges (an EdgeBlock)
    seq_of: dict[str, int] = {}
    # A no-op node stands for the set of real jobs it waits for.
    noop_parents: dict[str, set[int]] = {}
    final_sink: GenericWorkflowJob | None = None
    # What ctrl_bps's GenericWorkflow.quanta_counts sums, counted here: that
    # property walks the graph again and adds Counters job by job (6.5 s of
    # planning 10^6 jobs).
    quanta = 0
    payload, noop = GenericWorkflowNodeType.PAYLOAD, GenericWorkflowNodeType.NOOP
    init, quantum = JobKind.INIT, JobKind.QUANTUM  # (an enum member read is 75 ns)
    row, log_dir = grouper.row, logs.log_dir
    for (name, data), job_parents in order:
        gwjob = data["job"]
        # (ctrl_bps's node_type is a property: 0.5 s of 10^6 jobs.)
        if type(gwjob) is not GenericWorkflowJob and (node_type := gwjob.node_type) != payload:
            if node_type != noop:
                raise PlanError(
                    f"gen3_workflow cannot run workflow node {name} of type {node_type.name}"
                    + (" (bpsBatchSubmission: set it to false)" if node_type.name == "LAZY_GROUP" else "")
                )
            parents: set[int] = set()
            try:
                for parent in job_parents:
                    parents.update(noop_parents[parent] if parent in noop_parents else (seq_of[parent],))
            except KeyError:
                raise _OutOfOrderError(f"{name} came before its parent {parent}") from None
            noop_parents[name] = parents
            continue
        if name == FINAL_JOB_NAME and generic_workflow.out_degree(name) == 0:
            # finalJob.whenRun: SUCCESS makes the final job a sink that waits
            # for every job; the runner runs it after the others, if they all
            # succeeded.
            final_sink = gwjob
            continue
        seq = len(seq_of)
        seq_of[name] = seq
        if counts := gwjob.quanta_counts:
            quanta += sum(counts.values())
        kind = init if name == INIT_JOB_NAME else quantum
        rows.append(row(seq, kind, gwjob, log_dir(gwjob.label)))
        try:
            if len(job_parents) == 1 and (parent := next(iter(job_parents))) not in noop_parents:
                parent_seqs.append(seq_of[parent])  # the usual case
                child_seqs.append(seq)
            elif job_parents:
                found: set[int] = set()
                for parent in job_parents:
                    if parent in noop_parents:
                        found.update(noop_parents[parent])
                    else:
                        found.add(seq_of[parent])
                parent_seqs.extend(sorted(found))
                child_seqs.extend(itertools.repeat(seq, len(found)))
        except KeyError:
            raise _OutOfOrderError(f"{name} came before its parent {parent}") from None
        if len(rows) >= CHUNK:
            sink.add_rows(rows)
            rows = []
        if len(child_seqs) >= CHUNK:
            sink.add_edges((parent_seqs, child_seqs))
            parent_seqs, child_seqs = array("q"), array("q")
    final = generic_workflow.get_final()
    if final is not None and not isinstance(final, GenericWorkflowJob):
        raise PlanError("gen3_workflow runs a final job, not a final sub-workflow")
    finals = [(gwjob, when_run) for gwjob, when_run in ((final, "ALWAYS"), (final_sink, "SUCCESS")) if gwjob]
    for seq, (gwjob, when_run) in enumerate(finals, start=len(seq_of)):
        rows.append(grouper.row_alone(seq, JobKind.FINAL, gwjob, log_dir(gwjob.label), when_run=when_run))
        argv = grouper.templates[-1].argv or ()
        script = next((a for a in argv if a and a.endswith(".bash") and os.path.isfile(a)), None)
        if script is not None:
            fit_aggregate_processes(script, quanta)
    sink.add_rows(rows)
    sink.add_edges((parent_seqs, child_seqs))
    sink.add_templates(grouper.templates)
    return len(seq_of) + len(finals)


def run_info(config: BpsConfig, parsl_config: dict[str, Any], site: str | None = None) -> RunInfo:
    """What report and restart need to know about a run, from its config.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The run's configuration.
    parsl_config : `dict`
        Its validated ``parsl_config`` section, every key filled in.
    site : `str`, optional
        Where parsl runs the jobs (the execution mode's ``site``).
    """
    values = {}
    for field, key in RunInfo.BPS_KEYS.items():
        _, value = config.search(key, opt={"default": None})
        values[field] = None if value is None else str(value)
    return RunInfo(**values, parsl_config=parsl_config, site=site)
