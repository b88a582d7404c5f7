"""Unit tests of the operator tools on synthetic job-state stores: progress
reports, ETA formatting, the summary's aggregation (with a synthetic parsl
monitoring database), the plot's binning and its speed on 50,000 jobs, and
``gen3wf-watch`` on an ended run; and the checks of the user guide (every
command block names the test that runs it, every ``parsl_config`` example is
accepted, every key is in the reference)."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import job, set_run, write_store

from desc.gen3_workflow.cli import summary as summary_cli
from desc.gen3_workflow.cli import watch as watch_cli
from desc.gen3_workflow.errors import ParslConfigError
from desc.gen3_workflow.reporting.history import MEASURED, load_job_history
from desc.gen3_workflow.reporting.plots import (
    busy_time,
    plot_history,
    queue_depth,
    rate_bin_seconds,
    running_count,
)
from desc.gen3_workflow.reporting.progress import ProgressReporter
from desc.gen3_workflow.reporting.snapshot import format_snapshot, read_snapshot
from desc.gen3_workflow.reporting.summary import format_summary, summarize
from desc.gen3_workflow.reporting.text import format_duration, format_status_table
from desc.gen3_workflow.settings.parsl_section import ParslSettings
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import AttemptRecord, JobRecord, JobState, RunState

T0 = 1_700_000_000.0
LABELS = ["isr", "characterizeImage", "calibrate", "visitSummary", "globalTable"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _job(
    seq: int, label: str, state: JobState, start: float | None, end: float | None, **kw: object
) -> JobRecord:
    record = job(seq, label)
    record.state, record.t_running, record.t_end = state, start, end
    record.t_launched = None if start is None else start - 0.5
    record.attempts = 0 if start is None else 1
    for key, value in kw.items():
        setattr(record, key, value)
    return record


def make_store(
    submit_dir: Path, jobs: list[JobRecord], state: RunState = RunState.RUNNING, start: float = T0
) -> str:
    """A store holding ``jobs``, its run started at ``start`` (and ended
    unless ``state`` is RUNNING)."""
    with write_store(submit_dir, jobs) as store:
        store.start_run()
        if state != RunState.RUNNING:
            store.end_run(state)
    ends = [j.t_end for j in jobs if j.t_end is not None]
    end = max(ends) + 1 if (state != RunState.RUNNING and ends) else None
    set_run(submit_dir, start_time=start, end_time=end)
    return str(submit_dir)


def small_run() -> list[JobRecord]:
    """15 quanta as in a failed demo run, seen 100 s after the start: isr
    done or failed, characterizeImage running, the rest waiting."""
    jobs = [_job(0, "pipetaskInit", JobState.EXEC_DONE, T0, T0 + 2)]
    seq = 1
    for i in range(4):
        state = JobState.FAILED if i == 3 else JobState.EXEC_DONE
        extra = {"exit_code": 1, "message": "exit code 1"} if i == 3 else {"exit_code": 0}
        jobs.append(_job(seq, "isr", state, T0 + 10 + i, T0 + 40 + 10 * i, **extra))
        seq += 1
    for i in range(4):
        if i == 3:
            jobs.append(_job(seq, "characterizeImage", JobState.DEP_FAIL, None, T0 + 70))
        else:
            jobs.append(_job(seq, "characterizeImage", JobState.RUNNING, T0 + 80 + i, None))
        seq += 1
    for label, n in (("calibrate", 4), ("visitSummary", 2), ("globalTable", 1)):
        for _ in range(n):
            jobs.append(_job(seq, label, JobState.PENDING, None, None))
            seq += 1
    jobs.append(_job(seq, "finalJob", JobState.PENDING, None, None))
    return jobs


class FakeTerminal(io.StringIO):
    """A stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (-1, "?"), (float("inf"), "?"), (0, "0s"), (42.4, "42s"), (59.6, "1m00s")]
    + [(185, "3m05s"), (3600 * 2 + 7 * 60, "2h07m"), (86400 * 3 + 3600 * 4 + 5, "3d04h")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_snapshot_counts_rate_and_eta(tmp_path: Path) -> None:
    submit_dir = make_store(tmp_path / "run", small_run())
    with JobStateStore.open(submit_dir) as store:
        snap = read_snapshot(store, now=T0 + 100)
    assert list(snap.counts) == LABELS
    assert snap.counts["isr"][JobState.EXEC_DONE] == 3 and snap.counts["isr"][JobState.FAILED] == 1
    assert snap.counts["characterizeImage"][JobState.RUNNING] == 3
    assert snap.total == 15 and snap.remaining == 3 + 4 + 2 + 1
    # 4 isr quanta ended (done or failed) in the 100 s since the start; the
    # dep_fail one is not work done.
    assert snap.rate() == pytest.approx(4 / 100)
    assert snap.eta() == pytest.approx(10 / (4 / 100))
    # isr is measured from its first start (T0 + 10), and has nothing left.
    assert snap.rate("isr") == pytest.approx(4 / 90)
    assert snap.eta("isr") == 0.0
    assert snap.rate("calibrate") is None and snap.eta("calibrate") is None
    lines = format_snapshot(snap)
    assert lines[0].startswith("Progress ") and "5/15 quanta finished (33%)" in lines[0]
    assert "3 done, 1 failed, 1 dep_fail, 3 running; 2.4/min, ETA 4m10s" in lines[0]
    assert lines[2].split() == ["isr", "3", "1", "0", "0", "0", "0", "4", "2.7", "0s"]
    assert lines[3].split()[:8] == ["characterizeImage", "0", "0", "1", "3", "0", "0", "4"]
    assert lines[4].split() == ["calibrate", "0", "0", "0", "0", "0", "4", "4", "-", "?"]
    # Too many labels for the screen: the busy ones are kept.
    short = format_snapshot(snap, max_rows=3)
    assert [line.split()[0] for line in short[2:4]] == ["isr", "characterizeImage"]
    assert short[-1].strip() == "... 3 more label(s): 0/7 quanta done"


def test_ended_run_is_shown_as_it_ended(tmp_path: Path) -> None:
    jobs = [_job(i + 1, "isr", JobState.EXEC_DONE, T0 + i, T0 + 50 + i) for i in range(4)]
    submit_dir = make_store(tmp_path / "run", jobs, state=RunState.SUCCEEDED)
    reporter = ProgressReporter(submit_dir, stream=io.StringIO(), mode="lines", clock=lambda: T0 + 9999)
    reporter.report()
    assert reporter.last is not None and reporter.last.time == T0 + 54
    assert "(elapsed 54s): 4/4 quanta finished (100%)" in reporter.stream.getvalue()
    reporter.close(final_report=False)


def test_lines_every_interval_and_a_last_report(tmp_path: Path) -> None:
    submit_dir = make_store(tmp_path / "run", small_run())
    now = [T0 + 100]
    stream = io.StringIO()
    reporter = ProgressReporter(submit_dir, 60, stream, clock=lambda: now[0])
    assert reporter.mode == "lines"
    assert reporter.maybe_report()  # the first report comes at once
    now[0] += 30
    assert not reporter.maybe_report()
    now[0] += 31
    assert reporter.maybe_report()
    reporter.close()
    reporter.close()  # idempotent
    assert not reporter.maybe_report()
    headers = [line for line in stream.getvalue().splitlines() if line.startswith("Progress ")]
    assert len(headers) == 3
    assert "\x1b[" not in stream.getvalue()


def test_lines_not_repeated_when_logging_shows_them(tmp_path: Path) -> None:
    submit_dir = make_store(tmp_path / "run", small_run())
    logger = logging.getLogger("desc.gen3_workflow.reporting.progress")
    handler = logging.StreamHandler(sys.stderr)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        stream = io.StringIO()
        reporter = ProgressReporter(submit_dir, 60, stream, mode="lines")
        reporter.close()
        assert stream.getvalue() == ""  # the log handler showed it instead
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_terminal_is_redrawn_in_place(tmp_path: Path) -> None:
    submit_dir = make_store(tmp_path / "run", small_run())
    now = [T0 + 100]
    stream = FakeTerminal()
    reporter = ProgressReporter(submit_dir, 60, stream, clock=lambda: now[0])
    assert reporter.mode == "tty"
    assert reporter.maybe_report()
    first = stream.getvalue()
    assert not first.startswith("\x1b[")
    now[0] += 1.5  # a terminal is refreshed every second, whatever the interval
    assert reporter.maybe_report()
    drawn = len(first.splitlines())
    assert stream.getvalue()[len(first) :].startswith(f"\x1b[{drawn}F\x1b[J")


def test_progress_settings() -> None:
    assert ParslSettings().progress is True and ParslSettings().progress_interval == 60.0
    assert ParslSettings.from_mapping({"progress": False, "progress_interval": 5}).progress_interval == 5.0
    for section, message in [
        ({"progress": "yes"}, "parsl_config.progress: expected true or false, got 'yes'"),
        ({"progress_interval": "1m"}, "parsl_config.progress_interval: expected a number, got '1m'"),
        ({"progress_interval": 0}, "parsl_config.progress_interval: must be > 0 (seconds), got 0.0"),
    ]:
        with pytest.raises(ParslConfigError) as info:
            ParslSettings.from_mapping(section)
        assert str(info.value) == message and "\n" not in str(info.value)


def test_reporter_off_by_setting(tmp_path: Path) -> None:
    submit_dir = make_store(tmp_path / "run", small_run())
    assert ProgressReporter.from_settings(submit_dir, ParslSettings(progress=False)) is None
    reporter = ProgressReporter.from_settings(submit_dir, ParslSettings(progress_interval=7))
    assert reporter is not None and reporter.interval == 7.0
    reporter.close(final_report=False)


def _monitoring_db(path: Path, stderr: dict[int, str]) -> None:
    """A parsl monitoring database with resource figures for two tasks
    (the second has two tries)."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE workflow (run_id TEXT, time_began TEXT);"
        "CREATE TABLE task (task_id INTEGER, run_id TEXT, task_stderr TEXT);"
        "CREATE TABLE resource (try_id INTEGER, task_id INTEGER, run_id TEXT, timestamp TEXT, "
        "psutil_process_time_user REAL, psutil_process_time_system REAL, "
        "psutil_process_memory_resident REAL);"
    )
    db.execute("INSERT INTO workflow VALUES ('r1', '2023-11-14 22:13:20.5')")
    db.executemany("INSERT INTO task VALUES (?, 'r1', ?)", list(stderr.items()))
    db.executemany(
        "INSERT INTO resource VALUES (?, ?, 'r1', '', ?, ?, ?)",
        [(0, 0, 1.0, 0.5, 100e6), (0, 0, 3.0, 1.0, 300e6), (0, 1, 2.0, 0.0, 50e6), (1, 1, 4.0, 0.0, 80e6)],
    )
    db.commit()
    db.close()


def test_summary_aggregates(tmp_path: Path) -> None:
    jobs = small_run()
    submit_dir = make_store(tmp_path / "run", jobs, state=RunState.FAILED)
    _monitoring_db(tmp_path / "run" / "monitoring.db", {0: jobs[1].stderr, 1: jobs[2].stderr})
    history = load_job_history(submit_dir)
    summary = summarize(history, slowest=3)
    json.dumps(summary)  # plain data
    isr = summary["labels"]["isr"]
    assert isr["counts"]["exec_done"] == 3 and isr["counts"]["failed"] == 1 and isr["total"] == 4
    # isr i runs from T0 + 10 + i to T0 + 40 + 10 i: 30, 39, 48, 57 s.
    assert isr["wall_time_total"] == pytest.approx(174) and isr["wall_time_mean"] == pytest.approx(43.5)
    # CPU: first task 3 + 1 (latest sample of its try); second 2 + 4 (two tries).
    assert summary["resources"] == "monitoring.db"
    assert isr["cpu_time_total"] == pytest.approx(10.0)
    assert isr["peak_memory_mb"] == pytest.approx(300e6 / 2**20, abs=1e-3)
    assert summary["labels"]["calibrate"]["wall_time_total"] is None
    assert list(summary["labels"]) == ["pipetaskInit", *LABELS, "finalJob"]
    assert summary["totals"]["running"] == 3 and summary["total"] == 17
    assert [job["wall_time"] for job in summary["slowest"]] == [57, 48, 39]
    (failure,) = summary["failures"]
    assert failure["label"] == "isr" and failure["exit_code"] == 1 and failure["log"] == jobs[4].stderr
    text = format_summary(summary)
    assert "CPU time and peak memory: parsl monitoring (monitoring.db)" in text
    assert f"FAILED isr {jobs[4].data_id} exit code 1, attempts 1; log: {jobs[4].stderr}" in text
    row = next(line for line in text.splitlines() if line.startswith("isr "))
    assert row.split()[1:8] == ["0", "0", "0", "3", "1", "0", "4"]

    result = CliRunner().invoke(summary_cli.main, [submit_dir, "--json", "--slowest", "1"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["slowest"]) == 1
    missing = CliRunner().invoke(summary_cli.main, [str(tmp_path)])
    assert missing.exit_code == 2 and "No gen3_workflow job-state store" in missing.output


def test_summary_takes_the_plug_ins_own_figures_over_monitoring(tmp_path: Path) -> None:
    jobs = small_run()
    submit_dir = make_store(tmp_path / "run", jobs, state=RunState.FAILED)
    _monitoring_db(tmp_path / "run" / "monitoring.db", {0: jobs[1].stderr, 1: jobs[2].stderr})
    with JobStateStore.open(submit_dir, writable=True) as store:
        store.apply(
            [],
            [
                AttemptRecord(jobs[1].seq, 1, False, T0, 1, None, None, 1.0, 100 * 2**20),
                AttemptRecord(jobs[1].seq, 2, True, T0, 0, None, None, 2.0, 200 * 2**20),
                AttemptRecord(jobs[3].seq, 1, True, T0, 0, None, None, 0.5, None),
            ],
        )
    summary = summarize(load_job_history(submit_dir))
    # Summed over attempts, the highest peak; monitoring.db is not read at all.
    isr = summary["labels"]["isr"]
    assert summary["resources"] == MEASURED
    assert isr["cpu_time_total"] == pytest.approx(3.5) and isr["cpu_time_mean"] == pytest.approx(1.75)
    assert isr["peak_memory_mb"] == pytest.approx(200)
    assert f"CPU time and peak memory: {MEASURED}" in format_summary(summary)


def test_summary_counts_jobs_by_the_host_of_their_last_attempt(tmp_path: Path) -> None:
    jobs = small_run()
    submit_dir = make_store(tmp_path / "run", jobs, state=RunState.FAILED)
    isr = [j.seq for j in jobs if j.label == "isr"]
    with JobStateStore.open(submit_dir, writable=True) as store:
        store.apply(
            [],
            [
                AttemptRecord(jobs[0].seq, 1, True, T0, 0, host="submit"),
                # Retried on another node: counted where it last ran.
                AttemptRecord(isr[0], 1, False, T0, 137, host="n1"),
                AttemptRecord(isr[0], 2, True, T0, 0, host="n10"),
                AttemptRecord(isr[1], 1, True, T0, 0, host="n2"),
                AttemptRecord(isr[2], 1, True, T0, 0, host="n10"),
                AttemptRecord(isr[3], 1, False, T0, 1, host="n2"),
            ],
        )
    summary = summarize(load_job_history(submit_dir))
    # Natural order; jobs that never ran (or ran before hosts were kept) are not counted.
    assert list(summary["hosts"].items()) == [("n2", 2), ("n10", 2), ("submit", 1)]
    (failure,) = summary["failures"]
    assert failure["host"] == "n2"
    text = format_summary(summary)
    assert "\nHosts (jobs run): n2 2, n10 2, submit 1\n" in text
    assert f"FAILED isr {jobs[4].data_id} exit code 1, on host n2, attempts 1; log: {jobs[4].stderr}" in text
    # Many nodes: the first 20 named, the rest counted.
    many = format_summary({**summary, "hosts": {f"n{i}": 1 for i in range(1, 26)}})
    line = next(line for line in many.splitlines() if line.startswith("Hosts"))
    assert line.startswith("Hosts (jobs run): n1 1, n2 1,") and ", n20 1, ... and 5 more hosts" in line


def test_busy_time_and_running_count() -> None:
    rng = np.random.default_rng(3)
    start = rng.uniform(0, 100, 200)
    end = start + rng.exponential(10, 200)
    edges = np.linspace(-5, 130, 28)
    # Brute force: overlap of every job with every bin.
    overlap = np.clip(
        np.minimum(end[:, None], edges[None, 1:]) - np.maximum(start[:, None], edges[None, :-1]), 0, None
    )
    assert np.allclose(busy_time(start, end, edges), overlap.sum(axis=0))
    times, counts = running_count(start, end)
    for t in (10.0, 50.0, 99.0):
        assert counts[np.searchsorted(times, t, side="right") - 1] == np.sum((start <= t) & (end > t))
    assert (
        rate_bin_seconds(9) == 1
        and rate_bin_seconds(300) == 5
        and rate_bin_seconds(3600) == 60
        and rate_bin_seconds(86400) == 1800
    )


def test_queue_depth_counts_jobs_launched_and_not_started(tmp_path: Path) -> None:
    jobs = [
        _job(0, "isr", JobState.EXEC_DONE, T0 + 1, T0 + 2),  # launched at T0 + 0.5
        _job(1, "isr", JobState.EXEC_DONE, T0 + 3, T0 + 4, t_launched=T0),
        _job(2, "isr", JobState.LAUNCHED, None, None, t_launched=T0 + 2),  # still waiting
        _job(3, "isr", JobState.PENDING, None, None),  # never launched
    ]
    history = load_job_history(make_store(tmp_path / "run", jobs))
    times, counts = queue_depth(history, now=T0 + 10)
    at = {t: int(counts[np.searchsorted(times, T0 + t, side="right") - 1]) for t in (0.7, 1.5, 2.5, 3.5, 9)}
    assert at == {0.7: 2, 1.5: 1, 2.5: 2, 3.5: 1, 9: 1}
    assert np.allclose(history.queue[:2], [0.5, 3.0]) and np.isnan(history.queue[2:]).all()


def test_plot_of_50000_jobs(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    jobs, seq = [], 0
    for k, (label, n) in enumerate((("isr", 16600), ("characterizeImage", 16600), ("calibrate", 16600))):
        starts = T0 + 1800 * k + rng.uniform(0, 3600, n)
        ends = starts + rng.lognormal(3.5, 0.5, n)
        failed = rng.random(n) < 0.01
        for s, e, f in zip(starts, ends, failed, strict=True):
            jobs.append(_job(seq, label, JobState.FAILED if f else JobState.EXEC_DONE, s, e))
            seq += 1
    for i in range(200):
        jobs.append(_job(seq, "visitSummary", JobState.RUNNING, T0 + 7000 + i, None))
        seq += 1
    submit_dir = make_store(tmp_path / "run", jobs)
    start = time.perf_counter()
    history = load_job_history(submit_dir)
    output = plot_history(history, str(tmp_path / "history.png"), now=T0 + 7400)
    seconds = time.perf_counter() - start
    print(f"plot of {len(history)} jobs: {seconds:.1f} s")  # a figure, not a test (noisy machine)
    data = Path(output).read_bytes()
    assert data[:8] == PNG_MAGIC
    import matplotlib.image

    height, width = matplotlib.image.imread(output).shape[:2]
    assert width == 1200 and 800 <= height <= 2000


def test_watch_once_and_until_the_end(tmp_path: Path) -> None:
    running = make_store(tmp_path / "running", small_run())
    once = CliRunner().invoke(watch_cli.main, ["--once", running])
    assert once.exit_code == 0, once.output
    assert f"Run synthetic in {running}: running" in once.output
    assert "5/15 quanta finished" in once.output and once.output.count("Progress ") == 1
    row = next(line for line in once.output.splitlines() if line.split()[:1] == ["isr"])
    assert row.split()[1:8] == ["3", "1", "0", "0", "0", "0", "4"]

    failed = make_store(tmp_path / "failed", small_run(), state=RunState.FAILED)
    result = CliRunner().invoke(watch_cli.main, [failed])
    assert result.exit_code == 1 and "Run ended: failed" in result.output
    once = CliRunner().invoke(watch_cli.main, ["--once", failed])
    assert once.exit_code == 1 and "Progress " in once.output
    done = make_store(
        tmp_path / "done", [_job(1, "isr", JobState.EXEC_DONE, T0, T0 + 5)], state=RunState.SUCCEEDED
    )
    result = CliRunner().invoke(watch_cli.main, [done])
    assert result.exit_code == 0 and "1/1 quanta finished" in result.output
    assert CliRunner().invoke(watch_cli.main, [str(tmp_path)]).exit_code == 2


def test_slow_jobs_are_named_with_their_logs(tmp_path: Path) -> None:
    submit_dir = make_store(tmp_path / "run", small_run())
    with JobStateStore.open(submit_dir, writable=True) as store:
        # What the runner records: characterizeImage typically takes 30 s.
        store.set_typical_durations({"characterizeImage": 30.0, "isr": 40.0})
    with JobStateStore.open(submit_dir) as store:
        assert read_snapshot(store, now=T0 + 150).slow == []  # 70 s: not 3x the median
        snap = read_snapshot(store, now=T0 + 200)  # ~120 s: 4x
    assert [job.label for job, _ in snap.slow] == ["characterizeImage"] * 3
    lines = format_snapshot(snap)
    assert "  3 job(s) running over 3x their label's median:" in lines
    first = snap.slow[0][0]
    assert (
        f"    SLOW characterizeImage {first.data_id} running for 2m00s, 4x the median (30s) of "
        f"characterizeImage; log: {first.stderr}" in lines
    )


def test_executors_per_label_in_progress_status_and_summary(tmp_path: Path) -> None:
    """A run with several executors: the progress and status tables gain an
    executors column, the summary counts jobs by their last attempt's."""
    jobs = small_run()
    submit_dir = make_store(tmp_path / "run", jobs, state=RunState.SUCCEEDED)
    isr = [j.seq for j in jobs if j.label == "isr"]
    with JobStateStore.open(submit_dir, writable=True) as store:
        snap = read_snapshot(store, now=T0 + 100)
        assert "executors" not in format_snapshot(snap)[1]  # none recorded yet: no column
        store.note_label_executor("isr", "small")
        store.note_label_executor("isr", "large")
        store.note_label_executor("characterizeImage", "small")
        store.apply(
            [],
            [
                AttemptRecord(isr[0], 1, False, T0, 143, 1000, executor="small"),
                AttemptRecord(isr[0], 2, True, T0, 0, 2000, executor="large"),
                AttemptRecord(isr[1], 1, True, T0, 0, 1000, executor="small"),
            ],
        )
        snap = read_snapshot(store, now=T0 + 100)
        counts = store.counts()
        assert store.label_executors() == {"isr": ["large", "small"], "characterizeImage": ["small"]}
    lines = format_snapshot(snap)
    assert lines[1].split()[-1] == "executors"
    assert lines[2].split()[0] == "isr" and lines[2].split()[-1] == "large,small"
    assert lines[4].split()[0] == "calibrate" and lines[4].split()[-1] == "-"
    table = format_status_table(counts, {"isr": ["large", "small"]}).splitlines()
    assert table[0].split()[-1] == "executors" and table[1].split()[-1] == "large,small"
    assert "executors" not in format_status_table(counts, {"isr": ["small"]})
    summary = summarize(load_job_history(submit_dir))
    assert summary["executors"] == {"large": 1, "small": 1}
    assert "\nExecutors (jobs run): large 1, small 1" in format_summary(summary)
