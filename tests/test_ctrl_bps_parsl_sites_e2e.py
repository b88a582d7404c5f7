"""bps files written for lsst/ctrl_bps_parsl (``computeSite`` + ``site:``),
with only ``wmsServiceClass`` changed, submitted for real."""

from __future__ import annotations

from pathlib import Path

from conftest import N_DETECTORS, N_VISITS, SFP_LABELS
from harness import expected_outputs, jobs, registered_outputs, run_bps, run_record, wait_for, write_bps_file

from desc.gen3_workflow import ParslService
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobKind, RunState

SITES = "lsst.ctrl.bps.parsl.sites"
SERVICE = f"{ParslService.__module__}.{ParslService.__name__}"


def _assert_complete(submit_dir: str) -> dict:
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, SFP_LABELS)
    record = run_record(submit_dir)
    assert record.state == RunState.SUCCEEDED
    return record.info.parsl_config


def test_local_site_runs_on_high_throughput_with_its_cores(demo_repo: str, tmp_path: Path) -> None:
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        None,
        pipeline="demo_sfp",
        computeSite="local",
        site={"local": {"class": f"{SITES}.Local", "cores": 2}},
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 0, result.output
    parsl_config = _assert_complete(result.submit_dir)
    assert (parsl_config["executor"], parsl_config["provider"], parsl_config["max_workers"]) == (
        "HighThroughput",
        "Local",
        2,
    )
    assert parsl_config["retries"] == 1  # ctrl_bps_parsl's default


def test_slurm_site_runs_on_the_slurm_cluster(demo_repo: str, tmp_path: Path, slurm_cluster) -> None:
    site = {
        "class": f"{SITES}.Slurm",
        "nodes": 1,
        "walltime": "00:20:00",
        # Their Slurm site has no partition key: sites name it this way.
        "scheduler_options": f"#SBATCH --partition={slurm_cluster.partition}",
    }
    bps_file = write_bps_file(
        tmp_path, demo_repo, None, pipeline="demo_sfp", computeSite="hpc", site={"hpc": site}
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=slurm_cluster.env)
    assert result.returncode == 0, result.output
    parsl_config = _assert_complete(result.submit_dir)
    assert (parsl_config["executor"], parsl_config["provider"], parsl_config["exclusive"]) == (
        "HighThroughput",
        "Slurm",
        True,
    )
    scripts = [p.read_text() for p in Path(result.submit_dir, "parsl_runinfo").glob("**/submit_scripts/*")]
    assert any(f"#SBATCH --partition={slurm_cluster.partition}" in s for s in scripts), scripts
    assert slurm_cluster.job_ids() == []


def test_misspelt_site_key_stops_before_the_quantum_graph(demo_repo: str, tmp_path: Path) -> None:
    site = {"class": f"{SITES}.Local", "cores": 2, "monitorEnabled": True}
    bps_file = write_bps_file(
        tmp_path, demo_repo, None, pipeline="demo_sfp", computeSite="local", site={"local": site}
    )
    line = (
        "site.local.monitorEnabled: not supported by desc.gen3_workflow; did you mean 'monitorEnable'? "
        "(supported: class, cores, commandPrefix, environment, retries, monitorEnable, checkpoint)"
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.output
    assert line in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "submit").exists()
    # bps ping reads the same file the same way.
    ping = run_bps(
        "ping",
        "--pass-thru",
        str(bps_file),
        cwd=tmp_path,
        env={"BPS_WMS_SERVICE_CLASS": SERVICE},
        timeout=120,
        log_tty=True,
    )
    assert ping.returncode != 0 and line in ping.output, ping.output


def test_triple_slurm_site_sends_each_job_by_its_memory(demo_repo: str, tmp_path: Path, slurm_nodes) -> None:
    """A ctrl_bps_parsl TripleSlurm file, only wmsServiceClass changed: jobs
    asking for 2048 MB (ctrl_bps's default) run on "small", characterizeImage
    (3000 MB) on "medium", calibrate (6000 MB) on "large", each executor a
    block of its own on a node of its own; every output registered."""
    slurm_nodes.run(["scancel", "--full", "--partition=debug"], check=False)
    site = {
        "class": f"{SITES}.TripleSlurm",
        "nodes": 1,
        "walltime": "00:20:00",
        "scheduler_options": f"#SBATCH --partition={slurm_nodes.partition}",
    }
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        None,
        pipeline="demo_sfp",
        computeSite="hpc",
        site={"hpc": site},
        pipetask={"characterizeImage": {"requestMemory": 3000}, "calibrate": {"requestMemory": 6000}},
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=slurm_nodes.env, timeout=400)
    assert result.returncode == 0, result.output
    _assert_complete(result.submit_dir)
    labels = {job.seq: job.label for job in jobs(result.submit_dir, kind=JobKind.QUANTUM)}
    with JobStateStore.open(result.submit_dir) as store:
        ran = {(labels[seq], executor) for seq, executor in store.last_executors() if seq in labels}
        attempts = store.attempts_of(list(labels))
    assert ran == {("isr", "small"), ("characterizeImage", "medium"), ("calibrate", "large")}
    # Exclusive blocks (theirs always are): one node per executor.
    hosts = {a[-1].executor: a[-1].host for a in attempts.values()}
    assert len(set(hosts.values())) == 3, hosts
    wait_for(lambda: slurm_nodes.job_ids() == [], "no Slurm job left", 60)
