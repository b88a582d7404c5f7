"""A plan as the store keeps it: job templates, and per job only what is its own.

The jobs of one task label run one command with one environment, resource
request and log directory; only a few words differ (ctrl_bps's
``{qgraphNodeId}``).  A `JobTemplate` holds what they share, with holes
(`None`) where each job has a word of its own; a plan row holds the job's
name, label, kind, data ID, template and the words for the holes.  So a
million-job plan is written, and read back, without a million copies of the
same command line and resource request.

Standard library only, like `~.records`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .records import JobCommand, JobKind, JobRecord, JobState

__all__ = [
    "EdgeBlock",
    "JobTemplate",
    "PlanRow",
    "PlanSink",
    "WorkflowPlan",
    "edge_block",
    "edges_from_blob",
    "edges_to_blob",
    "encode_words",
]

PlanRow = tuple[int, str, str, str, str, int, str | None]
"""``seq, name, label, kind, data_id, template, words`` of one planned job
(the kind's value; the template's position in `WorkflowPlan.templates`;
its own words as `encode_words` gives them, `None` when it has none)."""

EdgeBlock = tuple["array[int]", "array[int]"]
"""Edges as two arrays of 64-bit ``seq`` (typecode ``q``): parents and
children, pair by pair.  A plan's 10^6 edges cost two arrays of 8 MB, not
10^6 tuples; the store keeps each block as two blobs and the scheduler
reads them as they are (`edges_to_blob`, `edges_from_blob`)."""

_ENCODE_STRING = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]


def edge_block(pairs: Iterable[tuple[int, int]]) -> EdgeBlock:
    """(parent, child) pairs as an `EdgeBlock`."""
    parents, children = array("q"), array("q")
    for parent, child in pairs:
        parents.append(parent)
        children.append(child)
    return parents, children


def edges_to_blob(values: array[int]) -> bytes:
    """The store's form of one array of an `EdgeBlock`: little-endian int64."""
    if sys.byteorder != "little":
        values = array("q", values)
        values.byteswap()
    return values.tobytes()


def edges_from_blob(blob: bytes) -> array[int]:
    """An array of an `EdgeBlock` from the store's form."""
    values = array("q", blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values


def encode_words(words: Sequence[str]) -> str:
    """A job's own words as the store's JSON text (a list of strings)."""
    return "[" + ",".join(_ENCODE_STRING(word) for word in words) + "]"


@dataclasses.dataclass(frozen=True, slots=True)
class JobTemplate:
    """What a group of jobs shares.

    A job's stdout and stderr are ``<log_dir>/<name>.stdout`` and ``.stderr``.
    """

    argv: tuple[str | None, ...] | None
    """The command's words, `None` where each job has a word of its own;
    `None` as a whole when every word is the job's own."""
    env: tuple[tuple[str, str], ...]
    """Variables the jobs set before they run, in order."""
    resources: dict[str, Any]
    """Resource request and retry rules (`~desc.gen3_workflow.plan.workflow.job_resources`)."""
    log_dir: str
    """Where the jobs' log files are."""

    def command(self, words: Sequence[str]) -> JobCommand:
        """The command of a job whose own words are ``words``."""
        if self.argv is None:
            return JobCommand(tuple(words), self.env)
        own = iter(words)
        argv = tuple(next(own, None) if word is None else word for word in self.argv)
        if None in argv or next(own, None) is not None:
            raise ValueError(f"{len(words)} words for the template's {self.argv.count(None)} holes")
        return JobCommand(argv, self.env)  # type: ignore[arg-type]

    def to_json(self) -> str:
        """The store's text form of ``argv``, ``env`` and ``resources``."""
        argv = None if self.argv is None else list(self.argv)
        return json.dumps([argv, [list(pair) for pair in self.env], self.resources], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, log_dir: str) -> JobTemplate:
        """Read the store's text form."""
        argv, env, resources = json.loads(text)
        return cls(
            None if argv is None else tuple(argv),
            tuple((name, value) for name, value in env),
            resources,
            log_dir,
        )


class PlanSink(Protocol):
    """Where a plan goes as it is made: rows in ``seq`` order and edges, in
    chunks, then the templates (their positions are the rows' ``template``)."""

    def add_rows(self, rows: list[PlanRow]) -> None:
        """Take the next rows."""

    def add_edges(self, edges: EdgeBlock) -> None:
        """Take more edges (parent and child ``seq``)."""

    def add_templates(self, templates: list[JobTemplate]) -> None:
        """Take the next templates."""

    def reset(self) -> None:
        """Forget what was taken so far: the planner starts over (in
        another order)."""


@dataclasses.dataclass
class WorkflowPlan:
    """A workflow ready for the store, whole in memory: templates, jobs in
    topological order (parents first), and edges between their ``seq``.
    It is a `PlanSink`."""

    templates: list[JobTemplate]
    rows: list[PlanRow]
    edges: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.rows)

    def add_rows(self, rows: list[PlanRow]) -> None:
        """Keep the next rows."""
        self.rows += rows

    def add_edges(self, edges: EdgeBlock) -> None:
        """Keep more edges."""
        self.edges += zip(*edges, strict=True)

    def add_templates(self, templates: list[JobTemplate]) -> None:
        """Keep the next templates."""
        self.templates += templates

    def reset(self) -> None:
        """Forget every row, edge and template."""
        self.templates, self.rows, self.edges = [], [], []

    def records(self) -> list[JobRecord]:
        """Every job as a pending `JobRecord` (for tests and small plans;
        the store never needs these)."""
        return [record_of(self.templates[row[5]], row) for row in self.rows]

    @classmethod
    def from_records(cls, jobs: Iterable[JobRecord], edges: Iterable[tuple[int, int]] = ()) -> WorkflowPlan:
        """The plan of ``jobs``, one template per distinct command,
        environment, resources and log directory (states are not kept).

        Raises
        ------
        ValueError
            If a job's logs are not ``<dir>/<name>.stdout`` and ``.stderr``.
        """
        templates: list[JobTemplate] = []
        index: dict[tuple[Any, ...], int] = {}
        rows: list[PlanRow] = []
        for job in jobs:
            log_dir = os.path.dirname(job.stdout)
            if (job.stdout, job.stderr) != (f"{log_dir}/{job.name}.stdout", f"{log_dir}/{job.name}.stderr"):
                raise ValueError(f"job {job.name}: logs must be <dir>/{job.name}.stdout and .stderr")
            key = (job.command, json.dumps(job.resources, sort_keys=True), log_dir)
            if key not in index:
                index[key] = len(templates)
                templates.append(JobTemplate(job.command.argv, job.command.env, dict(job.resources), log_dir))
            rows.append((job.seq, job.name, job.label, job.kind.value, job.data_id, index[key], None))
        return cls(templates, rows, list(edges))


def record_of(template: JobTemplate, row: PlanRow, state: str | None = None, *progress: Any) -> JobRecord:
    """The `JobRecord` of a plan row: pending, or in ``state`` with the
    store's ``attempts, exit_code, t_launched, t_running, t_end, message``."""
    seq, name, label, kind, data_id, _, words = row
    return JobRecord(
        seq,
        name,
        label,
        JobKind(kind),
        data_id,
        template.command(json.loads(words) if words else ()),
        dict(template.resources),
        f"{template.log_dir}/{name}.stdout",
        f"{template.log_dir}/{name}.stderr",
        *(() if state is None else (JobState(state), *progress)),
    )
