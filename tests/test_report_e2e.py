"""``bps report``, ``bps status`` and ``bps ping`` with the real CLI, on real runs.

Two runs of the demo DRP pipeline are made once for the module: one with a
failing isr quantum (characterizeImage held while the run is watched) and
one that succeeds.  Every command runs in a subprocess with the plug-in's
`ParslService` as installed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import DRP_LABELS as LABELS
from conftest import QUANTA
from harness import WORK_QUEUE_MISSING, BackgroundBps, BpsResult, run_bps, wait_for, write_bps_file

from desc.gen3_workflow.constants import SERVICE_CLASS

ALL_JOBS = {"pipetaskInit": 1, **QUANTA, "finalJob": 1}
STATES = ["UNKNOWN", "MISFIT", "UNREADY", "READY", "PENDING", "RUNNING"]
STATES += ["DELETED", "HELD", "SUCCEEDED", "FAILED", "PRUNED", "EXPECTED"]

SERVICES = [SERVICE_CLASS]


class Runs:
    """The module's two finished runs and what was seen while one ran."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.failed_dir = ""
        self.ok_dir = ""
        self.while_running: dict[str, BpsResult] = {}
        self.failed_output = ""
        """What the failing run's ``bps submit`` printed."""
        self.seconds: dict[str, float] = {}

    def bps(self, service: str, *args: str, env: dict[str, str] | None = None) -> BpsResult:
        """A bps command with the given service class, its log on the terminal
        (``bps ping`` and ``bps status`` say everything through the log)."""
        env = {**self.env, "BPS_WMS_SERVICE_CLASS": service, **(env or {})}
        return run_bps(*args, cwd=self.root, env=env, timeout=120, log_tty=True)


def _table(output: str) -> dict[str, dict[str, int]]:
    """The detailed report's job table: label (and TOTAL) -> column -> count."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["UNKNOWN", "MISFIT"])
    rows: dict[str, dict[str, int]] = {}
    for line in lines[start + 1 :]:
        words = line.split()
        if words and set(line.strip()) <= {"-", " "}:
            continue  # ctrl_bps draws a rule under the header and under TOTAL
        if len(words) != len(STATES) + 1 or not all(w.lstrip("-").isdigit() for w in words[1:]):
            break
        rows[words[0]] = dict(zip(STATES, map(int, words[1:]), strict=True))
    return rows


def _wait_for_running(runs: Runs, service: str, submit: BackgroundBps) -> tuple[str, BpsResult]:
    """The submit dir of the module's first run and a report that shows jobs running."""
    index = Path(runs.env["GEN3WF_RUN_INDEX"])
    submit_dir = wait_for(lambda: index.exists() and index.read_text().split()[0], lambda: submit.output)

    def report_with_running_jobs() -> BpsResult | None:
        result = runs.bps(service, "report", "--id", submit_dir)
        if "UNKNOWN" in result.output and _table(result.output)["TOTAL"]["RUNNING"] > 0:
            return result
        return None

    return submit_dir, wait_for(report_with_running_jobs, lambda: submit.output, period=0)


@pytest.fixture(scope="module")
def runs(demo_repo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Submit the failing (slow) run, watch it, then the successful one."""
    root = tmp_path_factory.mktemp("report_e2e")
    repo = root / "repo"
    shutil.copytree(demo_repo_template, repo)
    env = {"GEN3WF_RUN_INDEX": str(root / "index" / "runs.txt")}
    result = Runs(root, env)
    parsl_config = {"executor": "ThreadPool", "max_threads": 2}

    start = time.monotonic()
    # characterizeImage holds while `hold` exists: the run is still going when
    # the (slow, on a loaded machine) bps commands below look at it.
    hold = root / "hold"
    hold.touch()
    failing = write_bps_file(
        root,
        str(repo),
        parsl_config,
        payload_name="failing",
        extraQgraphOptions=(
            "-c isr:failOn=visit:1,detector:1 -c characterizeImage:sleep=300 "
            f"-c characterizeImage:onlyWhileExists={hold}"
        ),
    )
    with BackgroundBps(root, failing, env) as submit:
        result.failed_dir, shown = _wait_for_running(result, SERVICES[0], submit)
        result.while_running["first report --id"] = shown
        for i, service in enumerate(SERVICES):
            result.while_running[f"{i} status"] = result.bps(service, "status", "--id", result.failed_dir)
            result.while_running[f"{i} report"] = result.bps(service, "report")
        result.while_running["service report --id"] = result.bps(
            SERVICES[0], "report", "--id", result.failed_dir
        )
        hold.unlink()
        assert submit.wait(timeout=300) == 1, submit.output
        result.failed_output = submit.output
    result.seconds["failing submit"] = time.monotonic() - start

    start = time.monotonic()
    ok = run_bps("submit", str(write_bps_file(root, str(repo), parsl_config)), cwd=root, env=env)
    assert ok.returncode == 0, ok.output
    result.ok_dir = ok.submit_dir
    result.seconds["successful submit"] = time.monotonic() - start
    return result


def test_report_while_the_run_goes(runs: Runs) -> None:
    seen = runs.while_running
    # Polled until a job ran; the counts always add up to the whole graph.
    table = _table(seen["first report --id"].output)
    assert table["TOTAL"]["RUNNING"] > 0
    assert table["TOTAL"]["EXPECTED"] == sum(ALL_JOBS.values())
    assert "job(s) running:" in seen["first report --id"].output
    service_table = _table(seen["service report --id"].output)
    assert sum(service_table["TOTAL"][s] for s in STATES[:-1]) == sum(ALL_JOBS.values())
    for i in range(len(SERVICES)):
        assert seen[f"{i} status"].returncode == 15, seen[f"{i} status"].output  # RUNNING
        line = next(line for line in seen[f"{i} report"].output.splitlines() if runs.failed_dir in line)
        assert line.split()[0] in ("RUNNING", "F"), line  # F flags a failure while it runs


@pytest.mark.parametrize("service", SERVICES)
def test_summary_report_lists_both_runs(runs: Runs, service: str) -> None:
    result = runs.bps(service, "report", "--hist", "1")
    assert result.returncode == 0, result.output
    lines = {
        d: next(line for line in result.output.splitlines() if d in line)
        for d in (runs.ok_dir, runs.failed_dir)
    }
    assert lines[runs.ok_dir].split()[:2] == ["SUCCEEDED", "100"]
    # 12 of 17 jobs succeeded: 1 isr failed and 4 jobs depended on it.
    assert lines[runs.failed_dir].split()[:2] == ["FAILED", str(int(12 / 17 * 100))]
    for line in lines.values():
        assert "tester" in line.split()
    nobody = runs.bps(service, "report", "--hist", "1", "--user", "nobody")
    assert runs.ok_dir not in nobody.output and runs.failed_dir not in nobody.output


@pytest.mark.parametrize("service", SERVICES)
def test_detailed_report_of_the_successful_run(runs: Runs, service: str) -> None:
    result = runs.bps(service, "report", "--id", runs.ok_dir)
    assert result.returncode == 0, result.output
    table = _table(result.output)
    assert {label: row["SUCCEEDED"] for label, row in table.items() if label != "TOTAL"} == ALL_JOBS
    assert {label: row["EXPECTED"] for label, row in table.items() if label != "TOTAL"} == ALL_JOBS
    assert table["TOTAL"]["SUCCEEDED"] == sum(ALL_JOBS.values()) == 17
    assert f"Path: {runs.ok_dir}" in result.output


@pytest.mark.parametrize("service", SERVICES)
def test_detailed_report_of_the_failed_run(runs: Runs, service: str) -> None:
    result = runs.bps(service, "report", "--id", runs.failed_dir, "--return-exit-codes")
    assert result.returncode == 0, result.output
    table = _table(result.output)
    assert table["isr"]["FAILED"] == 1 and table["isr"]["SUCCEEDED"] == QUANTA["isr"] - 1
    assert [table[label]["PRUNED"] for label in LABELS] == [0, 1, 1, 1, 1]
    for label in ALL_JOBS:
        assert sum(table[label][s] for s in STATES[:-1]) == table[label]["EXPECTED"] == ALL_JOBS[label]
    # The failed job: label, data ID and log file, which holds the task's error.
    log_line = next(line for line in result.output.splitlines() if "/logs/isr/" in line)
    assert "isr" in log_line.split("/logs/")[0]
    assert re.search(r"detector\W+1\b", log_line) and re.search(r"visit\W+1\b", log_line), log_line
    assert f", on host {socket.gethostname()}; log: " in log_line, log_line  # where it ran
    log = re.search(r"(/\S+/logs/isr/\S+\.stderr)", log_line)
    assert log and "DemoTaskError" in Path(log.group(1)).read_text()
    # Exit codes: isr's pipetask exited 1, a payload error.
    exit_row = next(line for line in result.output.splitlines() if line.startswith("isr ") and "None" in line)
    assert exit_row.split()[1:3] == ["1", "1"], exit_row


def test_the_failure_summary_of_bps_submit(runs: Runs) -> None:
    """What ``bps submit`` prints at the end of a failed run: the failed job,
    where it ran, and its error."""
    lines = runs.failed_output.splitlines()
    failed = next(line for line in lines if "FAILED isr" in line)
    assert re.search(r"detector\W+1\b", failed) and re.search(r"visit\W+1\b", failed), failed
    assert f", on host {socket.gethostname()}; log: " in failed, failed
    assert "DemoTaskError" in lines[lines.index(failed) + 1]  # "error: ..." from its log


@pytest.mark.parametrize("service", SERVICES)
def test_status_exit_codes(runs: Runs, service: str) -> None:
    assert runs.bps(service, "status", "--id", runs.ok_dir).returncode == 0
    assert runs.bps(service, "status", "--id", runs.failed_dir).returncode == 19
    assert runs.bps(service, "status", "--id", str(runs.root / "no_such_run")).returncode == 10


def _ping_file(root: Path, name: str, parsl_config: dict[str, Any]) -> str:
    path = root / f"{name}.yaml"
    path.write_text("parsl_config:\n" + "".join(f"  {k}: {v}\n" for k, v in parsl_config.items()))
    return str(path)


@pytest.mark.parametrize("service", SERVICES)
def test_ping(runs: Runs, service: str, tmp_path: Path) -> None:
    default = runs.bps(service, "ping")
    assert default.returncode == 0, default.output
    assert "ok   parsl" in default.output and "Ping successful" in default.output

    # Only this venv's bin on PATH: no work_queue_worker, no sbatch.
    bare = {"PATH": os.path.join(sys.prefix, "bin")}
    work_queue = _ping_file(tmp_path, "wq", {"executor": "WorkQueue"})
    failed = runs.bps(service, "ping", "--pass-thru", work_queue, env=bare)
    assert failed.returncode != 0, failed.output
    if WORK_QUEUE_MISSING is None:
        assert "FAIL Work Queue: work_queue_worker is not on PATH" in failed.output
    else:
        assert "FAIL Work Queue: parsl_config.executor: WorkQueue cannot run here" in failed.output
    slurm = _ping_file(tmp_path, "slurm", {"executor": "HighThroughput", "provider": "Slurm"})
    failed = runs.bps(service, "ping", "--pass-thru", slurm, env=bare)
    assert failed.returncode != 0 and "FAIL Slurm: sbatch is not on PATH" in failed.output, failed.output


def test_timings(runs: Runs) -> None:
    """Not a check: the figures, for the record (pytest -s)."""
    print({k: round(v, 1) for k, v in runs.seconds.items()})
