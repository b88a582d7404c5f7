"""Reports, status, the run index and ping, on stores built directly (no parsl, no butler)."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from harness import WORK_QUEUE_MISSING
from lsst.ctrl.bps import WmsRunReport, WmsStates
from lsst.ctrl.bps.bps_reports import SummaryRunReport, compile_code_summary
from lsst.ctrl.bps.report import display_report
from synthetic import job, write_store

from desc.gen3_workflow.execution.bridge import ping
from desc.gen3_workflow.execution.bridge.availability import work_queue_unusable_message
from desc.gen3_workflow.execution.bridge.modes import mode_for
from desc.gen3_workflow.reporting import bps_report
from desc.gen3_workflow.reporting.failures import failure_summary
from desc.gen3_workflow.settings.parsl_section import ParslSettings
from desc.gen3_workflow.store import run_index
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import (
    AttemptRecord,
    JobRecord,
    JobState,
    JobUpdate,
    RunInfo,
    RunRecord,
    RunState,
)

try:  # ctrl_bps 30.2026.4300 and newer: with a SITE column
    from lsst.ctrl.bps.bps_reports import DISPLAY_SUMMARY_FIELDS as SUMMARY_FIELDS
except ImportError:  # the columns older ctrl_bps's display_report builds
    SUMMARY_FIELDS = [
        (name, "S")
        for name in ("X", "STATE", "%S", "ID", "OPERATOR", "PROJECT", "CAMPAIGN", "PAYLOAD", "RUN")
    ]

# pipetaskInit, 4 isr, 4 calibrate (each after its isr), finalJob.
ISR = range(1, 5)
CALIBRATE = range(5, 9)
FINAL = 9


@pytest.fixture(autouse=True)
def index_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own run index."""
    path = tmp_path / "index" / "runs.txt"
    monkeypatch.setenv(run_index.INDEX_VARIABLE, str(path))
    return path


def _job(seq: int, label: str, submit_dir: Path, detector: int | None = None) -> JobRecord:
    data_id = "{}" if detector is None else f'{{"instrument":"Cam","detector":{detector},"visit":1}}'
    return job(seq, label, submit_dir, data_id)


def make_run(
    root: Path, name: str = "run1", operator: str = "alice", register: bool = True
) -> tuple[str, JobStateStore]:
    """A planned run in ``root/name``; returns its submit dir and writable store."""
    submit_dir = root / name
    submit_dir.mkdir(parents=True)
    jobs = [_job(0, "pipetaskInit", submit_dir)]
    jobs += [_job(seq, "isr", submit_dir, seq - 1) for seq in ISR]
    jobs += [_job(seq, "calibrate", submit_dir, seq - 5) for seq in CALIBRATE]
    jobs.append(_job(FINAL, "finalJob", submit_dir))
    edges = [(0, seq) for seq in ISR] + [(seq, seq + 4) for seq in ISR]
    info = RunInfo(
        operator=operator,
        campaign="c1",
        payload_name="demo",
        output_run=f"u/{operator}/{name}",
        parsl_config={"executor": "ThreadPool"},
    )
    store = write_store(submit_dir, jobs, edges, name=f"u_{operator}_{name}", info=info)
    if register:
        run_index.register_run(str(submit_dir))
    return str(submit_dir), store


def set_states(
    store: JobStateStore, states: dict[int, JobState], exit_codes: dict[int, int] | None = None
) -> None:
    now = time.time()
    store.apply(
        JobUpdate(
            seq,
            state,
            now,
            exit_code=(exit_codes or {}).get(seq),
            message="boom" if state == JobState.FAILED else None,
        )
        for seq, state in states.items()
    )


def failed_run(root: Path, **kwargs) -> tuple[str, JobStateStore]:  # type: ignore[no-untyped-def]
    """A finished run: isr 2 failed (exit 1), its calibrate not run, the rest done."""
    submit_dir, store = make_run(root, **kwargs)
    store.start_run()
    states = dict.fromkeys([0, *ISR, *CALIBRATE, FINAL], JobState.EXEC_DONE)
    states.update({2: JobState.FAILED, 6: JobState.DEP_FAIL})
    set_states(store, states, {2: 1})
    store.end_run(RunState.FAILED)
    return submit_dir, store


def test_job_and_run_state_mappings() -> None:
    assert bps_report.JOB_STATES == {
        JobState.PENDING: WmsStates.UNREADY,
        JobState.LAUNCHED: WmsStates.PENDING,
        JobState.RUNNING: WmsStates.RUNNING,
        JobState.EXEC_DONE: WmsStates.SUCCEEDED,
        JobState.FAILED: WmsStates.FAILED,
        JobState.DEP_FAIL: WmsStates.PRUNED,
    }
    assert bps_report.RUN_STATES == {
        RunState.PREPARED: WmsStates.UNREADY,
        RunState.RUNNING: WmsStates.RUNNING,
        RunState.SUCCEEDED: WmsStates.SUCCEEDED,
        RunState.FAILED: WmsStates.FAILED,
        RunState.CANCELLED: WmsStates.DELETED,
        RunState.INTERRUPTED: WmsStates.FAILED,
    }


def test_detailed_report_of_a_failed_run(tmp_path: Path) -> None:
    submit_dir, store = failed_run(tmp_path)
    [report], message = bps_report.detailed_report(submit_dir)
    assert message == ""
    assert report.state == WmsStates.FAILED
    assert report.wms_id == report.path == submit_dir
    assert report.run_summary == "pipetaskInit:1;isr:4;calibrate:4;finalJob:1"
    assert report.total_number_jobs == 10
    assert report.job_summary is not None and report.job_state_counts is not None
    assert list(report.job_summary) == ["pipetaskInit", "isr", "calibrate", "finalJob"]
    assert report.job_summary["isr"][WmsStates.FAILED] == 1
    assert report.job_summary["isr"][WmsStates.SUCCEEDED] == 3
    assert report.job_summary["calibrate"][WmsStates.PRUNED] == 1
    # Every state is present: ctrl_bps's table indexes them all.
    assert all(set(counts) == set(WmsStates) for counts in report.job_summary.values())
    assert report.job_state_counts[WmsStates.SUCCEEDED] == 8
    assert sum(report.job_state_counts.values()) == report.total_number_jobs
    assert [(j.label, j.state) for j in report.jobs or []] == [("isr", WmsStates.FAILED)]
    assert report.exit_code_summary == {"pipetaskInit": [], "isr": [1], "calibrate": [], "finalJob": []}
    assert compile_code_summary(report) == []

    out = io.StringIO()
    display_report([report], [], is_detailed=True, return_exit_codes=True, file=out)
    text = out.getvalue()
    failed_line = next(line for line in text.splitlines() if "exit code 1" in line)
    assert failed_line.startswith("  FAILED isr ")
    assert '"detector":1' in failed_line and failed_line.endswith(f"log: {submit_dir}/logs/isr/isr_2.stderr")
    assert f"bps restart --id {submit_dir}" in text
    store.close()


def test_reports_name_the_host_each_attempt_ran_on(tmp_path: Path) -> None:
    """``bps report --id`` and the failure summary of ``bps submit``: the
    failed job's last host, and every attempt's host for a job tried again."""
    submit_dir, store = failed_run(tmp_path)
    store.apply(
        [JobUpdate(2, JobState.FAILED, time.time(), attempts=2, exit_code=1, message="boom")],
        [
            AttemptRecord(2, 1, False, 1.0, 137, 2048, "exit code 137", host="n1"),
            AttemptRecord(2, 2, False, 2.0, 1, 4096, "boom", host="n2"),
        ],
    )
    store.close()
    [report], _ = bps_report.detailed_report(submit_dir)
    out = io.StringIO()
    display_report([report], [], is_detailed=True, return_exit_codes=True, file=out)
    summary = failure_summary(submit_dir)
    for text in (out.getvalue(), summary):
        failed_line = next(line for line in text.splitlines() if "FAILED isr" in line)
        assert "exit code 1 (boom), on host n2; log: " in failed_line, failed_line
        retried = next(line for line in text.splitlines() if "RETRIED isr" in line)
        assert "after 2 attempts (#1 exit 137 on n1, 2048 MB; #2 exit 1 on n2, 4096 MB)" in retried, retried


def test_running_run_lists_running_jobs_and_percent_done(tmp_path: Path) -> None:
    submit_dir, store = make_run(tmp_path)
    store.start_run()  # this process: alive
    set_states(
        store, {0: JobState.EXEC_DONE, 1: JobState.EXEC_DONE, 2: JobState.RUNNING, 3: JobState.LAUNCHED}
    )
    [report], _ = bps_report.detailed_report(submit_dir)
    assert report.state == WmsStates.RUNNING
    assert report.job_summary is not None
    assert report.job_summary["isr"][WmsStates.RUNNING] == 1
    assert report.job_summary["isr"][WmsStates.PENDING] == 1
    assert report.job_summary["calibrate"][WmsStates.UNREADY] == 4
    assert "1 job(s) running:" in str(report.specific_info)
    assert bps_report.quick_status(submit_dir) == (WmsStates.RUNNING, "")

    [brief], _ = bps_report.summary_reports()
    table = SummaryRunReport(SUMMARY_FIELDS)
    table.add(brief)
    # Newer ctrl_bps logs a row that does not fit the columns instead of raising.
    lines = str(table).splitlines()
    assert len(lines) == 3, lines
    row = lines[2].split()
    assert row[:3] == ["RUNNING", "20", submit_dir]  # 2 of 10 jobs done
    if bps_report.RUN_REPORT_HAS_SITE:
        assert brief.site == "Local" and row[-3:] == ["Local", "demo", "u/alice/run1"]
    store.close()


def test_site_is_filled_only_where_ctrl_bps_has_it() -> None:
    has_site = "site" in {f.name for f in dataclasses.fields(WmsRunReport)}
    assert bps_report.RUN_REPORT_HAS_SITE == has_site

    def site(**parsl_config: str) -> str:
        # As prepare records it: the settings and their mode's site.
        settings = ParslSettings.from_mapping(parsl_config)
        info = RunInfo(parsl_config=settings.as_dict(), site=mode_for(settings).site)
        return bps_report.run_site(RunRecord("r", "/s", info, RunState.RUNNING))

    assert site() == site(executor="ThreadPool", provider="Slurm") == "Local"
    assert site(executor="HighThroughput", provider="Slurm") == "Slurm"
    assert site(executor="WorkQueue", provider="Local") == "Local"
    # A store from before the site was recorded: its provider.
    old = RunInfo(parsl_config={"executor": "WorkQueue", "provider": "Slurm"})
    assert bps_report.run_site(RunRecord("r", "/s", old, RunState.RUNNING)) == "Slurm"


def test_dead_submitting_process_means_interrupted(tmp_path: Path) -> None:
    submit_dir, store = make_run(tmp_path)
    set_states(store, {0: JobState.EXEC_DONE, 1: JobState.RUNNING})
    store.close()
    # A process that marks the run as running, then dies (and is reaped).
    code = (
        "import sys; from desc.gen3_workflow.store.job_store import JobStateStore as S; "
        "S.open(sys.argv[1], True).start_run()"
    )
    subprocess.run([sys.executable, "-c", code, submit_dir], check=True)
    with JobStateStore.open(submit_dir) as reader:
        assert reader.run().state == RunState.RUNNING

    state, message = bps_report.quick_status(submit_dir)
    assert state == WmsStates.FAILED
    assert "interrupted" in message and f"bps restart --id {submit_dir}" in message
    [report], _ = bps_report.detailed_report(submit_dir)
    assert report.state == WmsStates.FAILED
    assert "running (interrupted" in str(report.specific_info)
    assert bps_report.active_runs() == []


def test_pid_reuse_and_other_hosts(tmp_path: Path) -> None:
    submit_dir, store = make_run(tmp_path)
    store.start_run()
    run = store.run()
    store.close()
    assert run.start_time is not None
    assert bps_report.run_state(run) == (WmsStates.RUNNING, "")
    # This process started long after the run did: its pid was reused.
    reused = dataclasses.replace(run, start_time=run.start_time - 3600)
    assert bps_report.run_state(reused)[0] == WmsStates.FAILED
    # On another host the recorded state is trusted, and the report says so.
    state, note = bps_report.run_state(dataclasses.replace(run, host="elsewhere.example", pid=1))
    assert state == WmsStates.RUNNING and "on host elsewhere.example" in note


def test_summary_filters_by_user_and_history(tmp_path: Path) -> None:
    old_dir, old = failed_run(tmp_path, name="old", operator="alice")
    bob_dir, bob = failed_run(tmp_path, name="bob", operator="bob")
    live_dir, live = make_run(tmp_path, name="live", operator="alice")
    live.start_run()
    prepared_dir, prepared = make_run(tmp_path, name="prepared", operator="alice")

    def ids(**kwargs) -> list[str]:  # type: ignore[no-untyped-def]
        reports, _ = bps_report.summary_reports(**kwargs)
        return [r.wms_id for r in reports]

    # Newest first; hist 0 shows only what runs.
    assert ids(hist=0) == [live_dir]
    assert ids(hist=1) == [prepared_dir, live_dir, bob_dir, old_dir]
    assert ids(hist=1, user="bob") == [bob_dir]
    assert ids(hist=1, user="alice") == [prepared_dir, live_dir, old_dir]
    # Two days later the ended runs fall out of a one-day history.
    assert ids(hist=1, now=time.time() + 2 * 86400) == [live_dir]
    assert ids(hist=3, now=time.time() + 2 * 86400) == [prepared_dir, live_dir, bob_dir, old_dir]
    reports, message = bps_report.summary_reports(hist=0, user="carol")
    assert reports == [] and "No gen3_workflow runs of user carol still running" in message
    assert bps_report.active_runs() == [live_dir]
    assert bps_report.active_runs(user="bob") == []
    for store in (old, bob, live, prepared):
        store.close()


def test_unknown_and_ambiguous_ids(tmp_path: Path) -> None:
    state, message = bps_report.quick_status(str(tmp_path / "nowhere"))
    assert state == WmsStates.UNKNOWN and "No gen3_workflow run found" in message
    state, message = bps_report.quick_status(str(tmp_path))
    assert state == WmsStates.UNKNOWN and "not a gen3_workflow submit directory" in message
    assert bps_report.detailed_report("nowhere")[0] == []

    first, s1 = make_run(tmp_path / "a", name="20260101T000000Z")
    second, s2 = make_run(tmp_path / "b", name="20260101T000000Z")
    third, s3 = make_run(tmp_path / "b", name="20260202T000000Z")
    assert bps_report.quick_status("20260202T000000Z") == (WmsStates.UNREADY, "")
    state, message = bps_report.quick_status("20260101T000000Z")
    assert state == WmsStates.UNKNOWN and first in message and second in message
    assert bps_report.active_runs("20260101T000000Z") == []  # cancel never guesses
    assert bps_report.active_runs(third) == [third]
    for store in (s1, s2, s3):
        store.close()


def test_run_index_appends_dedups_and_skips_missing(tmp_path: Path, index_file: Path) -> None:
    a, sa = make_run(tmp_path, name="a")
    b, sb = make_run(tmp_path, name="b")
    run_index.register_run(a)  # registered again: now the newest
    gone = tmp_path / "gone"
    gone.mkdir()
    run_index.register_run(str(gone))  # no store: skipped
    assert run_index.submitted_runs() == [a, b]
    assert index_file.read_text().splitlines() == [a, b, a, str(gone)]
    sa.close()
    sb.close()


def test_register_run_never_fails_a_submission(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(run_index.INDEX_VARIABLE, str(blocker / "runs.txt"))
    run_index.register_run(str(tmp_path))  # the index cannot be written: only a warning
    assert run_index.submitted_runs() == []


def test_concurrent_registrations_keep_whole_lines(tmp_path: Path, index_file: Path) -> None:
    code = (
        "import sys; from desc.gen3_workflow.store.run_index import register_run\n"
        "for i in range(200): register_run(sys.argv[1] + '/' + 'x' * 300 + str(i))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"/p{n}"], env=os.environ.copy()) for n in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0] * 4
    lines = index_file.read_text().splitlines()
    assert len(lines) == 800 and all(line.startswith("/p") and len(line) >= 304 for line in lines)


def test_ping_checks_what_the_settings_need(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    status, message = ping.service_ping({}, None)
    assert status == 0 and "executor ThreadPool" in message and "ok   parsl: version" in message
    assert "Memory requests: ThreadPool does not measure jobs' memory; the runner dispatches" in message
    assert "ok   Authentication: nothing listens" in message
    if WORK_QUEUE_MISSING is None:
        status, message = ping.service_ping({}, "executor=WorkQueue")
        assert status == 0, message
        assert (
            "ok   Authentication: Work Queue workers authenticate with a password made for each run"
            in message
        )

    # Only this venv's bin on PATH: no work_queue_worker, no sbatch.
    monkeypatch.setenv("PATH", os.path.join(sys.prefix, "bin"))
    status, message = ping.service_ping({}, "executor=WorkQueue")
    if WORK_QUEUE_MISSING is None:
        assert status == 1 and "FAIL Work Queue: work_queue_worker is not on PATH" in message
    else:  # no bindings for this Python: the line bps submit refuses WorkQueue with
        assert (
            status == 1 and f"FAIL Work Queue: {work_queue_unusable_message(WORK_QUEUE_MISSING)}" in message
        )
    assert "warn Slurm: sbatch is not on PATH (not used by these settings)" in message
    if WORK_QUEUE_MISSING is None:
        assert "FAIL Authentication: cannot tell: work_queue_worker is not on PATH" in message

    bps_file = tmp_path / "bps.yaml"
    bps_file.write_text("parsl_config:\n  executor: HighThroughput\n  provider: Slurm\n")
    status, message = ping.service_ping({}, str(bps_file))
    assert status == 1 and f"settings from {bps_file}" in message
    assert "FAIL Slurm: sbatch is not on PATH" in message
    assert "ok   HighThroughput" in message
    assert "ok   Authentication: HighThroughput's interchange and workers talk over CurveZMQ" in message
    # Where memory requests cannot be honoured, ping says so.
    assert "Memory requests: HighThroughput cannot honour them" in message

    status, message = ping.service_ping({}, "executor=Dask")
    assert status == 1 and "parsl_config.executor: unknown value 'Dask'" in message
    status, message = ping.service_ping({}, "not-a-setting")
    assert status == 1 and "expected a bps file or parsl_config key=value words" in message


def test_status_and_report_do_not_load_parsl() -> None:
    """bps status, report and cancel read the store in milliseconds at any
    size; importing parsl would add about 1.8 s to each."""
    code = (
        "import sys; from desc.gen3_workflow import ParslService; "
        "from desc.gen3_workflow.reporting import bps_report; "
        "print(sorted(m for m in sys.modules if m == 'parsl' or m.startswith('parsl.')))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout
