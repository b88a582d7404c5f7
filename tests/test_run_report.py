"""Run and job states as ctrl_bps sees them, from stores written directly."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from lsst.ctrl.bps import WmsStates

from desc.gen3_workflow.run_control import request_cancel
from desc.gen3_workflow.run_registry import register_run
from desc.gen3_workflow.run_report import list_runs, report_run, report_runs, run_state
from desc.gen3_workflow.state_store import JobRecord, JobState, JobStateStore, JobUpdate, RunState


def _store(submit_dir: Path, operator: str = "alice") -> JobStateStore:
    """A run of five jobs: init, three isr, final."""
    submit_dir.mkdir(parents=True)
    jobs = [
        JobRecord(
            i,
            name,
            label,
            kind,
            json.dumps({"visit": i}),
            "true",
            {},
            f"{submit_dir}/{name}.out",
            f"{submit_dir}/{name}.err",
        )
        for i, (name, label, kind) in enumerate(
            [
                ("pipetaskInit", "pipetaskInit", "init"),
                ("a", "isr", "quantum"),
                ("b", "isr", "quantum"),
                ("c", "isr", "quantum"),
                ("finalJob", "finalJob", "final"),
            ]
        )
    ]
    store = JobStateStore.in_dir(str(submit_dir), writable=True)
    store.write_plan("run", str(submit_dir), {"operator": operator, "outputRun": "u/x/y"}, jobs, [])
    register_run(str(submit_dir))
    return store


@pytest.fixture(autouse=True)
def _private_run_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEN3WF_RUN_INDEX", str(tmp_path / "runs.txt"))


def test_job_states_and_percent_done(tmp_path: Path) -> None:
    store = _store(tmp_path / "run1")
    store.apply(
        [
            JobUpdate(0, JobState.EXEC_DONE, 1.0),
            JobUpdate(1, JobState.EXEC_DONE, 2.0),
            JobUpdate(2, JobState.FAILED, 3.0, exit_code=1),
            JobUpdate(3, JobState.DEP_FAIL, 3.0),
        ]
    )
    store.end_run(RunState.FAILED)
    report = report_run(str(tmp_path / "run1"), detailed=True, return_exit_codes=True)
    assert report.state == WmsStates.FAILED
    assert report.total_number_jobs == 5
    assert report.job_state_counts[WmsStates.SUCCEEDED] == 2
    assert report.job_summary["isr"][WmsStates.FAILED] == 1
    assert report.job_summary["isr"][WmsStates.PRUNED] == 1
    assert report.job_summary["finalJob"][WmsStates.UNREADY] == 1
    assert report.run_summary == "pipetaskInit:1;isr:3;finalJob:1"
    assert report.exit_code_summary["isr"] == [1]
    assert "Failed: isr visit=2 exit code 1" in str(report.specific_info)


def test_dead_submitting_process_reads_as_failed(tmp_path: Path) -> None:
    store = _store(tmp_path / "run1")
    store.start_run()
    assert run_state(store.run_info())[0] == WmsStates.RUNNING
    gone = subprocess.Popen(["true"])
    gone.wait()
    store._db.execute("UPDATE run SET pid = ?", (gone.pid,))
    state, note = run_state(store.run_info())
    assert state == WmsStates.FAILED
    assert "interrupted" in note
    # Cancelling it says so and changes nothing.
    ok, message = request_cancel(str(tmp_path / "run1"))
    assert not ok and "is gone" in message
    assert not os.path.exists(tmp_path / "run1" / "cancel.request")


def test_run_on_another_host_is_left_alone(tmp_path: Path) -> None:
    store = _store(tmp_path / "run1")
    store.start_run()
    store._db.execute("UPDATE run SET host = 'elsewhere'")
    assert run_state(store.run_info()) == (
        WmsStates.RUNNING,
        f"running on host elsewhere (pid {os.getpid()})",
    )
    ok, message = request_cancel(str(tmp_path / "run1"))
    assert not ok and "runs on host elsewhere" in message


def test_listing_filters_by_user_and_history(tmp_path: Path) -> None:
    old = _store(tmp_path / "old", operator="alice")
    old.start_run()
    old.end_run(RunState.SUCCEEDED)
    old._db.execute("UPDATE run SET end_time = end_time - 10 * 86400")
    running = _store(tmp_path / "running", operator="bob")
    running.start_run()
    reports, _ = report_runs(None, None, 0, False)
    assert [r.wms_id for r in reports] == [str(tmp_path / "running"), str(tmp_path / "old")]
    assert [r.wms_id for r in report_runs(None, "alice", 0, False)[0]] == [str(tmp_path / "old")]
    assert [r.wms_id for r in report_runs(None, None, 1, False)[0]] == [str(tmp_path / "running")]
    assert list_runs(None, "bob") == [str(tmp_path / "running")]
    assert list_runs(None, "alice") == []
