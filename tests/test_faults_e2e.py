"""Faults injected into real runs: each is reported with its cause, nothing
that succeeded is lost or registered twice, and no run hangs.

Complements test_submit_e2e.py (a raising quantum with retries, a failing
final job) and test_cancel_restart_e2e.py (cancel mid-run, kill -9 of the
submitting process, restart).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS, SFP_LABELS
from harness import (
    SERVICE_ENV,
    BackgroundBps,
    expected_outputs,
    job_states,
    jobs,
    pids_matching,
    registered_outputs,
    requires_work_queue,
    run_bps,
    run_processes,
    run_record,
    wait_for,
    wait_for_jobs,
    write_bps_file,
)

from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobKind, JobState, RunState

WORKER = "^(/usr/bin/)?work_queue_worker "  # not any command naming a path with those words
# ctrl_bps's own final job command (bps_defaults.yaml), after a first line
# that waits while a file exists.
AGGREGATE = (
    "${DAF_BUTLER_DIR}/bin/butler {finalPreCmdOpts} aggregate-graph {fileDistributionEndPoint}{qgraphFile} "
    "{butlerConfig} -j {requestCpus} --register-dataset-types {updateOutputChain} {extraAggregateOptions}"
)


@requires_work_queue
def test_work_queue_follows_ctrl_bps_retry_and_memory_rules(demo_repo: str, tmp_path: Path) -> None:
    """With ctrl_bps's defaults (numberOfRetries 5, retryUnlessExit [1, 2],
    memoryMultiplier 2) and per-label overrides: a quantum holding 3x its
    memory request is tried again with twice, then four times the memory
    and succeeds; a SIGKILLed one is tried 1 + numberOfRetries (2, for its
    label) times; a raising one (exit 1) once.  Each attempt is in the
    report."""
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "WorkQueue", "provider": "Local", "worker_options": "--cores=2 --memory=8000"},
        pipeline="demo_sfp",
        pipetask={"isr": {"numberOfRetries": 2}, "characterizeImage": {"requestMemory": 1000}},
        extraQgraphOptions=(
            "-c isr:failOn=visit:2,detector:1 -c isr:failExitSignal=9 "
            "-c characterizeImage:failOn=visit:1,detector:1 -c characterizeImage:failAllocateMB=3000 "
            "-c calibrate:failOn=visit:1,detector:0"
        ),
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 1, result.output
    failed = {job.label: job for job in jobs(result.submit_dir, states=[JobState.FAILED])}
    assert set(failed) == {"isr", "calibrate"}, failed
    killed, raised = failed["isr"], failed["calibrate"]
    assert '"visit":2' in killed.data_id and '"detector":1' in killed.data_id
    assert killed.attempts == 3 and killed.message is not None
    assert "SIGKILL" in killed.message and "2 retries allowed (numberOfRetries)" in killed.message
    assert raised.attempts == 1 and raised.exit_code == 1
    assert raised.message is not None and "retryUnlessExit" in raised.message
    (hog,) = [
        job
        for job in jobs(result.submit_dir)
        if job.label == "characterizeImage" and '"visit":1' in job.data_id and '"detector":1' in job.data_id
    ]
    assert hog.state == JobState.EXEC_DONE and hog.attempts == 3
    with JobStateStore.open(result.submit_dir) as store:
        tries = store.attempts_of([hog.seq, killed.seq])
    assert [(a.succeeded, a.memory) for a in tries[hog.seq]] == [(False, 1000), (False, 2000), (True, 4000)]
    # The node's warm runner (the default execution) stopped it (SIGTERM),
    # naming the resource.
    assert "gen3_workflow in_process: runner pid" in Path(hog.stderr).read_text()
    assert tries[hog.seq][0].exit_code == 143
    assert "more than the 1000 MB requested" in (tries[hog.seq][0].message or "")
    assert [a.exit_code for a in tries[killed.seq]] == [137, 137, 137]
    # The submit output and the report name the failures and each attempt.
    report = run_bps("report", "--id", result.submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=120)
    for output in (result.output, report.output):
        assert "SIGKILL" in output and killed.stderr in output, output
        # Each attempt with the host it ran on.
        host = socket.gethostname()
        assert "RETRIED characterizeImage" in output and f"#1 exit 143 on {host}, 1000 MB" in output
        assert f"#3 ok on {host}, 4000 MB" in output
    # Everything else ran and was registered.
    states = job_states(result.submit_dir)
    assert states["isr"][JobState.EXEC_DONE] == 3
    assert states["characterizeImage"][JobState.EXEC_DONE] == 3
    outputs = registered_outputs(result.submit_dir)
    assert (outputs["postISRCCD"], outputs["icExp"], outputs["calexp"]) == (3, 3, 2)


def _slow_sfp(tmp_path: Path, repo: str, parsl_config: dict, seconds: int = 30) -> Path:
    """characterizeImage sleeps while the file ``slow`` exists."""
    switch = tmp_path / "slow"
    switch.touch()
    return write_bps_file(
        tmp_path,
        repo,
        parsl_config,
        pipeline="demo_sfp",
        extraQgraphOptions=(
            f"-c characterizeImage:sleep={seconds} -c characterizeImage:onlyWhileExists={switch}"
        ),
    )


def _finishes_complete(submit: BackgroundBps, submit_dir: str, labels: list[str]) -> None:
    assert submit.wait(timeout=300) == 0, submit.output
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    # Every output once: a job that was re-run after its worker was lost
    # did not register anything twice.
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, labels)


@requires_work_queue
def test_lost_wq_workers_are_replaced(demo_repo: str, tmp_path: Path) -> None:
    """Killing the workers and their jobs (a lost node) mid-run: Work Queue
    gives the jobs back, parsl starts a new block, the run completes."""
    workers_before = pids_matching(WORKER)
    # Two blocks: two workers, each with one core.
    parsl_config = {
        "executor": "WorkQueue",
        "provider": "Local",
        "init_blocks": 2,
        "max_blocks": 2,
        "worker_options": "--cores=1",
    }
    with BackgroundBps(tmp_path, _slow_sfp(tmp_path, demo_repo, parsl_config)) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING, count=2)
        lost = pids_matching(WORKER) - workers_before
        assert len(lost) == 2, lost
        for pid in lost | set(run_processes(submit_dir)):
            os.kill(pid, signal.SIGKILL)
        (tmp_path / "slow").unlink()
        _finishes_complete(submit, submit_dir, SFP_LABELS)
    assert pids_matching(WORKER) <= workers_before


@pytest.mark.parametrize("block_end", ["scancel", "walltime"])
def test_a_slurm_block_that_ends_is_replaced(
    demo_repo: str, tmp_path: Path, slurm_cluster, block_end: str
) -> None:
    """The block running HighThroughput workers ends mid-quantum (``scancel``,
    or its one-minute walltime): its jobs are lost, retried under ctrl_bps's
    default numberOfRetries in a new block, and the run completes."""
    parsl_config = {
        "executor": "HighThroughput",
        "provider": "Slurm",
        "partition": slurm_cluster.partition,
        "exclusive": False,
        "walltime": "00:20:00" if block_end == "scancel" else "00:01:00",
        "max_workers": 2,
    }
    # characterizeImage sleeps until the block has ended (warm quanta start
    # within seconds of the block: a short sleep would end before it).
    bps_file = _slow_sfp(tmp_path, demo_repo, parsl_config, seconds=300)
    with BackgroundBps(tmp_path, bps_file, slurm_cluster.env) as submit:
        submit_dir = wait_for_jobs(submit, "characterizeImage", JobState.RUNNING)
        (block,) = slurm_cluster.job_ids()
        if block_end == "scancel":
            slurm_cluster.run(["scancel", block])
        else:
            wait_for(lambda: block not in slurm_cluster.job_ids(), f"block {block} to reach its walltime")
        (tmp_path / "slow").unlink()
        _finishes_complete(submit, submit_dir, SFP_LABELS)
    assert slurm_cluster.job_ids() == []
    retried = [job for job in jobs(submit_dir, kind=JobKind.QUANTUM) if job.attempts > 1]
    labels = {job.label for job in retried}
    # The jobs lost with the block: the sleeping characterizeImage, and an
    # isr if one was still running beside it.  A later one-minute block may
    # reach its walltime too (a loaded machine): its jobs are retried as well.
    assert "characterizeImage" in labels, retried
    if block_end == "scancel":
        assert labels <= {"isr", "characterizeImage"}, retried


def _final_job_waiting(tmp_path: Path) -> dict[str, str]:
    """A ``finalJob`` section whose job waits while ``hold_final`` exists,
    then runs ctrl_bps's usual command."""
    switch = tmp_path / "hold_final"
    switch.touch()
    return {"command1": f"while [ -e {switch} ]; do sleep 0.2; done", "command2": AGGREGATE}


def test_cancel_while_the_final_job_runs_then_restart(demo_repo: str, tmp_path: Path) -> None:
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "ThreadPool", "max_threads": 2},
        pipeline="demo_sfp",
        finalJob=_final_job_waiting(tmp_path),
    )
    with BackgroundBps(tmp_path, bps_file) as submit:
        submit_dir = wait_for_jobs(submit, "finalJob", JobState.RUNNING)
        cancel = run_bps("cancel", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=60)
        assert cancel.returncode == 0 and "Successfully canceled" in cancel.output, cancel.output
        assert submit.wait(timeout=60) == 1, submit.output
    assert run_record(submit_dir).state == RunState.CANCELLED
    (final,) = jobs(submit_dir, kind=JobKind.FINAL)
    assert (final.state, final.message) == (JobState.FAILED, "cancelled")
    assert not pids_matching(f"while \\[ -e {tmp_path}"), "the final job survived the cancel"
    assert sum(registered_outputs(submit_dir).values()) == 0

    (tmp_path / "hold_final").unlink()
    restart = run_bps("restart", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=300)
    assert restart.returncode == 0, restart.output
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)


def test_final_job_without_its_registry_fails_and_restart_registers(demo_repo: str, tmp_path: Path) -> None:
    """The registry is unusable when the final job starts: the run fails
    loudly; with the registry back, ``bps restart`` registers every output
    without running any quantum again."""
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "ThreadPool", "max_threads": 2},
        finalJob=_final_job_waiting(tmp_path),
    )
    with BackgroundBps(tmp_path, bps_file) as submit:
        submit_dir = wait_for_jobs(submit, "finalJob", JobState.RUNNING)
        registry = Path(demo_repo) / "gen3.sqlite3"
        shutil.move(registry, tmp_path / "registry.away")
        registry.write_text("not a database\n")
        (tmp_path / "hold_final").unlink()
        assert submit.wait(timeout=300) == 1, submit.output
        assert "FAILED finalJob" in submit.output
    assert run_record(submit_dir).state == RunState.FAILED
    report = run_bps("report", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=120)
    assert "finalJob" in report.output and "exit code" in report.output, report.output
    quantum_ends = {job.name: job.t_end for job in jobs(submit_dir, kind=JobKind.QUANTUM)}

    shutil.move(tmp_path / "registry.away", registry)
    restart = run_bps("restart", "--id", submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=300)
    assert restart.returncode == 0, restart.output
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    assert {job.name: job.t_end for job in jobs(submit_dir, kind=JobKind.QUANTUM)} == quantum_ends
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)
