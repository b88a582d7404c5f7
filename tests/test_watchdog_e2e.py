"""No run waits for ever: a task that never comes back after its payload
ended, a job past its walltime, and a soak of Work Queue tasks under Work
Queue's own resource monitor, with real bps runs and real workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import N_DETECTORS, N_VISITS, SFP_LABELS
from harness import (
    BackgroundBps,
    expected_outputs,
    find_submit_dir,
    jobs,
    pids_matching,
    registered_outputs,
    requires_work_queue,
    run_bps,
    run_record,
    wait_for,
    write_bps_file,
)

from desc.gen3_workflow.store.job_store import UNREADABLE, JobStateStore
from desc.gen3_workflow.store.records import JobKind, JobState, RunState
from desc.gen3_workflow.testing import null_run

FAKE_MONITOR = Path(__file__).parent / "fake_cctools_monitor.sh"
WORKER = "^(/usr/bin/)?work_queue_worker "


@requires_work_queue
def test_hung_resource_monitor_is_killed_and_its_job_counts(demo_repo: str, tmp_path: Path) -> None:
    """Work Queue's resource monitor hangs after one job's payload ended:
    the job counts as done at once (what follows it runs meanwhile), its
    task is killed after return_grace, its payload never runs again, and
    nothing is left running."""
    workers_before = pids_matching(WORKER)
    parsl_config = {
        "executor": "WorkQueue",
        "worker_options": "--cores=2 --memory=8000",
        "resource_monitor": "work_queue",
        "return_grace": 5,
    }
    # Quanta of 2 s on the one slot left: the run outlasts the grace and
    # the watchdog's next check.
    sleeps = " ".join(f"-c {label}:sleep=2" for label in SFP_LABELS)
    bps_file = write_bps_file(
        tmp_path, demo_repo, parsl_config, pipeline="demo_sfp", extraQgraphOptions=sleeps
    )
    hang = tmp_path / "hang"
    env = {"CCTOOLS_RESOURCE_MONITOR": str(FAKE_MONITOR), "GEN3WF_TEST_HANG_ONCE": str(hang)}
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.output
    assert (hang / "pid").exists(), "the monitor never hung: the test proves nothing"
    assert run_record(result.submit_dir).state == RunState.SUCCEEDED
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)
    # The hung job (and any other whose task a loaded machine kept past the
    # 5 s: CI once saw two) counts as done, its payload run once.
    hung = [job for job in jobs(result.submit_dir) if job.message]
    assert hung, "no task was killed after return_grace"
    for job in hung:
        assert job.state == JobState.EXEC_DONE and job.attempts == 1
        assert job.message == (
            "payload ended with exit 0 but WorkQueue did not return the task within 5 s; task killed"
        )
        assert Path(job.stderr).read_text().count("Executed 1 quanta successfully") == 1
    # The hung monitor, and every worker, are gone.
    monitor = int((hang / "pid").read_text())
    assert not os.path.exists(f"/proc/{monitor}") or "zombie" in Path(f"/proc/{monitor}/status").read_text()
    assert pids_matching(WORKER) <= workers_before


_WALLTIME_SETS = {
    "process": {"executor": "ThreadPool", "max_threads": 2, "execution": "process"},
    "in_process": {"executor": "ThreadPool", "max_threads": 2, "execution": "in_process"},
    # The node runner, fed by threads of bps submit (execution.modes: relays_locally).
    "relay": {"executor": "HighThroughput", "provider": "Local", "max_workers": 2, "execution": "in_process"},
}


@pytest.mark.parametrize("execution", list(_WALLTIME_SETS))
def test_job_past_its_walltime_is_stopped_and_retried(demo_repo: str, tmp_path: Path, execution: str) -> None:
    """characterizeImage asks for 0.25 min (0.5 min in process mode, where
    pipetask's own start takes 10 s or more of it on a loaded machine) and
    sleeps while ``slow`` exists: it is stopped at its walltime (by its
    supervisor in process mode, by the runner's watchdog in a warm runner,
    by the node's runner or the watchdog, whichever looks first, on the
    relay), the runner retries it, the retry (with ``slow`` gone) succeeds."""
    walltime = 30 if execution == "process" else 15
    switch = tmp_path / "slow"
    switch.touch()
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {**_WALLTIME_SETS[execution], "retries": 1},
        pipeline="demo_sfp",
        pipetask={"characterizeImage": {"requestWalltime": walltime / 60}},
        extraQgraphOptions=f"-c characterizeImage:sleep=600 -c characterizeImage:onlyWhileExists={switch}",
    )
    with BackgroundBps(tmp_path, bps_file) as submit:

        def stopped_once() -> bool:
            submit_dir = find_submit_dir(tmp_path)
            try:
                chars = jobs(submit_dir, kind=JobKind.QUANTUM) if submit_dir else []
            except UNREADABLE:  # prepare is still writing it
                return False
            return any(j.label == "characterizeImage" and j.attempts >= 2 for j in chars)

        wait_for(stopped_once, lambda: submit.output, timeout=300)
        switch.unlink()
        assert submit.wait(timeout=300) == 0, submit.output
        submit_dir = submit.submit_dir
    chars = [j for j in jobs(submit_dir, kind=JobKind.QUANTUM) if j.label == "characterizeImage"]
    assert all(j.state == JobState.EXEC_DONE for j in chars)
    retried = [j for j in chars if j.attempts == 2]
    assert retried, [(j.name, j.attempts) for j in chars]
    supervisor = f"ran longer than its walltime of {walltime} s; stopping it"
    watchdog = f"ran past its requested walltime ({walltime} s); stopping it"
    said = {"process": [supervisor], "in_process": [watchdog], "relay": [supervisor, watchdog]}[execution]
    for job in retried:
        log = Path(job.stderr).read_text()
        assert any(message in log for message in said), log[-2000:]
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)
    # Each way of running a job measured what the successful attempts used
    # (under the supervisor, in a warm runner's executor, in the node's runner).
    with JobStateStore.open(submit_dir) as store:
        ended = store.attempts_of([job.seq for job in chars])
    for job in chars:
        last = ended[job.seq][-1]
        assert last.succeeded and last.cpu is not None and last.cpu > 0, (execution, last)
        assert last.max_rss is not None and 50 * 2**20 < last.max_rss < 4000 * 2**20, (execution, last)


@requires_work_queue
def test_soak_work_queue_under_its_resource_monitor(tmp_path: Path) -> None:
    """Null jobs through the real plug-in on Work Queue with Work Queue's own
    resource monitor: the run must end, every job done, whatever the
    monitor does (a hang is killed after return_grace)."""
    workers_before = pids_matching(WORKER)
    command = [
        sys.executable,
        "-m",
        null_run.__name__,
        "--jobs=200",
        "--detectors=10",
        f"--workdir={tmp_path}",
        "--set=executor=WorkQueue",
        "--set=worker_options=--cores=2 --memory=8000",
        "--set=resource_monitor=work_queue",
        "--set=return_grace=10",
    ]
    env = {**os.environ, "GEN3WF_RUN_INDEX": str(tmp_path / "runs.txt")}
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=900, env=env, start_new_session=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads(proc.stdout.splitlines()[-1])
    assert figures["states"] == {"exec_done": figures["jobs"]} and figures["jobs"] >= 180
    hangs = sum(n for message, n in figures["messages"].items() if "did not return the task" in message)
    print(
        f"soak: {figures['jobs']} Work Queue tasks in {figures['seconds']} s, {hangs} hung monitor(s) killed"
    )
    assert pids_matching(WORKER) <= workers_before
