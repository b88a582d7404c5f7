"""What a run did, per task label: job counts by state, wall time, CPU time
and peak memory where known, the hosts jobs ran on, its slowest jobs and its
failures.

`summarize` turns a `JobHistory` into a plain dictionary (what ``--json``
prints); `format_summary` renders that dictionary as text.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ..constants import MONITORING_FILENAME
from ..store.records import JobState
from .history import STATES, JobHistory
from .text import format_clock, format_duration, format_failed_job

__all__ = ["MAX_HOSTS", "format_summary", "summarize"]

_MB = 1024.0 * 1024.0
MAX_HOSTS = 20
"""Hosts the text names; the rest are counted."""


def _number(value: float) -> float | None:
    """A JSON-friendly float: `None` for NaN."""
    return None if not math.isfinite(value) else round(float(value), 3)


def _sum_mean(values: np.ndarray, mask: np.ndarray) -> tuple[float | None, float | None]:
    chosen = values[mask]
    chosen = chosen[np.isfinite(chosen)]
    if chosen.size == 0:
        return None, None
    return _number(chosen.sum()), _number(chosen.mean())


def _job(history: JobHistory, i: int) -> dict[str, Any]:
    exit_code = history.exit_code[i]
    host = int(history.host[i]) if len(history.host) else -1
    return {
        "name": history.name[i],
        "label": history.labels[history.label[i]],
        "data_id": history.data_id[i],
        "state": STATES[history.state[i]].value,
        "wall_time": _number(history.wall[i]),
        "cpu_time": _number(history.cpu[i]),
        "peak_memory_mb": _number(history.rss[i] / _MB),
        "attempts": int(history.attempts[i]),
        "exit_code": None if not math.isfinite(exit_code) else int(exit_code),
        "message": history.message[i],
        "host": history.hosts[host] if host >= 0 else None,
        "log": history.stderr[i],
    }


def _natural(host: str) -> list[Any]:
    """Sort key that puts ``n2`` before ``n10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", host)]


def summarize(history: JobHistory, slowest: int = 5) -> dict[str, Any]:
    """Aggregate a run's jobs.

    Parameters
    ----------
    history : `JobHistory`
        The run's jobs.
    slowest : `int`
        How many of the longest jobs to list.

    Returns
    -------
    summary : `dict`
        ``submit_dir``, ``run`` (name, state, host, pid, start and end
        times), ``resources`` (where CPU and memory come from, or `None`),
        ``labels`` (label -> ``counts`` by state, ``total``,
        ``wall_time_total``, ``wall_time_mean`` (from each payload's start
        to its end), ``queue_time_mean`` (from launch to start), ``cpu_time_total``,
        ``cpu_time_mean``, ``peak_memory_mb``; seconds, `None` where
        unknown), ``totals`` (counts by state), ``hosts`` (host -> number
        of jobs whose last attempt ran there, hosts in natural order; jobs
        that never ran, or ran before hosts were kept, are not counted),
        ``executors`` (executor name -> number of jobs whose last attempt
        it ran),
        ``slowest`` and ``failures`` (jobs with label, data ID, state, times,
        exit code, message, the host of their last attempt and log file).
    """
    counts = history.counts()
    wall = history.wall
    labels: dict[str, Any] = {}
    for i, label in enumerate(history.labels):
        mask = history.label == i
        wall_total, wall_mean = _sum_mean(wall, mask)
        _, queue_mean = _sum_mean(history.queue, mask)
        cpu_total, cpu_mean = _sum_mean(history.cpu, mask)
        rss = history.rss[mask]
        rss = rss[np.isfinite(rss)]
        labels[label] = {
            "counts": {state.value: int(counts[i, j]) for j, state in enumerate(STATES)},
            "total": int(counts[i].sum()),
            "wall_time_total": wall_total,
            "wall_time_mean": wall_mean,
            "queue_time_mean": queue_mean,
            "cpu_time_total": cpu_total,
            "cpu_time_mean": cpu_mean,
            "peak_memory_mb": _number(rss.max() / _MB) if rss.size else None,
        }
    finite = np.flatnonzero(np.isfinite(wall))
    n = min(max(slowest, 0), finite.size)
    top = finite[np.argsort(-wall[finite], kind="stable")[:n]] if n else finite[:0]
    failed = np.flatnonzero(history.state == history.state_code(JobState.FAILED))
    record = history.run
    run = {
        "name": record.name,
        "state": record.state.value,
        "pid": record.pid,
        "host": record.host,
        "start_time": record.start_time,
        "end_time": record.end_time,
    }
    return {
        "submit_dir": history.submit_dir,
        "run": run,
        "resources": ", ".join(history.resource_sources) or None,
        "labels": labels,
        "totals": {state.value: int(counts[:, j].sum()) for j, state in enumerate(STATES)},
        "total": len(history),
        "hosts": dict(sorted(history.host_counts().items(), key=lambda item: _natural(item[0]))),
        "executors": history.executor_counts,
        "slowest": [_job(history, int(i)) for i in top],
        "failures": [_job(history, int(i)) for i in failed],
    }


_COLUMNS = (
    "wall_time_total",
    "wall_time_mean",
    "queue_time_mean",
    "cpu_time_total",
    "cpu_time_mean",
    "peak_memory_mb",
)


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    # Warm quanta take tens of milliseconds: two decimals below a second.
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"


def format_summary(summary: dict[str, Any], max_failures: int = 20) -> str:
    """Render `summarize`'s result as text.

    Parameters
    ----------
    summary : `dict`
        What `summarize` returned.
    max_failures : `int`
        Failed jobs listed one per line; the rest are counted.

    Returns
    -------
    text : `str`
        A header, the per-label table, the hosts, the slowest jobs and the
        failures.
    """
    run = summary["run"]
    start, end = run.get("start_time"), run.get("end_time")
    lines = [
        f"Run {run['name']} in {summary['submit_dir']}",
        f"  state: {run['state']}; started {format_clock(start)}, ended {format_clock(end)}"
        + (f" (elapsed {format_duration(end - start)})" if start and end else ""),
    ]
    if summary["resources"]:
        sources = [
            f"parsl monitoring ({source})" if source == MONITORING_FILENAME else source
            for source in summary["resources"].split(", ")
        ]
        lines.append(f"  CPU time and peak memory: {' and '.join(sources)}")
    else:
        lines.append("  CPU time and peak memory: not known (a run from before gen3_workflow measured them)")
    states = [state.value for state in STATES]
    width = max([len("task_type"), *(len(label) for label in summary["labels"])])
    head = f"{'task_type':<{width}}" + "".join(f"{s:>10}" for s in [*states, "total"])
    head += "".join(
        f"{c:>13}"
        for c in ("wall_sum_s", "wall_mean_s", "queue_mean_s", "cpu_sum_s", "cpu_mean_s", "peak_mem_MB")
    )
    lines += ["", head]
    for label, row in summary["labels"].items():
        text = f"{label:<{width}}" + "".join(f"{row['counts'][s]:>10}" for s in states)
        text += f"{row['total']:>10}"
        for key in _COLUMNS:
            text += f"{_seconds(row[key]):>13}"
        lines.append(text)
    totals = summary["totals"]
    lines.append(
        f"{'TOTAL':<{width}}" + "".join(f"{totals[s]:>10}" for s in states) + f"{summary['total']:>10}"
    )
    lines += ["", _hosts_line(summary["hosts"])]
    if len(summary["executors"]) > 1:
        lines.append(
            "Executors (jobs run): " + ", ".join(f"{e} {n}" for e, n in summary["executors"].items())
        )
    if summary["slowest"]:
        lines += ["", f"Slowest jobs ({len(summary['slowest'])}):"]
        for job in summary["slowest"]:
            extra = f", cpu {job['cpu_time']:.1f} s" if job["cpu_time"] is not None else ""
            extra += f", peak {job['peak_memory_mb']:.0f} MB" if job["peak_memory_mb"] is not None else ""
            lines.append(
                f"  {job['wall_time']:9.1f} s  {job['label']} {job['data_id']} {job['state']}{extra}; "
                f"log: {job['log']}"
            )
    failures = summary["failures"]
    lines += ["", f"Failed jobs ({len(failures)}):" if failures else "Failed jobs: none"]
    for job in failures[:max_failures]:
        words = (job["label"], job["data_id"], job["exit_code"], job["message"], job["log"], job["attempts"])
        lines.append("  " + format_failed_job(*words, host=job["host"]))
    if len(failures) > max_failures:
        lines.append(f"  ... and {len(failures) - max_failures} more (all of them with --json)")
    return "\n".join(lines)


def _hosts_line(hosts: dict[str, int], most: int = MAX_HOSTS) -> str:
    """``Hosts (jobs run): n1 12, n2 11, ...``: the first ``most`` hosts,
    then how many more."""
    if not hosts:
        return "Hosts (jobs run): not recorded (a run from before gen3_workflow kept them)"
    shown = ", ".join(f"{host} {n}" for host, n in list(hosts.items())[:most])
    more = f", ... and {len(hosts) - most} more hosts (all of them with --json)" if len(hosts) > most else ""
    return f"Hosts (jobs run): {shown}{more}"
