"""``execution: in_process``: real ``bps submit`` runs with HighThroughput on this
machine (its node runner, fed by threads of bps submit).

Two runs, each shared by several tests (module-scoped): a clean run whose
executors are recycled every 2 quanta, and a run with one failing and one
crashing quantum.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS, QUANTA
from harness import (
    BpsResult,
    expected_outputs,
    job_states,
    jobs,
    registered_outputs,
    run_bps,
    run_record,
    write_bps_file,
)

from desc.gen3_workflow.reporting.outputs import output_counts
from desc.gen3_workflow.store.records import JobKind, JobRecord, JobState, RunState

HTEX = {"executor": "HighThroughput", "provider": "Local", "max_workers": 2, "execution": "in_process"}
_HEADER = re.compile(r"runner pid (\d+), executor pid (\d+) \(quanta run before this job: (\d+)")


def _submit(tmp: Path, template: Path, parsl_config: dict, **extra: str) -> BpsResult:
    repo = tmp / "repo"
    shutil.copytree(template, repo)
    bps_file = write_bps_file(tmp, str(repo), parsl_config, **extra)
    (tmp / "tmpdir").mkdir()
    return run_bps("submit", str(bps_file), cwd=tmp, env={"TMPDIR": str(tmp / "tmpdir")})


def _jobs(submit_dir: str) -> list[JobRecord]:
    return jobs(submit_dir, kind=JobKind.QUANTUM)


@pytest.fixture(scope="module")
def clean_run(demo_repo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> BpsResult:
    config = {**HTEX, "max_quanta_per_worker": 2}
    return _submit(tmp_path_factory.mktemp("in_process_clean"), demo_repo_template, config)


@pytest.fixture(scope="module")
def failing_run(demo_repo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> BpsResult:
    # isr of visit 1, detector 1 raises; calibrate of visit 2, detector 0
    # kills its own process with SIGKILL (a crash, as an OOM kill would).
    return _submit(
        tmp_path_factory.mktemp("in_process_failing"),
        demo_repo_template,
        {**HTEX, "retries": 1},
        extraQgraphOptions="-c isr:failOn=visit:1,detector:1 "
        "-c calibrate:failOn=visit:2,detector:0 -c calibrate:failExitSignal=9",
    )


def test_in_process_registers_what_process_mode_registers(clean_run: BpsResult) -> None:
    assert clean_run.returncode == 0, clean_run.output
    submit_dir = clean_run.submit_dir
    assert run_record(submit_dir).state == RunState.SUCCEEDED
    # The outputs a process-mode run registers (tests/test_submit_e2e.py) ...
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)
    # (by a final job fitted to the graph's size: one scanning process)
    assert " -j 1 --register-dataset-types" in Path(submit_dir, "final_job.bash").read_text()
    # The init and final jobs ran in forks of bps submit, not in new processes.
    for local in jobs(submit_dir, kind=JobKind.INIT) + jobs(submit_dir, kind=JobKind.FINAL):
        assert (local.state, local.exit_code) == (JobState.EXEC_DONE, 0), local.name
        assert Path(local.stderr).read_text().startswith("--> in-process execution follows <--\n")
    # ... and the task metadata and logs of every quantum, as run-qbb writes them.
    info = run_record(submit_dir).info
    assert info.butler_config and info.output_run
    counts = output_counts(info.butler_config, info.output_run)
    for label, n in QUANTA.items():
        assert counts[f"{label}_metadata"] == n and counts[f"{label}_log"] == n, label
    for job in _jobs(submit_dir):
        assert (job.state, job.attempts, job.exit_code) == (JobState.EXEC_DONE, 1, 0), job.name
        # Each job's own log files hold pipetask's log, in its --long-log format.
        stderr = Path(job.stderr).read_text()
        assert "run-qbb" in stderr and "Executed 1 quanta successfully" in stderr, job.name
        assert re.search(r"^INFO \d{4}-\d\d-\d\dT.* lsst\.pipe\.base\.single_quantum_executor", stderr, re.M)


def test_executors_are_recycled_after_max_quanta(clean_run: BpsResult) -> None:
    assert clean_run.returncode == 0, clean_run.output
    headers = [_HEADER.search(Path(job.stderr).read_text()) for job in _jobs(clean_run.submit_dir)]
    assert all(headers)
    runners = {int(h.group(1)) for h in headers if h}
    per_executor = Counter(int(h.group(2)) for h in headers if h)
    # max_workers 2: at most two long-lived runners, never the quantum's process.
    assert 1 <= len(runners) <= 2
    assert max(per_executor.values()) <= 2
    assert len(per_executor) >= sum(QUANTA.values()) // 2
    assert all(int(h.group(3)) < 2 for h in headers if h)
    # Each executor opens the QuantumGraph for its first job and keeps it
    # open for the next (not re-read through pipetask's command line).
    for job, header in zip(_jobs(clean_run.submit_dir), headers, strict=True):
        assert header is not None
        how = "opened by this executor" if header.group(3) == "0" else "held open by this executor"
        assert f"gen3_workflow in_process: QuantumGraph {how}" in Path(job.stderr).read_text(), job.name
    # Forked executors end with os._exit, so pipetask's own clean-up of its
    # datastore cache directory never runs: the runner shares one and removes
    # it (none left per quantum in the temporary directory).
    (tmpdir,) = [p / "tmpdir" for p in Path(clean_run.submit_dir).parents if (p / "tmpdir").is_dir()]
    assert not list(tmpdir.glob("butler-cache-dir-*"))


def test_failing_quantum_fails_only_it_and_its_descendants(failing_run: BpsResult) -> None:
    assert failing_run.returncode == 1, failing_run.output
    assert "2 job(s) failed" in failing_run.output
    by_id = {(j.label, j.data_id): j for j in _jobs(failing_run.submit_dir)}
    (isr,) = [j for (label, data_id), j in by_id.items() if label == "isr" and j.state == JobState.FAILED]
    assert '"visit":1' in isr.data_id and '"detector":1' in isr.data_id
    # It exits 1 as pipetask does, which ctrl_bps's retryUnlessExit [1, 2]
    # does not retry (retries: 1 notwithstanding).
    assert (isr.attempts, isr.exit_code) == (1, 1)
    assert isr.message == "exit code 1; not tried again: exit code 1 is not retried (retryUnlessExit)"
    assert "DemoTaskError" in Path(isr.stderr).read_text()
    states = job_states(failing_run.submit_dir)
    assert states["isr"][JobState.EXEC_DONE] == 3
    assert states["characterizeImage"][JobState.DEP_FAIL] == 1
    assert run_record(failing_run.submit_dir).state == RunState.FAILED
    # Everything not downstream of a failure ran and was registered.
    outputs = registered_outputs(failing_run.submit_dir)
    assert outputs["postISRCCD"] == 3 and outputs["calexp"] == 2
    assert outputs["visitSummary"] == 0 and outputs["objectTable"] == 0


def test_crashing_quantum_is_retried_and_reported(failing_run: BpsResult) -> None:
    (crashed,) = [
        j for j in _jobs(failing_run.submit_dir) if j.label == "calibrate" and j.state == JobState.FAILED
    ]
    assert '"visit":2' in crashed.data_id and '"detector":0' in crashed.data_id
    # Killed by SIGKILL: reported as a shell reports it (128 + 9), retried once.
    assert (crashed.attempts, crashed.exit_code) == (2, 137)
    assert "SIGKILL" in (crashed.message or "") or crashed.message == "exit code 137"
    assert Path(crashed.stderr).read_text().count("--> in-process execution follows <--") == 2
    states = job_states(failing_run.submit_dir)
    # Its visit's summary and the global table never ran; the other visit's did not either
    # (its isr failed), so both summaries are dep_fail.
    assert states["visitSummary"][JobState.DEP_FAIL] == 2
    assert states["globalTable"][JobState.DEP_FAIL] == 1
    failed_lines = [line for line in failing_run.output.splitlines() if "FAILED calibrate" in line]
    assert failed_lines and "137" in failed_lines[0]
