"""Every job of a run with its times, as columns: what the summary and the
plots are made of.

Times come from the run's job-state store, which always has them: a job's
start and end are when its payload started and ended, as the node that ran
it recorded them (``t_running``, ``t_end``; in a store from before, the start
is when the plug-in saw the job running, or when parsl launched it); its
launch is when parsl handed it to the executor (``t_launched``), so that the
time it queued is apart from its wall time.  CPU time and peak memory come from the store too, where the
plug-in measured each attempt's payload
(`~desc.gen3_workflow.execution.job_io.job_usage`: CPU time always, peak memory
except behind the bash-builtin wrapper).  For a run from before, they come
from parsl's monitoring database (``monitoring.db`` in the submit
directory) when the run had parsl monitoring with resource monitoring: its
``resource`` table holds psutil figures of each try, which are matched to
jobs by their stderr file.  The host each job's last attempt ran on comes
from the store, where the job recorded it (runs from before have none).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime
import logging
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..constants import MONITORING_FILENAME
from ..store.job_store import JobStateStore
from ..store.records import JobState, RunRecord

__all__ = ["MEASURED", "STATES", "JobHistory", "load_job_history", "load_resources"]

_LOG = logging.getLogger(__name__)

MEASURED = "measured by gen3_workflow"
"""`JobHistory.resource_sources`' name for the plug-in's own figures."""

STATES: tuple[JobState, ...] = tuple(JobState)
"""Job states in the order of `JobHistory.state` codes."""


@dataclasses.dataclass
class JobHistory:
    """The jobs of one run, one array element per job, in ``seq`` order."""

    submit_dir: str
    run: RunRecord
    labels: list[str]
    """Task labels (``pipetaskInit`` and ``finalJob`` included) in pipeline order."""
    label: np.ndarray
    """Index into `labels` of each job."""
    state: np.ndarray
    """Index into `STATES` of each job's state."""
    start: np.ndarray
    """Start time (seconds since the epoch), NaN if it never started."""
    end: np.ndarray
    """End time, NaN if it has not ended (or never ran)."""
    attempts: np.ndarray
    exit_code: np.ndarray
    """Exit code, NaN if none was recorded."""
    name: list[str]
    data_id: list[str]
    stderr: list[str]
    message: list[str | None]
    cpu: np.ndarray
    """CPU seconds (user + system, all tries), NaN if not known."""
    rss: np.ndarray
    """Peak resident memory in bytes, NaN if not known."""
    launched: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    """When parsl handed each job to its executor, NaN if it never did."""
    resources_known: bool = False
    """Whether CPU and memory figures were found for any job."""
    resource_sources: tuple[str, ...] = ()
    """Where they were found: `MEASURED` (the store), `MONITORING_FILENAME`."""
    hosts: list[str] = dataclasses.field(default_factory=list)
    """The hosts jobs ran on, in the order first seen."""
    host: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Index into `hosts` of the host each job's last attempt ran on, -1
    where none was recorded (it never ran, or ran before hosts were kept)."""
    executor_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    """Executor name -> number of jobs whose last attempt it ran, in the
    order first used."""

    def __len__(self) -> int:
        return len(self.name)

    @property
    def wall(self) -> np.ndarray:
        """Wall time of each job (seconds), NaN where unknown."""
        return self.end - self.start

    @property
    def queue(self) -> np.ndarray:
        """How long each job waited between its launch and its start
        (seconds), NaN where unknown."""
        waited = self.start - self.launched
        return np.where(np.isfinite(waited), np.maximum(waited, 0.0), np.nan)

    def host_counts(self) -> dict[str, int]:
        """Host -> number of jobs whose last attempt ran there."""
        counts = np.bincount(self.host[self.host >= 0], minlength=len(self.hosts))
        return {host: int(n) for host, n in zip(self.hosts, counts, strict=True)}

    def state_code(self, state: JobState) -> int:
        """The code of ``state`` in `state`."""
        return STATES.index(state)

    def counts(self) -> np.ndarray:
        """Jobs per label and state, shape ``(len(labels), len(STATES))``."""
        flat = np.bincount(self.label * len(STATES) + self.state, minlength=len(self.labels) * len(STATES))
        return flat.reshape(len(self.labels), len(STATES))


@contextlib.contextmanager
def _read_only(path: str) -> Iterator[sqlite3.Connection]:
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such database: {path}")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield db
    finally:
        db.close()


def _column(values: list[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def load_job_history(submit_dir: str, monitoring: bool = True) -> JobHistory:
    """Read every job of a run.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    monitoring : `bool`
        Also read CPU time and peak memory from ``monitoring.db`` if there
        is one.

    Returns
    -------
    history : `JobHistory`
        The jobs, in ``seq`` (topological) order.

    Raises
    ------
    RunNotFoundError
        If the directory holds no job-state store.
    """
    submit_dir = os.path.abspath(submit_dir)
    with JobStateStore.open(submit_dir) as store:
        run = store.run()
        labels = store.labels(kind=None)
        rows = store.history_rows()
        seqs = np.frombuffer(store.seqs(), dtype=np.int64) if rows else np.zeros(0, dtype=np.int64)
        usage = store.attempt_usage()
        last_hosts = store.last_hosts()
        last_executors = store.last_executors()
    index = {label: i for i, label in enumerate(labels)}
    codes = {state.value: i for i, state in enumerate(STATES)}
    columns = list(zip(*rows, strict=True)) if rows else [()] * 11
    n = len(rows)
    history = JobHistory(
        submit_dir=submit_dir,
        run=run,
        labels=labels,
        label=np.fromiter((index[v] for v in columns[0]), dtype=np.int64, count=n),
        state=np.fromiter((codes[v] for v in columns[1]), dtype=np.int64, count=n),
        start=_column(list(columns[2])),
        end=_column(list(columns[3])),
        attempts=np.array(columns[4], dtype=np.int64),
        exit_code=_column(list(columns[5])),
        name=list(columns[6]),
        data_id=list(columns[7]),
        stderr=list(columns[8]),
        message=list(columns[9]),
        launched=_column(list(columns[10])),
        cpu=np.full(n, np.nan),
        rss=np.full(n, np.nan),
    )
    # Hosts as codes: 10^6 jobs on a few hundred nodes need not hold 10^6 names.
    host_codes: dict[str, int] = {}
    history.host = np.full(n, -1, dtype=np.int64)
    if last_hosts:
        where = np.searchsorted(seqs, [seq for seq, _ in last_hosts])
        history.host[where] = [host_codes.setdefault(host, len(host_codes)) for _, host in last_hosts]
    history.hosts = list(host_codes)
    history.executor_counts = dict(collections.Counter(executor for _, executor in last_executors))
    # A job that never started (or whose start went unseen) has no wall time.
    history.start[np.isnan(history.end) & (history.state != history.state_code(JobState.RUNNING))] = np.nan
    sources = []
    if usage:
        where = np.searchsorted(seqs, [seq for seq, _, _ in usage])
        history.cpu[where] = _column([cpu for _, cpu, _ in usage])
        history.rss[where] = _column([rss for _, _, rss in usage])
        sources.append(MEASURED)
    path = os.path.join(submit_dir, MONITORING_FILENAME)
    # Only for a run from before the plug-in measured jobs: parsl's database
    # grows to gigabytes at 10^6 jobs, for what the store already holds.
    if monitoring and not usage and os.path.exists(path):
        try:
            resources = load_resources(path)
        except sqlite3.Error as exc:
            _LOG.warning("Cannot read %s: %s", path, exc)
            resources = {}
        for i, stderr in enumerate(history.stderr):
            found = resources.get(stderr)
            if found is not None:
                history.cpu[i], history.rss[i] = found
    history.resources_known = bool(np.isfinite(history.cpu).any() or np.isfinite(history.rss).any())
    if history.resources_known and not usage:
        sources.append(MONITORING_FILENAME)
    history.resource_sources = tuple(sources)
    return history


def _timestamp(value: Any) -> float:
    """Seconds since the epoch of a parsl monitoring time (local, naive)."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return datetime.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return 0.0


def load_resources(path: str) -> dict[str, tuple[float, float]]:
    """CPU time and peak memory per task, from a parsl monitoring database.

    Parameters
    ----------
    path : `str`
        The ``monitoring.db`` file.

    Returns
    -------
    resources : `dict` [`str`, `tuple` [`float`, `float`]]
        Task stderr path -> (CPU seconds summed over tries, peak resident
        bytes); of the latest parsl run (a ``bps restart`` adds one) that ran
        the task.  Empty if resource monitoring was off.
    """
    with _read_only(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"resource", "task", "workflow"} <= tables:
            return {}
        rows = db.execute(
            "SELECT t.task_stderr, w.time_began, "
            "MAX(COALESCE(r.psutil_process_time_user, 0) + COALESCE(r.psutil_process_time_system, 0)), "
            "MAX(r.psutil_process_memory_resident) "
            "FROM resource r JOIN task t ON r.task_id = t.task_id AND r.run_id = t.run_id "
            "JOIN workflow w ON w.run_id = t.run_id "
            "WHERE t.task_stderr IS NOT NULL GROUP BY r.run_id, r.task_id, r.try_id"
        ).fetchall()
    latest: dict[str, float] = {}
    result: dict[str, tuple[float, float]] = {}
    for stderr, began, cpu, rss in rows:
        began_s = _timestamp(began)
        cpu_s = float(cpu) if cpu is not None else np.nan
        rss_b = float(rss) if rss is not None else np.nan
        if stderr not in latest or began_s > latest[stderr]:
            latest[stderr] = began_s
            result[stderr] = (cpu_s, rss_b)
        elif began_s == latest[stderr]:  # another try of the same task
            old_cpu, old_rss = result[stderr]
            result[stderr] = (np.nansum([old_cpu, cpu_s]), np.nanmax([old_rss, rss_b]))
    return result
