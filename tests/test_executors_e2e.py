"""Several executors in one run (``parsl_config.executors``), submitted for
real on the demo pipeline: each job on the smallest executor its memory
request fits, a memory-scaled retry moving on to a larger one, and the
executor of each job shown by status and reports."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from conftest import N_DETECTORS, N_VISITS, SFP_LABELS
from harness import (
    SERVICE_ENV,
    expected_outputs,
    jobs,
    registered_outputs,
    requires_work_queue,
    run_bps,
    run_record,
    wait_for,
    write_bps_file,
)

from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobKind, JobState, RunState


def _executors_of(submit_dir: str) -> dict[str, Counter[str]]:
    """Per task label, how many jobs' last attempts ran on each executor."""
    labels = {job.seq: job.label for job in jobs(submit_dir, kind=JobKind.QUANTUM)}
    with JobStateStore.open(submit_dir) as store:
        last = store.last_executors()
    found: dict[str, Counter[str]] = {}
    for seq, executor in last:
        if seq in labels:
            found.setdefault(labels[seq], Counter())[executor] += 1
    return found


def test_thread_pool_and_high_throughput_in_one_run(demo_repo: str, tmp_path: Path, slurm_cluster) -> None:
    """Small jobs on a ThreadPool of bps submit, calibrate (4096 MB) on
    HighThroughput blocks of the private Slurm cluster; every output
    registered; status, report and summary name both."""
    slurm = {"provider": "Slurm", "partition": slurm_cluster.partition, "walltime": "00:20:00"}
    parsl_config = {
        "retries": 0,
        "executors": [
            {"name": "large", "executor": "HighThroughput", **slurm, "max_workers": 1, "worker_memory": 8192},
            {"name": "small", "executor": "ThreadPool", "max_threads": 2, "worker_memory": 2048},
        ],
    }
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        parsl_config,
        pipeline="demo_sfp",
        pipetask={"calibrate": {"requestMemory": 4096}},
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=slurm_cluster.env, timeout=400)
    assert result.returncode == 0, result.output
    assert run_record(result.submit_dir).state == RunState.SUCCEEDED
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)
    n = N_VISITS * N_DETECTORS
    assert _executors_of(result.submit_dir) == {
        "isr": Counter(small=n),
        "characterizeImage": Counter(small=n),
        "calibrate": Counter(large=n),
    }
    report = run_bps("report", "--id", result.submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=120)
    assert "EXECUTOR large (HighThroughput on Slurm, requests 2049-8192 MB): calibrate" in report.output
    assert "EXECUTOR small (ThreadPool, requests up to 2048 MB): isr, characterizeImage" in report.output
    summary = subprocess.run(
        [sys.executable, "-m", "desc.gen3_workflow.cli.summary", "--json", result.submit_dir],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert summary.returncode == 0, summary.stderr
    assert json.loads(summary.stdout)["executors"] == {"small": 2 * n, "large": n}
    # "large" ran in a block that Slurm started; "small" started none.
    found = Path(result.submit_dir, "parsl_runinfo").glob("**/submit_scripts/*")
    scripts = [path.read_text() for path in found if path.suffix not in (".stdout", ".stderr")]
    assert scripts and all(f"#SBATCH --partition={slurm_cluster.partition}" in s for s in scripts), scripts
    assert all("--job-name=parsl.large." in s for s in scripts)
    wait_for(lambda: slurm_cluster.job_ids() == [], "no Slurm job left", 60)


@requires_work_queue
def test_memory_retry_moves_to_the_next_executor_that_fits(
    demo_repo: str, tmp_path: Path, slurm_nodes
) -> None:
    """On the private Slurm cluster: a quantum holding 3000 MB, asking for
    1000, is stopped by the small Work Queue executor (worker_memory 1500);
    its retry asks for 2000 MB and runs on the large HighThroughput one;
    both executors are in its report line."""
    slurm_nodes.run(["scancel", "--full", "--partition=debug"], check=False)
    slurm = {"provider": "Slurm", "partition": "debug", "exclusive": False, "walltime": "00:20:00"}
    parsl_config = {
        **slurm,
        "executors": [
            {
                "name": "small",
                "executor": "WorkQueue",
                "worker_options": "--cores=2 --memory=3000",
                "worker_memory": 1500,
            },
            {"name": "large", "executor": "HighThroughput", "max_workers": 2, "worker_memory": 8000},
        ],
    }
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        parsl_config,
        pipeline="demo_sfp",
        pipetask={"characterizeImage": {"requestMemory": 1000}},
        extraQgraphOptions=(
            "-c characterizeImage:failOn=visit:1,detector:1 -c characterizeImage:failAllocateMB=3000"
        ),
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=slurm_nodes.env, timeout=400)
    assert result.returncode == 0, result.output
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)
    (hog,) = [
        job
        for job in jobs(result.submit_dir)
        if job.label == "characterizeImage" and '"visit":1' in job.data_id and '"detector":1' in job.data_id
    ]
    assert hog.state == JobState.EXEC_DONE
    with JobStateStore.open(result.submit_dir) as store:
        tries = store.attempts_of([hog.seq])[hog.seq]
    assert [(a.succeeded, a.memory, a.executor) for a in tries] == [
        (False, 1000, "small"),
        (True, 2000, "large"),
    ]
    report = run_bps("report", "--id", result.submit_dir, cwd=tmp_path, env=SERVICE_ENV, timeout=120)
    wait_for(lambda: slurm_nodes.job_ids() == [], "no Slurm job left", 60)
    for output in (result.output, report.output):
        assert "RETRIED characterizeImage" in output
        assert "1000 MB via small" in output and "2000 MB via large" in output, output


def test_a_request_no_executor_takes_stops_submit_before_any_job(demo_repo: str, tmp_path: Path) -> None:
    """calibrate asks for 9000 MB, the largest worker_memory is 4096: one
    line naming the key, exit 2 (ctrl_bps's), no job run."""
    parsl_config = {
        "executors": [
            {"name": "small", "executor": "ThreadPool", "max_threads": 2, "worker_memory": 2048},
            {"name": "medium", "executor": "ThreadPool", "max_threads": 1, "worker_memory": 4096},
        ],
    }
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        parsl_config,
        pipeline="demo_sfp",
        pipetask={"calibrate": {"requestMemory": 9000}},
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode != 0, result.output
    line = (
        "parsl_config.executors[medium].worker_memory: 4096 MB is the most any executor takes, and a job "
        "asks for 9000 MB (requestMemory)"
    )
    assert line in result.output, result.output
    assert "Traceback" not in result.output
    assert sum(registered_outputs(result.submit_dir).values()) == 0
