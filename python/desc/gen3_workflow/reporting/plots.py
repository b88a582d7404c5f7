"""A run's history as one PNG: when each task label ran, how many jobs ran
at once, and how fast they finished.

Everything is aggregated with numpy before it is drawn (binned counts, one
image for all labels' activity, one line per label), never one artist per
job, so that a run of 100,000 jobs plots in seconds.

Panels, sharing the time axis:

1. Timeline by label: a band from each label's first start to its last end,
   shaded by how many of its jobs ran in each time bin; failed jobs are red
   crosses at their end time.
2. Jobs running at once: stacked per label (bin averages), with the exact
   total as a line; and, dashed, the jobs launched to the executor but not
   started yet (waiting for a worker), with their mean wait.
3. Jobs finished per minute, per label; failures as a dashed black line.
"""

from __future__ import annotations

import datetime
import os
import time

import numpy as np

from ..store.records import JobState
from .history import JobHistory
from .text import format_duration

__all__ = ["busy_time", "plot_history", "queue_depth", "rate_bin_seconds", "running_count"]


def busy_time(start: np.ndarray, end: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Job-seconds spent running within each bin.

    Parameters
    ----------
    start, end : `numpy.ndarray`
        Start and end of each job (``end >= start``, finite).
    edges : `numpy.ndarray`
        Increasing bin edges.

    Returns
    -------
    busy : `numpy.ndarray`
        ``len(edges) - 1`` values; divided by the bin widths, the mean number
        of jobs running in each bin.
    """
    # I(t) = sum_j overlap([start_j, end_j], [-inf, t]), evaluated at the
    # edges with sorted times and cumulative sums: O((N + B) log N).
    starts, ends = np.sort(start), np.sort(end)
    cum_starts = np.concatenate([[0.0], np.cumsum(starts)])
    cum_ends = np.concatenate([[0.0], np.cumsum(ends)])
    n_started = np.searchsorted(starts, edges, side="right")
    n_ended = np.searchsorted(ends, edges, side="right")
    integral = (edges * n_started - cum_starts[n_started]) - (edges * n_ended - cum_ends[n_ended])
    return np.diff(integral)


def running_count(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact number of jobs running, as a step function.

    Parameters
    ----------
    start, end : `numpy.ndarray`
        Start and end of each job.

    Returns
    -------
    times, counts : `numpy.ndarray`
        From ``times[i]`` on, ``counts[i]`` jobs run.
    """
    times = np.concatenate([start, end])
    steps = np.concatenate([np.ones(start.size, dtype=np.int64), -np.ones(end.size, dtype=np.int64)])
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(steps[order])


def queue_depth(history: JobHistory, now: float) -> tuple[np.ndarray, np.ndarray]:
    """The number of jobs waiting at the executor (launched, not started),
    as a step function (see `running_count`); a job launched but never
    started waits until ``now`` if it has not ended, else until its end."""
    if history.launched.size != len(history):  # a history without launch times
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    launched = history.launched
    until = np.where(np.isfinite(history.start), history.start, history.end)
    until = np.where(np.isfinite(until), until, now)
    waited = np.isfinite(launched)
    return running_count(launched[waited], np.maximum(until[waited], launched[waited]))


_NICE_SECONDS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def rate_bin_seconds(span: float, target: int = 60) -> float:
    """A round bin width (a second or more) giving about ``target`` bins over
    ``span`` seconds."""
    wanted = span / target
    return float(next((w for w in _NICE_SECONDS if w >= wanted), 86400 * np.ceil(wanted / 86400)))


def _time_unit(span: float) -> tuple[float, str]:
    if span <= 120:
        return 1.0, "seconds"
    if span <= 2 * 3600:
        return 60.0, "minutes"
    if span <= 3 * 86400:
        return 3600.0, "hours"
    return 86400.0, "days"


def plot_history(history: JobHistory, output: str, bins: int = 200, now: float | None = None) -> str:
    """Draw a run's history into a PNG file.

    Parameters
    ----------
    history : `JobHistory`
        The run's jobs.
    output : `str`
        The PNG file to write.
    bins : `int`
        Time bins of the aggregated panels.
    now : `float`, optional
        End of jobs still running (default: the current time).

    Returns
    -------
    output : `str`
        The file written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    now = time.time() if now is None else now
    start = history.start.copy()
    end = history.end.copy()
    running = history.state == history.state_code(JobState.RUNNING)
    end[running & np.isnan(end) & np.isfinite(start)] = now
    ran = np.isfinite(start) & np.isfinite(end)
    end[ran] = np.maximum(end[ran], start[ran])
    failed = (history.state == history.state_code(JobState.FAILED)) & np.isfinite(end)
    done = (history.state == history.state_code(JobState.EXEC_DONE)) & np.isfinite(end)

    labels = history.labels
    n_labels = max(len(labels), 1)
    fig, axes = plt.subplots(
        3,
        1,
        figsize=(12, 4 + 0.28 * n_labels + 6),
        sharex=True,
        gridspec_kw={"height_ratios": [max(2.0, 0.28 * n_labels), 3, 3]},
        constrained_layout=True,
    )
    ax_timeline, ax_running, ax_rate = axes
    run = history.run
    title = f"{run.name}: {len(history)} jobs, {int(done.sum())} done, {int(failed.sum())} failed"

    if not ran.any():
        for ax in axes:
            ax.text(0.5, 0.5, "no job has run yet", ha="center", va="center", transform=ax.transAxes)
        fig.suptitle(title)
        fig.savefig(output, dpi=100)
        plt.close(fig)
        return output

    t0 = float(np.nanmin(start[ran]))
    t1 = float(max(np.nanmax(end[ran]), np.nanmax(end[failed | done], initial=t0)))
    span = max(t1 - t0, 1.0)
    unit, unit_name = _time_unit(span)
    edges = np.linspace(t0, t0 + span, bins + 1)
    width = edges[1] - edges[0]
    x = (edges - t0) / unit

    # Mean number of running jobs per label and bin.
    activity = np.zeros((len(labels), bins))
    for i in range(len(labels)):
        mine = ran & (history.label == i)
        if mine.any():
            activity[i] = busy_time(start[mine], end[mine], edges) / width

    # 1. Timeline: bands, activity image (each label's row scaled to its own
    # peak, so that a label with few jobs shows as well as one with many),
    # failures.
    peak = activity.max(axis=1)
    scaled = np.ma.masked_less_equal(activity / np.where(peak > 0, peak, 1.0)[:, None], 0.0)
    cmap = plt.get_cmap("Blues").with_extremes(bad=(0.0, 0.0, 0.0, 0.0))
    if scaled.count():
        image = ax_timeline.pcolormesh(
            x, np.arange(len(labels) + 1) - 0.5, scaled, cmap=cmap, vmin=0.0, vmax=1.0, shading="flat"
        )
        fig.colorbar(image, ax=ax_timeline, label="jobs running / label's peak", pad=0.01)
    first = np.full(len(labels), np.nan)
    last = np.full(len(labels), np.nan)
    for i in range(len(labels)):
        mine = ran & (history.label == i)
        if mine.any():
            first[i], last[i] = start[mine].min(), end[mine].max()
    has = np.isfinite(first)
    ax_timeline.barh(
        np.flatnonzero(has),
        (last[has] - first[has]) / unit,
        left=(first[has] - t0) / unit,
        height=0.8,
        facecolor="none",
        edgecolor="0.4",
        linewidth=0.8,
    )
    if failed.any():
        ax_timeline.scatter(
            (end[failed] - t0) / unit,
            history.label[failed],
            marker="x",
            color="red",
            s=18,
            linewidths=1.0,
            label=f"failed ({int(failed.sum())})",
            zorder=3,
            rasterized=True,
        )
        ax_timeline.legend(loc="upper right", fontsize="small")
    ticks = [f"{label} (peak {p:.0f})" if p else label for label, p in zip(labels, peak, strict=True)]
    ax_timeline.set_yticks(range(len(labels)), ticks, fontsize="small")
    ax_timeline.set_ylim(len(labels) - 0.5, -0.5)
    ax_timeline.set_title("Jobs by task label (band: first start to last end; shade: jobs running)")

    # 2. Running at once.
    colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(labels))]
    ax_running.stackplot(
        x, np.hstack([activity, activity[:, -1:]]), labels=labels, colors=colors, step="post", alpha=0.8
    )
    times, counts = running_count(start[ran], end[ran])
    ax_running.step((times - t0) / unit, counts, where="post", color="black", linewidth=0.7, label="total")
    q_times, q_counts = queue_depth(history, now)
    if q_counts.any():
        waits = history.queue[np.isfinite(history.queue)]
        mean = float(waits.mean()) if waits.size else float("nan")
        mean_wait = f"{mean:.1f} s" if mean < 60 else format_duration(mean)
        ax_running.step(
            (q_times - t0) / unit,
            q_counts,
            where="post",
            color="0.45",
            linestyle="--",
            linewidth=0.9,
            label=f"waiting for a worker (mean wait {mean_wait})",
        )
    ax_running.set_ylabel("jobs")
    ax_running.set_ylim(bottom=0)
    ax_running.set_title(
        "Jobs running at once (stacked by label: bin means; line: exact total; dashed: launched, not started)"
    )
    if len(labels) <= 20:
        ax_running.legend(loc="upper left", fontsize="x-small", ncol=max(1, len(labels) // 10 + 1))

    # 3. Finished per minute, in round bins of a second or more.
    rate_width = rate_bin_seconds(span)
    rate_edges = t0 + rate_width * np.arange(int(np.ceil(span / rate_width)) + 1)
    rate_x = (rate_edges - t0) / unit
    per_minute = 60.0 / rate_width
    for i, label in enumerate(labels):
        mine = done & (history.label == i)
        if mine.any():
            hist, _ = np.histogram(end[mine], bins=rate_edges)
            ax_rate.stairs(hist * per_minute, rate_x, color=colors[i], label=label, linewidth=1.2)
    if failed.any():
        hist, _ = np.histogram(end[failed], bins=rate_edges)
        ax_rate.stairs(hist * per_minute, rate_x, color="black", linestyle="--", label="failed")
    ax_rate.set_ylabel("jobs finished / minute")
    ax_rate.set_ylim(bottom=0)
    ax_rate.set_title(f"Jobs finished per minute (bins of {format_duration(rate_width)})")
    if len(labels) <= 20:
        ax_rate.legend(loc="upper left", fontsize="x-small", ncol=max(1, len(labels) // 10 + 1))
    started = datetime.datetime.fromtimestamp(t0).strftime("%Y-%m-%d %H:%M:%S")
    ax_rate.set_xlabel(f"{unit_name} since {started}")
    ax_rate.set_xlim(0, span / unit)

    fig.suptitle(title)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    return output
