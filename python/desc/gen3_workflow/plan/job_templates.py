"""Group a workflow's jobs into `JobTemplate` rows, in time linear in the jobs.

Jobs that share label, kind, command template, environment, resource
request and log directory share one template.  The first pass over the jobs
finds, per group, which placeholders (``{qgraphNodeId}``) take more than one
value; the second computes each job's words for those only.  So the slow
parts (splitting and quoting the command, resolving files, the resource
request) run once per group, not once per job.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable
from typing import Any

from lsst.ctrl.bps import GenericWorkflowJob

from ..store.records import JobKind
from ..store.templates import JobTemplate, PlanRow, WorkflowPlan, encode_words
from .commands import JobCommandBuilder

__all__ = ["TemplateGrouper", "data_id"]

_MISSING = object()
_ENCODE = json.JSONEncoder(separators=(",", ":"), default=str).encode
_ENCODE_STRING = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
# json's C encoder, made once (JSONEncoder.encode makes one per call, which
# was most of the cost of a million small data IDs); `None` without it.
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_DATA_ID_ENCODER = (
    None if _C_ENCODER is None else _C_ENCODER(None, str, _ENCODE_STRING, None, ":", ",", False, False, True)
)


def data_id(gwjob: GenericWorkflowJob) -> str:
    """The job's data ID as JSON (ctrl_bps's tags, without the label and
    QuantumGraph node it adds for bookkeeping)."""
    tags = gwjob.tags
    if not tags:
        return "{}"
    values = {k: v for k, v in tags.items() if k != "label" and k != "node_number"}
    if _DATA_ID_ENCODER is not None:
        return "".join(_DATA_ID_ENCODER(values, 0))
    return _ENCODE(values)


_RESOURCE_ATTRIBUTES = (
    "request_cpus",
    "request_memory",
    "request_disk",
    "request_walltime",
    "priority",
    "number_of_retries",
    "retry_unless_exit",
    "request_memory_max",
    "memory_multiplier",
)
"""What `~.workflow.job_resources` reads from a job."""

_KEYED = operator.attrgetter("executable", "arguments", *_RESOURCE_ATTRIBUTES)
"""The attributes a job's group key is made of (with its label, kind, log
directory and environment), read in one call."""


def _hashable_resources(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The values of `_RESOURCE_ATTRIBUTES`, hashable (a list of exit codes
    becomes a tuple)."""
    return tuple(tuple(value) if isinstance(value, list) else value for value in values)


@dataclasses.dataclass
class _Group:
    first: GenericWorkflowJob
    keys: tuple[str, ...]
    resources: dict[str, Any]
    log_dir: str
    varying: set[str] = dataclasses.field(default_factory=set)
    constant: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    """The placeholders not seen to vary yet, with their first value."""
    jobs: list[tuple[int, JobKind, GenericWorkflowJob]] = dataclasses.field(default_factory=list)
    """(seq, kind, job) of its jobs."""


def _plain(value: Any) -> bool:
    """Whether a placeholder's value is a word as it is (no further
    placeholder, file or variable in it)."""
    return type(value) is str and "{" not in value and "<" not in value


class TemplateGrouper:
    """Collects jobs (`add`), then makes the plan's templates and rows (`plan`).

    Parameters
    ----------
    builder : `JobCommandBuilder`
        Builds the jobs' words.
    resources_of : `~collections.abc.Callable`
        A job's resource request and retry rules (called once per group).
    """

    def __init__(
        self, builder: JobCommandBuilder, resources_of: Callable[[GenericWorkflowJob], dict[str, Any]]
    ) -> None:
        self._builder = builder
        self._resources_of = resources_of
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._ungrouped: list[tuple[int, JobKind, GenericWorkflowJob, dict[str, Any], str]] = []
        self._count = 0
        # Per label: the last job's kind, log directory, environment, keyed
        # attributes and group.
        self._last: dict[str, tuple[JobKind, str, dict[str, str] | None, tuple[Any, ...], _Group]] = {}

    def _group_of(self, kind: JobKind, gwjob: GenericWorkflowJob, log_dir: str) -> tuple[_Group, bool]:
        """The job's group, and whether it was made for this job."""
        # ctrl_bps gives a label's jobs the same objects (command, request):
        # a job whose attributes are those of its label's last job, object
        # for object, is in that job's group, without building the key.
        values = _KEYED(gwjob)
        env = gwjob.environment or None  # (each job has an empty dict of its own)
        last = self._last.get(gwjob.label)
        if (
            last is not None
            and last[0] is kind
            and last[1] is log_dir
            and last[2] is env
            and all(map(operator.is_, values, last[3]))
        ):
            return last[4], False
        executable = gwjob.executable
        key = (
            gwjob.label,
            kind,  # a StrEnum: its own value (.value is slow)
            None if executable is None else executable.src_uri,
            gwjob.arguments,
            tuple(sorted(env.items())) if env else (),
            _hashable_resources(values[2:]),  # (values: executable, arguments, then resources)
            log_dir,
        )
        group = self._groups.get(key)
        new = group is None
        if group is None:
            keys = self._builder.placeholders(gwjob) if executable is not None else ()
            group = self._groups[key] = _Group(gwjob, keys, self._resources_of(gwjob), log_dir)
            group.constant = [(k, gwjob.cmdvals.get(k, _MISSING)) for k in keys]
        self._last[gwjob.label] = (kind, log_dir, env, values, group)
        return group, new

    def add(self, seq: int, kind: JobKind, gwjob: GenericWorkflowJob, log_dir: str) -> None:
        """Add a job whose logs go to ``log_dir``."""
        self._count += 1
        group, new = self._group_of(kind, gwjob, log_dir)
        if not new:  # (a new group's first values are this job's)
            cmdvals = gwjob.cmdvals
            # Only what has not varied yet is compared: usually two or three
            # values per job.
            for name, first in group.constant:
                if cmdvals.get(name, _MISSING) != first:
                    group.varying.add(name)
                    group.constant = [(k, v) for k, v in group.constant if k != name]
        group.jobs.append((seq, kind, gwjob))

    def add_alone(
        self, seq: int, kind: JobKind, gwjob: GenericWorkflowJob, log_dir: str, **extra: Any
    ) -> None:
        """Add a job with a template of its own (the final job), ``extra``
        added to its resources."""
        resources = {**self._resources_of(gwjob), **extra}
        self._count += 1
        self._ungrouped.append((seq, kind, gwjob, resources, log_dir))

    def plan(self, edges: list[tuple[int, int]]) -> WorkflowPlan:
        """The plan of every job added: rows in ``seq`` order."""
        templates: list[JobTemplate] = []
        rows: list[PlanRow | None] = [None] * self._count
        builder = self._builder
        for group in self._groups.values():
            index = len(templates)
            env = builder.environment(group.first)
            shared = builder.shared_words(group.first, group.varying)
            argv = None if shared is None else tuple(shared)
            templates.append(JobTemplate(argv, env, group.resources, group.log_dir))
            # The usual case: one hole, a word that is exactly one placeholder
            # (``{qgraphNodeId}``): its value, if plain, is the job's word.
            alone = builder.placeholder_alone(group.first, group.varying) if argv is not None else None
            for seq, kind, gwjob in group.jobs:
                if argv is None:
                    words: str | None = encode_words(builder.command(gwjob).argv)
                elif alone is not None and _plain(value := gwjob.cmdvals.get(alone)):
                    words = "[" + _ENCODE_STRING(value) + "]"
                elif group.varying:
                    words = encode_words(builder.own_words(gwjob, group.varying))
                else:
                    words = None
                rows[seq] = (seq, gwjob.name, gwjob.label, kind, data_id(gwjob), index, words)
        for seq, kind, gwjob, resources, log_dir in self._ungrouped:
            command = builder.command(gwjob)
            templates.append(JobTemplate(command.argv, command.env, resources, log_dir))
            rows[seq] = (seq, gwjob.name, gwjob.label, kind, data_id(gwjob), len(templates) - 1, None)
        if any(row is None for row in rows):
            raise AssertionError("plan rows must be numbered 0..n-1")
        return WorkflowPlan(templates, rows, edges)  # type: ignore[arg-type]
