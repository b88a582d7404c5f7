"""bps cancel and bps restart on real runs: nothing left running, nothing run twice."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from conftest import DRP_LABELS as LABELS
from conftest import N_DETECTORS, N_VISITS
from harness import (
    SERVICE_ENV,
    BackgroundBps,
    expected_outputs,
    jobs,
    pids_matching,
    registered_outputs,
    requires_work_queue,
    run_bps,
    run_processes,
    run_record,
    wait_for_jobs,
    write_bps_file,
)

from desc.gen3_workflow.constants import SERVICE_VARIABLE
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobState, RunState


def _end_times(submit_dir: str, label: str) -> dict[str, float | None]:
    return {
        job.name: job.t_end for job in jobs(submit_dir, states=[JobState.EXEC_DONE]) if job.label == label
    }


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
        "restart", "--id", submit_dir, cwd=tmp_path, env={**SERVICE_ENV, **(env or {})}, timeout=600
    )
    assert restart.returncode == 0, restart.output
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    # An isr job still running at the interruption runs again; none that had ended does.
    after = _end_times(submit_dir, "isr")
    assert isr_ends and {name: after[name] for name in isr_ends} == isr_ends, "succeeded jobs ran again"
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, LABELS)


def test_cancel_stops_everything_and_restart_finishes(demo_repo: str, tmp_path: Path) -> None:
    with BackgroundBps(tmp_path, _slow_bps_file(tmp_path, demo_repo)) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)

        start = time.monotonic()
        cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60)
        assert cancel.returncode == 0, cancel.output
        assert f"Successfully canceled job with id '{submit_dir}'" in cancel.output
        assert time.monotonic() - start < 20

        assert submit.wait(timeout=120) == 1
        assert "was cancelled" in submit.output
    assert run_record(submit_dir).state == RunState.CANCELLED
    assert run_processes(submit_dir) == [], "job processes survived the cancel"
    # The final job registered what had succeeded: every isr output.
    assert registered_outputs(submit_dir)["postISRCCD"] == N_VISITS * N_DETECTORS
    again = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60)
    assert "is not running (state: cancelled); nothing changed" in again.output

    _restart_finishes_the_run(tmp_path, submit_dir)


def test_cancel_then_restart_of_a_run_with_several_executors(demo_repo: str, tmp_path: Path) -> None:
    """A run with two executors, cancelled, then restarted: the restart
    reads the executors back from the run's record and sends each job
    where the first submission would have (calibrate, by its label, to
    ``large``)."""
    parsl_config = {
        "executors": [
            {"name": "small", "executor": "ThreadPool", "max_threads": 2, "worker_memory": 2048},
            {"name": "large", "executor": "ThreadPool", "max_threads": 1, "labels": ["calibrate"]},
        ]
    }
    with BackgroundBps(tmp_path, _slow_bps_file(tmp_path, demo_repo, parsl_config)) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)
        cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60)
        assert cancel.returncode == 0, cancel.output
        assert submit.wait(timeout=120) == 1
    _restart_finishes_the_run(tmp_path, submit_dir)
    with JobStateStore.open(submit_dir) as store:
        used = store.label_executors()
    assert used["calibrate"] == ["large"] and used["isr"] == ["small"], used


def test_kill_9_of_the_submitting_process_then_restart(demo_repo: str, tmp_path: Path) -> None:
    with BackgroundBps(tmp_path, _slow_bps_file(tmp_path, demo_repo)) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)
        submit.signal(signal.SIGKILL)
        submit.wait(timeout=30)
        # Its jobs are orphans now, still running.
        assert run_processes(submit_dir)
        # Status and report see that the run was interrupted.
        status = run_bps(
            "status", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60, log_tty=True
        )
        assert status.returncode == 19, status.output  # WmsStates.FAILED
        report = run_bps("report", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60)
        assert "interrupted" in report.output and "bps restart" in report.output

        _restart_finishes_the_run(tmp_path, submit_dir)
    assert run_processes(submit_dir) == []


def _cancel_mid_run(tmp_path: Path, bps_file: Path, env: dict[str, str]) -> str:
    with BackgroundBps(tmp_path, bps_file, env) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)
        start = time.monotonic()
        cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env={**SERVICE_ENV, **env}, timeout=60)
        assert cancel.returncode == 0, cancel.output
        assert "Successfully canceled" in cancel.output
        assert time.monotonic() - start < 20
        assert submit.wait(timeout=120) == 1
    assert run_record(submit_dir).state == RunState.CANCELLED
    assert run_processes(submit_dir) == [], "job processes survived the cancel"
    return submit_dir


@requires_work_queue
def test_cancel_on_work_queue_leaves_no_worker(demo_repo: str, tmp_path: Path) -> None:
    bps_file = _slow_bps_file(
        tmp_path, demo_repo, {"executor": "WorkQueue", "worker_options": "--memory=4000"}
    )
    workers_before = pids_matching("work_queue_worker")
    submit_dir = _cancel_mid_run(tmp_path, bps_file, {})
    assert pids_matching("work_queue_worker") <= workers_before, "Work Queue workers left running"
    _node_runner_served_and_ended(submit_dir)


def _node_runner_served_and_ended(submit_dir: str) -> None:
    """The jobs ran in the node's warm runner (the default execution), which
    is gone with the run."""
    assert list((Path(submit_dir) / "runners").glob("*.log")), "no node runner served the run"
    assert not pids_matching(f"node_runner --run-dir {submit_dir}"), "a node runner survived the run"


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
    # What parsl started for this run (interchange, worker pools) carries the
    # run's SERVICE_VARIABLE: a check another test run beside this one cannot upset.
    assert run_processes(submit_dir, SERVICE_VARIABLE) == [], "parsl worker pools left running"
    if execution == "in_process":
        # In-process runners inside a Slurm block, to the end of the run.
        _restart_finishes_the_run(tmp_path, submit_dir, slurm_cluster.env)
        assert slurm_cluster.job_ids() == []


@requires_work_queue
def test_sigterm_of_bps_submit_stops_everything_then_restart(demo_repo: str, tmp_path: Path) -> None:
    """A pilot job's walltime end: SIGTERM to bps submit stops the Work Queue
    workers and jobs, records the run as interrupted, and bps restart
    finishes it."""
    workers_before = pids_matching("work_queue_worker")
    bps_file = _slow_bps_file(
        tmp_path, demo_repo, {"executor": "WorkQueue", "worker_options": "--memory=4000"}
    )
    with BackgroundBps(tmp_path, bps_file) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)
        submit.signal(signal.SIGTERM)
        assert submit.wait(timeout=120) == 128 + signal.SIGTERM, submit.output
        assert "interrupted by SIGTERM" in submit.output and f"bps restart --id {submit_dir}" in submit.output
    assert run_record(submit_dir).state == RunState.INTERRUPTED
    assert run_processes(submit_dir) == [], "job processes survived the signal"
    assert run_processes(submit_dir, SERVICE_VARIABLE) == [], "parsl's processes survived the signal"
    assert pids_matching("work_queue_worker") <= workers_before, "Work Queue workers left running"
    _node_runner_served_and_ended(submit_dir)
    status = run_bps("status", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60, log_tty=True)
    assert status.returncode == 19, status.output  # WmsStates.FAILED
    _restart_finishes_the_run(tmp_path, submit_dir)


def test_second_signal_stops_high_throughput_at_once_then_restart(demo_repo: str, tmp_path: Path) -> None:
    """Ctrl-C twice (or a batch system's repeated SIGTERM): bps submit does
    not wait for parsl's shutdown, and nothing parsl started is left running
    (HighThroughput's interchange, its Local block of workers: process mode,
    as in_process on this machine starts no worker pool); bps restart
    finishes the run."""
    bps_file = _slow_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "HighThroughput", "provider": "Local", "max_workers": 2, "execution": "process"},
    )
    with BackgroundBps(tmp_path, bps_file) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)
        assert run_processes(submit_dir, SERVICE_VARIABLE), "parsl's processes are not marked"
        submit.signal(signal.SIGINT)
        time.sleep(1.0)
        submit.signal(signal.SIGINT)
        assert submit.wait(timeout=60) in (-signal.SIGINT, 128 + signal.SIGINT), submit.output
    assert run_processes(submit_dir) == [], "job processes survived"
    assert run_processes(submit_dir, SERVICE_VARIABLE) == [], "parsl's processes survived"
    status = run_bps("status", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60, log_tty=True)
    assert status.returncode == 19, status.output  # WmsStates.FAILED
    _restart_finishes_the_run(tmp_path, submit_dir)
    assert run_processes(submit_dir, SERVICE_VARIABLE) == [], "parsl's processes survived the restart"
