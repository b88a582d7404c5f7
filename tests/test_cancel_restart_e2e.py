"""bps cancel and bps restart on real runs: nothing left running, nothing run twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from bps_harness import (
    BPS,
    expected_outputs,
    job_states,
    pids_matching,
    registered_outputs,
    run_bps,
    run_info,
    submit_in_background,
    write_bps_file,
)
from conftest import DRP_LABELS as LABELS
from conftest import N_DETECTORS, N_VISITS

from desc.gen3_workflow.run_control import _run_processes
from desc.gen3_workflow.state_store import JobState, JobStateStore, RunState

SERVICE = {"BPS_WMS_SERVICE_CLASS": "desc.gen3_workflow.ParslService"}


def _wait_until_running(tmp_path: Path, label: str, timeout: float = 180) -> str:
    """Submit directory of the run, once a job of ``label`` is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stores = list(tmp_path.glob("submit/**/gen3_workflow.sqlite3"))
        if stores:
            submit_dir = str(stores[0].parent)
            if job_states(submit_dir).get(label, {}).get(JobState.RUNNING, 0):
                return submit_dir
        time.sleep(0.5)
    raise AssertionError(
        f"no {label} job running after {timeout} s:\n{(tmp_path / 'submit.log').read_text()}"
    )


def _end_times(submit_dir: str, label: str) -> dict[str, float]:
    store = JobStateStore.in_dir(submit_dir)
    try:
        return {job.name: job.t_end for job in store.jobs(states=[JobState.EXEC_DONE]) if job.label == label}
    finally:
        store.close()


def _slow_bps_file(tmp_path: Path, repo: str, parsl_config: dict | None = None) -> Path:
    """characterizeImage sleeps 60 s while the file ``slow`` exists."""
    switch = tmp_path / "slow"
    switch.touch()
    return write_bps_file(
        tmp_path,
        repo,
        parsl_config or {"executor": "ThreadPool", "max_threads": 2},
        payload_name="slow",
        extraQgraphOptions=f"-c characterizeImage:sleep=60 -c characterizeImage:onlyWhileExists={switch}",
    )


def _restart_finishes_the_run(tmp_path: Path, submit_dir: str, env: dict[str, str] | None = None) -> None:
    """With the slowness gone, ``bps restart`` completes the run without
    running again what had succeeded, every output registered once."""
    isr_ends = _end_times(submit_dir, "isr")
    (tmp_path / "slow").unlink()
    restart = run_bps(
        "restart", "--id", submit_dir, cwd=tmp_path, env={**SERVICE, **(env or {})}, timeout=600
    )
    assert restart.returncode == 0, restart.output
    assert run_info(submit_dir)["state"] == RunState.SUCCEEDED
    # An isr job still running at the interruption runs again; none that had ended does.
    after = _end_times(submit_dir, "isr")
    assert isr_ends and {name: after[name] for name in isr_ends} == isr_ends, "succeeded jobs ran again"
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, LABELS)


def test_cancel_stops_everything_and_restart_finishes(demo_repo: str, tmp_path: Path) -> None:
    submit = submit_in_background(tmp_path, _slow_bps_file(tmp_path, demo_repo))
    submit_dir = _wait_until_running(tmp_path, "characterizeImage")

    start = time.monotonic()
    cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env=SERVICE, timeout=60)
    assert cancel.returncode == 0, cancel.output
    assert f"Successfully canceled job with id '{submit_dir}'" in cancel.output
    assert time.monotonic() - start < 20

    assert submit.wait(timeout=120) == 1
    assert "was cancelled" in (tmp_path / "submit.log").read_text()
    assert run_info(submit_dir)["state"] == RunState.CANCELLED
    assert _run_processes(submit_dir) == [], "job processes survived the cancel"
    # The final job registered what had succeeded: every isr output.
    assert registered_outputs(submit_dir)["postISRCCD"] == N_VISITS * N_DETECTORS
    again = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env=SERVICE, timeout=60)
    assert "is not running (state: cancelled); nothing changed" in again.output

    _restart_finishes_the_run(tmp_path, submit_dir)


def test_kill_9_of_the_submitting_process_then_restart(demo_repo: str, tmp_path: Path) -> None:
    submit = submit_in_background(tmp_path, _slow_bps_file(tmp_path, demo_repo))
    submit_dir = _wait_until_running(tmp_path, "characterizeImage")
    submit.send_signal(signal.SIGKILL)
    submit.wait(timeout=30)
    # Its jobs are orphans now, still running.
    assert _run_processes(submit_dir)
    # Status and report see that the run was interrupted.
    status = subprocess.run(
        [BPS, "status", "--id", submit_dir],
        env={**os.environ, **SERVICE},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert status.returncode == 19, status.stdout + status.stderr  # WmsStates.FAILED
    report = run_bps("report", "--id", submit_dir, cwd=tmp_path, env=SERVICE, timeout=60)
    assert "interrupted" in report.output and "bps restart" in report.output

    _restart_finishes_the_run(tmp_path, submit_dir)
    assert _run_processes(submit_dir) == []


def _cancel_mid_run(tmp_path: Path, bps_file: Path, env: dict[str, str]) -> str:
    submit = submit_in_background(tmp_path, bps_file, env)
    submit_dir = _wait_until_running(tmp_path, "characterizeImage")
    start = time.monotonic()
    cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env={**SERVICE, **env}, timeout=60)
    assert cancel.returncode == 0, cancel.output
    assert "Successfully canceled" in cancel.output
    assert time.monotonic() - start < 20
    assert submit.wait(timeout=120) == 1
    assert run_info(submit_dir)["state"] == RunState.CANCELLED
    assert _run_processes(submit_dir) == [], "job processes survived the cancel"
    return submit_dir


def test_cancel_on_work_queue_leaves_no_worker(demo_repo: str, tmp_path: Path) -> None:
    bps_file = _slow_bps_file(
        tmp_path, demo_repo, {"executor": "WorkQueue", "worker_options": "--memory=4000"}
    )
    workers_before = pids_matching("work_queue_worker")
    _cancel_mid_run(tmp_path, bps_file, {})
    assert pids_matching("work_queue_worker") <= workers_before, "Work Queue workers left running"


@pytest.mark.parametrize("execution", ["process", "in_process"])
def test_cancel_on_slurm_leaves_no_slurm_job(
    demo_repo: str, tmp_path: Path, slurm_cluster, execution: str
) -> None:
    parsl_config = {
        "executor": "HighThroughput",
        "provider": "Slurm",
        "partition": slurm_cluster.partition,
        "exclusive": False,
        "max_workers": 2,
        "execution": execution,
    }
    submit_dir = _cancel_mid_run(
        tmp_path, _slow_bps_file(tmp_path, demo_repo, parsl_config), slurm_cluster.env
    )
    assert slurm_cluster.job_ids() == []
    assert not pids_matching("process_worker_pool"), "parsl worker pools left running"
    if execution == "in_process":
        # In-process runners inside a Slurm block, to the end of the run.
        _restart_finishes_the_run(tmp_path, submit_dir, slurm_cluster.env)
        assert slurm_cluster.job_ids() == []
