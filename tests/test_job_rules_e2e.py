"""Production job semantics on real runs: the final job's ``whenRun``, a
quantum killed after some of its writes, and a real kernel OOM kill.
(ctrl_bps's retry and memory rules on Work Queue: test_faults_e2e.py.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import N_DETECTORS, N_VISITS, QUANTA, SFP_LABELS
from harness import (
    SERVICE_ENV,
    expected_outputs,
    jobs,
    registered_outputs,
    run_bps,
    run_record,
    write_bps_file,
)

from desc.gen3_workflow.execution.job_io.oom import memory_cgroup
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobKind, JobState, RunState

THREADS = {"executor": "ThreadPool", "max_threads": 2}


def test_final_job_when_run_success_waits_for_every_job(demo_repo: str, tmp_path: Path) -> None:
    """``finalJob.whenRun: SUCCESS``: after a failure the final job does not
    run, nothing is registered, and every report says why and that a
    restart runs it; the restart does, once everything succeeded."""
    switch = tmp_path / "fail"
    switch.touch()
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {**THREADS, "progress_interval": 0.5},
        pipeline="demo_sfp",
        finalJob={"whenRun": "SUCCESS"},
        extraQgraphOptions=f"-c calibrate:failOn=visit:1,detector:0 -c calibrate:onlyWhileExists={switch}",
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 1, result.output
    (final,) = jobs(result.submit_dir, kind=JobKind.FINAL)
    assert final.state == JobState.DEP_FAIL and final.message is not None
    assert "whenRun is SUCCESS" in final.message and "bps restart" in final.message
    assert sum(registered_outputs(result.submit_dir).values()) == 0
    # The progress counts quanta only, not the final job.
    total = sum(QUANTA[label] for label in SFP_LABELS)
    assert f"/{total} quanta" in result.output and f"/{total + 1} quanta" not in result.output
    report = run_bps("report", "--id", result.submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=120)
    for output in (result.output, report.output):
        assert "finalJob dep_fail: not run: finalJob.whenRun is SUCCESS" in output, output
    switch.unlink()
    restart = run_bps("restart", "--id", result.submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=300)
    assert restart.returncode == 0, restart.output
    assert run_record(result.submit_dir).state == RunState.SUCCEEDED
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)


@pytest.mark.parametrize("execution", ["process", "in_process"])
def test_a_quantum_killed_after_writing_an_output_succeeds_when_retried(
    demo_repo: str, tmp_path: Path, execution: str
) -> None:
    """A characterizeImage quantum writes icExp, then is SIGKILLed (once).
    Its retry must not trip over the file already in the datastore, and
    nothing is registered twice."""
    switch = tmp_path / "once"
    switch.touch()
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {**THREADS, "execution": execution},
        pipeline="demo_sfp",
        extraQgraphOptions=(
            "-c characterizeImage:failOn=visit:1,detector:1 -c characterizeImage:failAfterWriting=icExp "
            f"-c characterizeImage:failExitSignal=9 -c characterizeImage:onlyWhileExists={switch} "
            "-c characterizeImage:consumeSwitch=True"
        ),
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 0, result.output
    assert not switch.exists()  # the fault did fire
    (killed,) = [job for job in jobs(result.submit_dir) if job.attempts > 1]
    assert killed.label == "characterizeImage" and killed.attempts == 2
    assert killed.state == JobState.EXEC_DONE
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)


CGROUP_LIMIT_MB = 2500
"""What the run's memory cgroup allows bps, its jobs and the hog together."""


@pytest.fixture
def limited_cgroup() -> Iterator[str]:
    """A child of this process's memory cgroup holding at most
    `CGROUP_LIMIT_MB`, swap included (skips where one cannot be made)."""
    parent = memory_cgroup()
    if parent is None:
        pytest.skip("this machine has no memory cgroup to make a limited child of")
    child = Path(parent) / f"gen3wf_test_{os.getpid()}"
    limit = str(CGROUP_LIMIT_MB * 2**20)
    try:
        child.mkdir()
        if (child / "memory.limit_in_bytes").exists():  # cgroup v1
            (child / "memory.limit_in_bytes").write_text(limit)
            if (child / "memory.memsw.limit_in_bytes").exists():
                (child / "memory.memsw.limit_in_bytes").write_text(limit)
        else:
            (child / "memory.max").write_text(limit)
            (child / "memory.swap.max").write_text("0")
    except OSError as exc:
        if child.exists():
            child.rmdir()
        pytest.skip(f"cannot make a memory cgroup under {parent}: {exc}")
    yield str(child)
    for pid in (child / "cgroup.procs").read_text().split():
        (Path(parent) / "cgroup.procs").write_text(pid)
    child.rmdir()


def test_a_kernel_oom_kill_is_retried_with_more_memory(
    demo_repo: str, tmp_path: Path, limited_cgroup: str
) -> None:
    """The run lives in a memory cgroup; one quantum allocates more than the
    cgroup holds, once, and the kernel's OOM killer ends it.  That is a
    memory failure: the retry asks for twice the memory and succeeds."""
    switch = tmp_path / "once"
    switch.touch()
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        THREADS,
        pipeline="demo_sfp",
        pipetask={"characterizeImage": {"requestMemory": 1000}},
        extraQgraphOptions=(
            "-c characterizeImage:failOn=visit:1,detector:1 "
            f"-c characterizeImage:failAllocateMB={CGROUP_LIMIT_MB + 500} "
            "-c characterizeImage:failAllocateSeconds=30 "
            f"-c characterizeImage:onlyWhileExists={switch} -c characterizeImage:consumeSwitch=True"
        ),
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, cgroup=limited_cgroup)
    assert result.returncode == 0, result.output
    assert not switch.exists()  # the hog did run
    (hog,) = [job for job in jobs(result.submit_dir) if job.attempts > 1]
    assert hog.label == "characterizeImage" and hog.state == JobState.EXEC_DONE
    with JobStateStore.open(result.submit_dir) as store:
        first, second = store.attempts_of([hog.seq])[hog.seq]
    assert (first.succeeded, first.exit_code, first.memory) == (False, 137, 1000)
    assert "out-of-memory killer" in (first.message or "")
    assert (second.succeeded, second.memory) == (True, 2000)
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)
