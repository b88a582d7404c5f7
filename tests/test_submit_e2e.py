"""End-to-end ``bps submit`` with the real CLI, butler, parsl executors and workers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS, SFP_LABELS
from harness import (
    expected_outputs,
    job_states,
    jobs,
    pids_matching,
    registered_outputs,
    requires_work_queue,
    run_bps,
    run_processes,
    run_record,
    write_bps_file,
)

from desc.gen3_workflow.constants import SERVICE_VARIABLE
from desc.gen3_workflow.store.records import JobState, RunState


def _assert_complete(submit_dir: str, labels: list[str]) -> None:
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, labels)
    for label, by_state in job_states(submit_dir).items():
        assert by_state[JobState.EXEC_DONE] == sum(by_state.values()), label
    assert run_record(submit_dir).state == RunState.SUCCEEDED


def test_thread_pool_runs_the_whole_pipeline(demo_repo: str, tmp_path: Path) -> None:
    # The bps file shipped for a laptop, as it is.
    bps_file = Path(__file__).resolve().parents[1] / "config" / "bps_laptop.yaml"
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env={"GEN3WF_DEMO_REPO": demo_repo})
    assert result.returncode == 0, result.output
    _assert_complete(result.submit_dir, DRP_LABELS)
    # parsl's own log is in the submit directory, not on the terminal.
    assert os.path.getsize(os.path.join(result.submit_dir, "parsl.log")) > 0
    assert "parsl.dataflow" not in result.output


@requires_work_queue
def test_work_queue_with_local_workers(demo_repo: str, tmp_path: Path) -> None:
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {
            "executor": "WorkQueue",
            "provider": "Local",
            "worker_options": "--memory=4000",
            "retries": 1,
            "monitoring": True,
        },
    )
    workers_before = pids_matching("work_queue_worker")
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 0, result.output
    _assert_complete(result.submit_dir, DRP_LABELS)
    # Nothing the run started printed a traceback on its way out (multiprocessing's
    # resource tracker did, when the plug-in stopped it with parsl's processes).
    assert "Traceback" not in result.output, result.output
    assert pids_matching("work_queue_worker") <= workers_before, "Work Queue workers left running"
    # parsl monitoring ran beside the plug-in's own store, its database in the submit directory.
    assert os.path.getsize(os.path.join(result.submit_dir, "monitoring.db")) > 0


def test_failing_quantum_fails_the_run_and_keeps_the_rest(demo_repo: str, tmp_path: Path) -> None:
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "ThreadPool", "max_threads": 2, "retries": 2},
        extraQgraphOptions="-c isr:failOn=visit:1,detector:1",
        # ctrl_bps's default [1, 2] would not retry a raising task at all.
        retryUnlessExit=[],
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 1, result.output
    assert "1 job(s) failed" in result.output
    failed_line = next(line for line in result.output.splitlines() if "FAILED isr" in line)
    assert '"detector":1' in failed_line and '"visit":1' in failed_line
    log_path = failed_line.rsplit("log: ", 1)[1].strip()
    assert "DemoTaskError" in Path(log_path).read_text()
    # The payload's own error, under the job's line: not only "exit code 1".
    error_line = result.output.splitlines()[result.output.splitlines().index(failed_line) + 1]
    assert error_line.startswith("    error: Execution of task 'isr' on quantum"), error_line
    assert "Exception DemoTaskError: Simulated failure" in error_line

    # retries: 2 means three attempts (retryUnlessExit allowing), recorded with the exit code.
    (failed,) = jobs(result.submit_dir, states=[JobState.FAILED])
    assert (failed.label, failed.attempts, failed.exit_code) == ("isr", 3, 1)

    states = job_states(result.submit_dir)
    assert states["isr"][JobState.FAILED] == 1
    assert states["isr"][JobState.EXEC_DONE] == 3
    # Downstream of the failed isr: its characterizeImage and calibrate, the
    # visit's summary, and the global table.
    assert [states[label][JobState.DEP_FAIL] for label in DRP_LABELS] == [0, 1, 1, 1, 1]
    assert run_record(result.submit_dir).state == RunState.FAILED

    # The final job still registered everything that succeeded.
    outputs = registered_outputs(result.submit_dir)
    assert outputs["postISRCCD"] == 3
    assert outputs["calexp"] == 3
    assert outputs["visitSummary"] == 1
    assert outputs["objectTable"] == 0


def test_failing_final_job_fails_the_run(demo_repo: str, tmp_path: Path) -> None:
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "ThreadPool"},
        pipeline="demo_sfp",
        extraAggregateOptions="--no-such-option",
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path)
    assert result.returncode == 1, result.output
    assert "FAILED finalJob" in result.output
    assert run_record(result.submit_dir).state == RunState.FAILED
    # Every quantum ran, but nothing was registered.
    assert job_states(result.submit_dir)["calibrate"][JobState.EXEC_DONE] == N_VISITS * N_DETECTORS
    assert sum(registered_outputs(result.submit_dir).values()) == 0


@pytest.mark.parametrize(
    ("parsl_config", "message"),
    [
        ({"executor": "Dask"}, "parsl_config.executor: unknown value 'Dask'; allowed: ThreadPool, WorkQueue"),
        ({"provider": "PBS"}, "parsl_config.provider: unknown value 'PBS'; allowed: Local, Slurm"),
        ({"max_thread": 2}, "parsl_config.max_thread: unknown key (did you mean 'max_threads'?)"),
        ({"max_threads": "four"}, "parsl_config.max_threads: expected an integer, got 'four'"),
        ({"retries": -1}, "parsl_config.retries: must be an integer >= 0, got -1"),
        (
            {"executor": "WorkQueue", "worker_options": "--memory=4000; touch /tmp/pwned"},
            "parsl_config.worker_options: '--memory=4000; touch /tmp/pwned' is not a list of "
            "work_queue_worker options",
        ),
        (
            {"executor": "WorkQueue", "worker_options": "--memory=4000 --password mine"},
            "parsl_config.worker_options: leave out --password/-P; every run gives its workers a password",
        ),
        (  # the walkthrough's set-up outside an allocation: srun would never start a worker
            {"executor": "HighThroughput", "execution": "process", "nodes_per_block": 3},
            "parsl_config.nodes_per_block: 3 with provider Local starts workers with srun, which needs a "
            "Slurm allocation (SLURM_JOB_ID is not set)",
        ),
    ],
)
def test_bad_parsl_config_stops_before_any_work(
    demo_repo: str, tmp_path: Path, parsl_config: dict, message: str
) -> None:
    bps_file = write_bps_file(tmp_path, demo_repo, parsl_config)
    result = run_bps("submit", str(bps_file), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    # Stopped before the QuantumGraph was built, so no run was prepared.
    assert not list(tmp_path.glob("submit/**/*.qg"))
    assert not list(tmp_path.glob("submit/**/gen3_workflow.sqlite3"))


def test_what_this_plugin_cannot_run_stops_before_any_work(demo_repo: str, tmp_path: Path) -> None:
    """WorkQueue on a Python without Work Queue bindings, and ctrl_bps's
    batch submission: one line each, exit 2, no QuantumGraph built."""
    # Bindings that cannot be imported, whatever this Python has.
    fake = tmp_path / "no_bindings"
    (fake / "ndcctools").mkdir(parents=True)
    (fake / "ndcctools" / "__init__.py").write_text("raise ImportError('no Work Queue here (test)')\n")
    (fake / "work_queue.py").write_text("raise ImportError('no Work Queue here (test)')\n")
    cases = [
        (
            tmp_path / "wq",
            {"executor": "WorkQueue"},
            {},
            {"PYTHONPATH": os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")]))},
            "parsl_config.executor: WorkQueue cannot run here: no Work Queue Python bindings for this "
            "interpreter",
        ),
        (
            tmp_path / "batch",
            {"executor": "ThreadPool"},
            {"bpsBatchSubmission": True},
            {},
            "bpsBatchSubmission: true is not supported by gen3_workflow",
        ),
    ]
    for cwd, parsl_config, extra, env, message in cases:
        cwd.mkdir()
        bps_file = write_bps_file(cwd, demo_repo, parsl_config, **extra)
        result = run_bps("submit", str(bps_file), cwd=cwd, env=env, timeout=120)
        assert result.returncode == 2, result.output
        assert message in result.output and "Traceback" not in result.output
        assert "use executor ThreadPool or HighThroughput instead" in result.output or "batch" in cwd.name
        assert not list(cwd.glob("submit/**/*.qg"))
        assert not list(cwd.glob("submit/**/gen3_workflow.sqlite3"))


def test_high_throughput_on_slurm(demo_repo: str, tmp_path: Path, slurm_cluster) -> None:
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {
            "executor": "HighThroughput",
            "provider": "Slurm",
            "partition": slurm_cluster.partition,
            "exclusive": False,
            "walltime": "00:20:00",
            "max_workers": 2,
        },
        pipeline="demo_sfp",
    )
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=slurm_cluster.env)
    assert result.returncode == 0, result.output
    _assert_complete(result.submit_dir, SFP_LABELS)
    # The block ran as a Slurm job and is gone once bps submit returns.
    assert slurm_cluster.job_ids() == []
    assert run_processes(result.submit_dir, SERVICE_VARIABLE) == [], "parsl workers left running"
    # The workers logged, without parsl's three lines per task.
    worker_logs = list(Path(result.submit_dir, "parsl_runinfo").glob("htex_workers/**/worker_*.log"))
    assert worker_logs, "no HighThroughput worker log"
    for log in worker_logs:
        text = log.read_text()
        assert " started" in text and "executor task" not in text, text
    # parsl's encryption stayed on: the interchange made its CurveZMQ keys in a
    # private directory and the block's workers were pointed at them.
    certificates = list(Path(result.submit_dir, "parsl_runinfo").glob("**/certificates"))
    assert certificates and all(stat.S_IMODE(c.stat().st_mode) == 0o700 for c in certificates)
    scripts = [p.read_text() for p in Path(result.submit_dir, "parsl_runinfo").glob("**/submit_scripts/*")]
    pools = [s for s in scripts if "process_worker_pool" in s]
    assert pools and all(f"--cert_dir {certificates[0]}" in s for s in pools), scripts


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("evil_payload", "payloadName: 'x; touch {marker}' cannot be used in collection names and paths"),
        ("backticks", "payloadName: 'x`touch {marker}`' cannot be used in collection names and paths"),
        ("subshell", "payloadName: 'x$(touch {marker})' cannot be used in collection names and paths"),
        ("unwritable_submit", "submitPath: cannot create"),
        ("missing_pipeline", "pipelineYaml: no such file"),
        ("missing_repo", "butlerConfig: no butler repository at"),
    ],
)
def test_bad_input_stops_before_any_work(demo_repo: str, tmp_path: Path, case: str, message: str) -> None:
    marker = tmp_path / "pwned"
    bps_file = write_bps_file(
        tmp_path,
        str(tmp_path / "no_repo") if case == "missing_repo" else demo_repo,
        {"executor": "ThreadPool"},
        pipeline="no_such_pipeline" if case == "missing_pipeline" else "demo_sfp",
        payload_name={
            "evil_payload": f"x; touch {marker}",
            "backticks": f"x`touch {marker}`",
            "subshell": f"x$(touch {marker})",
        }.get(case, "e2e"),
        # A regular file where a directory should be: not writable even as root.
        **({"submitPath": str(tmp_path / "a_file" / "submit")} if case == "unwritable_submit" else {}),
    )
    (tmp_path / "a_file").write_text("")
    result = run_bps("submit", str(bps_file), cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.output
    assert message.format(marker=marker) in result.output
    assert "Traceback" not in result.output
    assert not marker.exists()
    assert not (tmp_path / "submit").exists()


@requires_work_queue
def test_work_queue_workers_in_slurm_blocks(demo_repo: str, tmp_path: Path, slurm_cluster) -> None:
    """The seed's NERSC set-up: Work Queue workers started inside Slurm jobs."""
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {
            "executor": "WorkQueue",
            "provider": "Slurm",
            "partition": slurm_cluster.partition,
            "exclusive": False,
            "walltime": "00:20:00",
            "worker_options": "--memory=4000",
        },
        pipeline="demo_sfp",
    )
    workers_before = pids_matching("work_queue_worker")
    result = run_bps("submit", str(bps_file), cwd=tmp_path, env=slurm_cluster.env)
    assert result.returncode == 0, result.output
    _assert_complete(result.submit_dir, SFP_LABELS)
    assert slurm_cluster.job_ids() == []
    assert pids_matching("work_queue_worker") <= workers_before, "Work Queue workers left running"
