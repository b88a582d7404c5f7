"""Group a workflow's jobs into `JobTemplate` rows, in one pass, in time
linear in the jobs.

Jobs that share label, kind, command template, environment, resource
request and log directory form a group.  A group's template holds the
words its jobs share, with a hole for each placeholder seen to take more
than one value (``{qgraphNodeId}``); a job's row keeps only its words for
the holes.  The slow parts (splitting and quoting the command, resolving
files, the resource request) run once per group, not once per job.

Rows are made as jobs arrive, so a plan can be written while it is made.
When a placeholder a group had so far seen with one value takes another,
the group starts a new template with a hole there; the rows made before
keep the template they were made with, which is right for them.  So a
group has one template per placeholder found to vary, a few at most.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable
from typing import Any

from lsst.ctrl.bps import GenericWorkflowJob

from ..store.records import JobKind
from ..store.templates import JobTemplate, PlanRow, encode_words
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

PER_JOB_PLACEHOLDERS = frozenset({"qgraphNodeId"})
"""Placeholders ctrl_bps gives each quantum job a value of its own: a new
group has a hole for them from its first job (else every group would start
with a template of one job)."""


def data_id(gwjob: GenericWorkflowJob) -> str:
    """The job's data ID as JSON (ctrl_bps's tags, without the label and
    QuantumGraph node it adds for bookkeeping)."""
    tags = gwjob.tags
    if not tags:
        return "{}"
    values = tags.copy()
    values.pop("label", None)
    values.pop("node_number", None)
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
    "compute_site",
)
"""What `~.workflow.job_resources` reads from a job."""

_KEYED = operator.attrgetter("executable", "arguments", *_RESOURCE_ATTRIBUTES)
"""The attributes a job's group key is made of (with its label, kind, log
directory and environment), read in one call."""


def _hashable_resources(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The values of `_RESOURCE_ATTRIBUTES`, hashable (a list of exit codes
    becomes a tuple)."""
    return tuple(tuple(value) if isinstance(value, list) else value for value in values)


def _plain(value: Any) -> bool:
    """Whether a placeholder's value is a word as it is (no further
    placeholder, file or variable in it)."""
    return type(value) is str and "{" not in value and "<" not in value


@dataclasses.dataclass
class _Group:
    """Jobs sharing everything but the values of some placeholders."""

    first: GenericWorkflowJob
    """Its first job: the values of the placeholders that do not vary."""
    env: tuple[tuple[str, str], ...]
    resources: dict[str, Any]
    log_dir: str
    varying: frozenset[str]
    """Placeholders with a hole in the current template."""
    constant: list[tuple[str, Any]]
    """The other placeholders, with the first job's value."""
    template: int = -1
    """The current template's position."""
    whole: bool = False
    """Its jobs keep their whole command (the template's argv is `None`)."""
    alone: str | None = None
    """The placeholder that is a hole's whole word, if there is one hole."""


class TemplateGrouper:
    """Makes each job's plan row as it is added, and the templates the rows
    refer to (`templates`, which grows as groups are found).

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
        self.templates: list[JobTemplate] = []
        self._groups: dict[tuple[Any, ...], _Group] = {}
        # Per label: the last job's kind, log directory, environment, keyed
        # attributes and group.
        self._last: dict[str, tuple[JobKind, str, dict[str, str] | None, tuple[Any, ...], _Group]] = {}

    def _group_of(
        self,
        kind: JobKind,
        gwjob: GenericWorkflowJob,
        log_dir: str,
        values: tuple[Any, ...],
        env: dict[str, str] | None,
    ) -> tuple[_Group, bool]:
        """The job's group, and whether it was made for this job (``values``
        its `_KEYED` attributes, ``env`` its environment or `None`)."""
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
            varying = PER_JOB_PLACEHOLDERS.intersection(keys)
            group = self._groups[key] = _Group(
                gwjob,
                self._builder.environment(gwjob),
                self._resources_of(gwjob),
                log_dir,
                varying,
                [(k, gwjob.cmdvals.get(k, _MISSING)) for k in keys if k not in varying],
            )
            self._new_template(group)
        self._last[gwjob.label] = (kind, log_dir, env, values, group)
        return group, new

    def _new_template(self, group: _Group) -> None:
        """Give the group a template with holes for its varying placeholders."""
        builder = self._builder
        shared = builder.shared_words(group.first, set(group.varying))
        argv = None if shared is None else tuple(shared)
        group.whole = argv is None
        # The usual case: one hole, a word that is exactly one placeholder
        # (``{qgraphNodeId}``): its value, if plain, is the job's word.
        group.alone = None if argv is None else builder.placeholder_alone(group.first, set(group.varying))
        group.template = len(self.templates)
        self.templates.append(JobTemplate(argv, group.env, group.resources, group.log_dir))

    def _vary(self, group: _Group, cmdvals: dict[str, Any]) -> None:
        """Give the group holes for the placeholders whose value in
        ``cmdvals`` is not its first job's."""
        changed = {name for name, first in group.constant if cmdvals.get(name, _MISSING) != first}
        group.varying = group.varying | changed
        group.constant = [(k, v) for k, v in group.constant if k not in changed]
        self._new_template(group)

    def row(self, seq: int, kind: JobKind, gwjob: GenericWorkflowJob, log_dir: str) -> PlanRow:
        """The plan row of a job whose logs go to ``log_dir``.

        Called once per job: the usual group check is made here, and
        `_group_of` builds the group key only when it fails.
        """
        # ctrl_bps gives a label's jobs the same objects (command, request):
        # a job whose attributes equal its label's last job's is in that
        # job's group (its key would be equal), and one C-level tuple
        # comparison, identity first, says so without building the key.
        values = _KEYED(gwjob)
        env = gwjob.environment or None  # (each job has an empty dict of its own)
        last = self._last.get(gwjob.label)
        if (
            last is not None
            and last[0] is kind
            and last[1] is log_dir
            and last[2] == env
            and values == last[3]
        ):
            group, new = last[4], False
        else:
            group, new = self._group_of(kind, gwjob, log_dir, values, env)
        cmdvals = gwjob.cmdvals
        if not new:
            # Only what has not varied yet is compared: usually two or three
            # values per job.
            for name, first in group.constant:
                if cmdvals.get(name, _MISSING) != first:
                    self._vary(group, cmdvals)
                    break
        if (alone := group.alone) is not None and _plain(value := cmdvals.get(alone)):
            words: str | None = "[" + _ENCODE_STRING(value) + "]"
        elif group.whole:
            words = encode_words(self._builder.command(gwjob).argv)
        elif group.varying:
            words = encode_words(self._builder.own_words(gwjob, set(group.varying)))
        else:
            words = None
        return (seq, gwjob.name, gwjob.label, kind, data_id(gwjob), group.template, words)

    def row_alone(
        self, seq: int, kind: JobKind, gwjob: GenericWorkflowJob, log_dir: str, **extra: Any
    ) -> PlanRow:
        """The row of a job with a template of its own (the final job),
        ``extra`` added to its resources."""
        resources = {**self._resources_of(gwjob), **extra}
        command = self._builder.command(gwjob)
        self.templates.append(JobTemplate(command.argv, command.env, resources, log_dir))
        return (seq, gwjob.name, gwjob.label, kind, data_id(gwjob), len(self.templates) - 1, None)
