"""ctrl_bps quantum clustering (several quanta per job) in both execution modes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS, QUANTA
from harness import BpsResult, expected_outputs, jobs, registered_outputs, run_bps, run_record, write_bps_file

from desc.gen3_workflow.store.records import JobKind, JobState, RunState

# isr -> characterizeImage -> calibrate of one visit and detector in one job.
CLUSTERING = {
    "clusterAlgorithm": "lsst.ctrl.bps.quantum_clustering_funcs.dimension_clustering",
    "cluster": {"sfp": {"pipetasks": "isr,characterizeImage,calibrate", "dimensions": "visit,detector"}},
}
# One job per sfp cluster, then the unclustered visitSummary and globalTable quanta.
CLUSTER_JOBS = {"sfp": N_VISITS * N_DETECTORS, "visitSummary": N_VISITS, "globalTable": 1}


@pytest.fixture(scope="module", params=["process", "in_process"])
def clustered_run(
    request: pytest.FixtureRequest, demo_repo_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> BpsResult:
    tmp = tmp_path_factory.mktemp(f"clustered_{request.param}")
    repo = tmp / "repo"
    shutil.copytree(demo_repo_template, repo)
    # ThreadPool for both: in in_process mode its runners are subprocesses
    # of the submitting process.
    parsl_config = {"executor": "ThreadPool", "max_threads": 2, "execution": request.param}
    bps_file = write_bps_file(tmp, str(repo), parsl_config, payload_name="clustered", **CLUSTERING)
    return run_bps("submit", str(bps_file), cwd=tmp)


def test_clustered_run_registers_every_output(clustered_run: BpsResult) -> None:
    assert clustered_run.returncode == 0, clustered_run.output
    submit_dir = clustered_run.submit_dir
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)


def test_one_job_per_cluster(clustered_run: BpsResult) -> None:
    assert clustered_run.returncode == 0, clustered_run.output
    quanta = jobs(clustered_run.submit_dir, kind=JobKind.QUANTUM)
    assert len(quanta) == sum(CLUSTER_JOBS.values())
    by_label: dict[str, int] = {}
    for job in quanta:
        by_label[job.label] = by_label.get(job.label, 0) + 1
        assert job.state == JobState.EXEC_DONE
    assert by_label == CLUSTER_JOBS
    # A cluster's three quanta ran in one call, in dependency order.
    sfp = next(job for job in quanta if job.label == "sfp")
    log = Path(sfp.stderr).read_text()
    order = [
        log.index(f"Constructing task and executing quantum for label={label} ") for label in DRP_LABELS[:3]
    ]
    assert order == sorted(order)
    assert "Executed 3 quanta successfully" in log
    assert sum(QUANTA[label] for label in DRP_LABELS[:3]) == 3 * CLUSTER_JOBS["sfp"]
