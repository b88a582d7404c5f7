"""What the job-state store holds: runs, jobs, their commands and states.

Plain data, shared by every layer (the plan writes these records, the runner
updates them, reports read them); standard library only, so that parsl
workers and warm runners can use `JobCommand` without importing the
middleware.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from ..errors import CommandError

__all__ = [
    "AttemptRecord",
    "JobCommand",
    "JobKind",
    "JobRecord",
    "JobState",
    "JobUpdate",
    "RunInfo",
    "RunRecord",
    "RunState",
    "render_word",
    "walltime_seconds",
]


class JobState(StrEnum):
    """Where a job is; the seed's ``status()`` columns, in order."""

    PENDING = "pending"
    LAUNCHED = "launched"
    RUNNING = "running"
    EXEC_DONE = "exec_done"
    FAILED = "failed"
    DEP_FAIL = "dep_fail"

    @property
    def is_final(self) -> bool:
        """Whether the job has ended (until a restart)."""
        return self in (JobState.EXEC_DONE, JobState.FAILED, JobState.DEP_FAIL)


class RunState(StrEnum):
    """Where a run is."""

    PREPARED = "prepared"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """Its submitting process was told to stop (SIGTERM, SIGINT, SIGHUP);
    ``bps restart`` resumes it."""


class JobKind(StrEnum):
    """The three kinds of job of a ctrl_bps workflow, in the order they run."""

    INIT = "init"
    QUANTUM = "quantum"
    FINAL = "final"


_ENV_MARKER = re.compile(r"<ENV:([^>]*)>")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
"""What a job's environment variable may be called."""


def render_word(word: str) -> str:
    """Shell-quote one argument, leaving ``<ENV:NAME>`` as ``"${NAME}"``.

    Parameters
    ----------
    word : `str`
        One argument, possibly holding ``<ENV:NAME>`` markers (names are
        checked when the plan is made).

    Returns
    -------
    text : `str`
        Bash text that evaluates to exactly that one argument.
    """
    if "<ENV:" not in word:
        return shlex.quote(word)
    parts = _ENV_MARKER.split(word)  # literal, name, literal, name, ..., literal
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            # Checked when the plan was made; checked again because a name
            # becomes shell text here.
            if not ENV_NAME.match(part):
                raise CommandError(f"invalid environment variable name in <ENV:{part}>")
            out.append(f'"${{{part}}}"')
        elif part:
            out.append(shlex.quote(part))
    return "".join(out) or "''"


def expand_word(word: str, environ: Mapping[str, str]) -> str:
    """The value of one argument with ``<ENV:NAME>`` markers replaced from
    ``environ`` (empty where unset, as the shell would)."""
    if "<ENV:" not in word:
        return word
    return _ENV_MARKER.sub(lambda m: environ.get(m.group(1), ""), word)


@dataclasses.dataclass(frozen=True, slots=True)
class JobCommand:
    """A job's command as data: what to run, and with which environment.

    Values from the bps file stay single arguments: nothing here is ever
    parsed by a shell except through `shell`, which quotes every word.
    """

    argv: tuple[str, ...]
    """Executable, then arguments; ``<ENV:NAME>`` markers are expanded on the
    worker."""
    env: tuple[tuple[str, str], ...] = ()
    """Variables the job sets before it runs, in order."""

    def shell(self) -> str:
        """The command as one bash line (``export`` lines, then the quoted words)."""
        exports = "".join(f"export {name}={render_word(value)}; " for name, value in self.env)
        return exports + " ".join(render_word(word) for word in self.argv)

    def expanded(self, environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
        """The variables to set and the argument vector, markers expanded.

        Parameters
        ----------
        environ : `~collections.abc.Mapping` [`str`, `str`]
            The environment the job starts in.

        Returns
        -------
        exports : `dict` [`str`, `str`]
            The job's own variables, with their values.
        argv : `list` [`str`]
            The argument vector to execute.
        """
        env = dict(environ)
        exports = {}
        for name, value in self.env:
            env[name] = exports[name] = expand_word(value, env)
        return exports, [expand_word(word, env) for word in self.argv]

    def to_json(self) -> str:
        """The store's text form."""
        return json.dumps([list(self.argv), [list(pair) for pair in self.env]], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobCommand:
        """Read the store's text form."""
        argv, env = json.loads(text)
        return cls(tuple(argv), tuple((name, value) for name, value in env))

    def __str__(self) -> str:
        return self.shell()


@dataclasses.dataclass(slots=True)
class JobRecord:
    """One job of the plan, with its latest state."""

    seq: int
    """Position in a topological order of the DAG (parents come first)."""
    name: str
    label: str
    kind: JobKind
    data_id: str
    """The quantum's data ID, as JSON."""
    command: JobCommand
    resources: dict[str, Any]
    """``cpus``, ``memory`` (MB), ``disk`` (MB), ``walltime``, ``priority``."""
    stdout: str
    stderr: str
    state: JobState = JobState.PENDING
    attempts: int = 0
    exit_code: int | None = None
    t_launched: float | None = None
    t_running: float | None = None
    t_end: float | None = None
    message: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JobUpdate:
    """A change of one job's state, queued by the runner and written in
    batches."""

    seq: int
    state: JobState
    time: float
    """When it changed, as the runner saw it; for a final state, when the
    payload ended, as the node that ran it says, where it says so."""
    attempts: int | None = None
    exit_code: int | None = None
    message: str | None = None
    started: float | None = None
    """When the payload started, as the node that ran it says (it replaces
    the time the runner first saw it running)."""


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRecord:
    """How one attempt of a job ended (kept for every attempt, so that
    reports can show what each try did)."""

    seq: int
    number: int
    """1 for the first try, counted over every submission of the run."""
    succeeded: bool
    end: float
    exit_code: int | None = None
    memory: int | None = None
    """Its memory request (MB), if it had one."""
    message: str | None = None
    cpu: float | None = None
    """CPU seconds its payload took, if measured."""
    max_rss: int | None = None
    """Its payload's peak resident memory (bytes), if measured."""
    start: float | None = None
    """When its payload started, on the node that ran it, if it said so."""
    host: str | None = None
    """The host that ran it (its node's name), if it said so: none for an
    attempt lost before it started, or recorded before hosts were kept."""
    executor: str | None = None
    """The name of the executor it was handed to (none for the init and
    final jobs, which run locally, or before executors were kept)."""


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What report and restart need to know of a run, taken from its bps
    configuration when it was prepared."""

    operator: str | None = None
    project: str | None = None
    campaign: str | None = None
    payload_name: str | None = None
    output_run: str | None = None
    """The run collection outputs are registered in."""
    butler_config: str | None = None
    compute_site: str | None = None
    """The bps file's ``computeSite``, if it names one (the report's SITE)."""
    parsl_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The validated ``parsl_config`` section, every key filled in."""
    site: str | None = None
    """Where parsl ran the jobs (``Local`` or ``Slurm``), as the run's
    execution mode said when it was prepared."""

    # The bps keys each field comes from.
    BPS_KEYS = {
        "operator": "operator",
        "project": "project",
        "campaign": "campaign",
        "payload_name": "payloadName",
        "output_run": "outputRun",
        "butler_config": "butlerConfig",
        "compute_site": "computeSite",
    }

    def to_json(self) -> str:
        """The store's text form."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RunInfo:
        """Read the store's text form (unknown keys are ignored)."""
        values = json.loads(text)
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run as its store records it."""

    name: str
    submit_dir: str
    info: RunInfo
    state: RunState
    pid: int | None = None
    """The process that runs (or last ran) it."""
    host: str | None = None
    """The host of that process."""
    start_time: float | None = None
    end_time: float | None = None
    submissions: int = 0
    """How many times it was started (submit, then restarts)."""


def walltime_seconds(request: object) -> float | None:
    """A job's ``requestWalltime`` (minutes, as ctrl_bps gives it) in seconds."""
    try:
        minutes = float(str(request))
    except ValueError:
        return None
    return minutes * 60.0 if minutes > 0 else None
