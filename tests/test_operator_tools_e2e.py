"""The operator tools on real runs of the demo DRP pipeline with the real CLI.

Two runs are made once for the module, at the same time (ThreadPool, two
threads each): one with a failing isr quantum and progress reports every
second, watched by ``gen3wf-watch`` from its start to its end; and one that
succeeds, with ``progress: false`` and parsl monitoring on.  Every command
shown in doc/user_guide.md for progress, summaries and plots is run here as
installed (``workflow_summary``, ``plot_jobs_history``, ``gen3wf-watch``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DRP_LABELS, QUANTA
from harness import (
    OUTPUTS_PER_QUANTUM,
    BackgroundBps,
    job_states,
    registered_outputs,
    wait_for,
    write_bps_file,
)

from desc.gen3_workflow.reporting.history import MEASURED
from desc.gen3_workflow.store.records import JobState

BIN = Path(sys.prefix) / "bin"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_LABELS = ["pipetaskInit", *DRP_LABELS, "finalJob"]


class Run(BackgroundBps):
    """A ``bps submit`` running in the background, and how it ended."""

    returncode: int | None = None

    def finish(self, timeout: float) -> None:
        """Wait for the end."""
        self.returncode = self.wait(timeout)


def tool(name: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one of the installed console scripts."""
    return subprocess.run(
        [str(BIN / name), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Runs:
    """The module's two finished runs, and what gen3wf-watch said meanwhile."""

    failed: Run
    ok: Run
    ok_root: Path
    watch: subprocess.CompletedProcess[str]
    seconds: float


def _start(
    root: Path, repo_template: Path, name: str, parsl_config: dict, user_area: bool = False, **extra: str
) -> Run:
    root.mkdir()
    shutil.copytree(repo_template, root / "repo")
    if user_area:
        # The guide's user area: outputs under the repository's u/<user_name>
        # land in a directory of the user's own.
        (root / "tester").mkdir()
        (root / "repo" / "u").mkdir(exist_ok=True)
        os.symlink(root / "tester", root / "repo" / "u" / "tester")
    bps_file = write_bps_file(root, str(root / "repo"), parsl_config, payload_name=name, **extra)
    return Run(root, bps_file, {"GEN3WF_RUN_INDEX": str(root / "runs.txt")})


@pytest.fixture(scope="module")
def runs(demo_repo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("operator_tools")
    start = time.monotonic()
    result = Runs()
    result.failed = _start(
        root / "failing",
        demo_repo_template,
        "failing",
        {"executor": "ThreadPool", "max_threads": 2, "progress_interval": 1},
        extraQgraphOptions="-c isr:failOn=visit:1,detector:1",
    )
    result.ok = _start(
        root / "ok",
        demo_repo_template,
        "ok",
        {"executor": "ThreadPool", "max_threads": 2, "progress": False, "monitoring": True},
        user_area=True,
    )
    result.ok_root = root / "ok"
    # Watch the failing run from another process as soon as it is planned.
    index = root / "failing" / "runs.txt"

    def planned() -> str | None:
        assert result.failed.proc.poll() is None, result.failed.output
        return index.exists() and index.read_text().strip()

    wait_for(planned, lambda: result.failed.output, timeout=300, period=0.2)
    watch = subprocess.Popen(
        [str(BIN / "gen3wf-watch"), "--interval", "2", index.read_text().split()[0]],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        result.failed.finish(timeout=400)
        result.ok.finish(timeout=400)
        out, _ = watch.communicate(timeout=60)
    finally:
        result.failed.__exit__()
        result.ok.__exit__()
        if watch.poll() is None:
            watch.kill()
            out, _ = watch.communicate()
    result.watch = subprocess.CompletedProcess(watch.args, watch.returncode, out, "")
    result.seconds = time.monotonic() - start
    assert result.failed.returncode == 1, result.failed.output
    assert result.ok.returncode == 0, result.ok.output
    return result


def _progress_tables(output: str) -> list[dict[str, list[int]]]:
    """Every progress report in some output: label -> the numbers of its row."""
    tables: list[dict[str, list[int]]] = []
    for line in output.splitlines():
        if line.startswith("Progress "):
            tables.append({})
        elif tables and line.startswith("  ") and line.split()[0] in DRP_LABELS:
            words = line.split()
            tables[-1][words[0]] = [int(w) for w in words[1:8]]
    return tables


def test_progress_lines_in_submit_output(runs: Runs) -> None:
    # Not a terminal: a report when the jobs start, one a second (progress_interval: 1)
    # while they run, then the last one.  How many fall in between depends on how fast
    # this machine runs 15 quanta, so only the first and last are certain.
    tables = _progress_tables(runs.failed.output)
    assert len(tables) >= 2, runs.failed.output
    assert tables[0] != tables[-1], runs.failed.output  # the first report is made while jobs run
    assert sum(row[0] for row in tables[0].values()) < 10
    assert all(list(table) == DRP_LABELS for table in tables)
    # done, failed, dep_fail, running, queued, pending, total: always the whole graph.
    assert all(row[6] == QUANTA[label] == sum(row[:6]) for t in tables for label, row in t.items())
    last_header = [line for line in runs.failed.output.splitlines() if line.startswith("Progress ")][-1]
    assert "15/15 quanta finished (100%): 10 done, 1 failed, 4 dep_fail, 0 running" in last_header
    assert tables[-1]["isr"][:3] == [3, 1, 0]
    assert re.search(r"\d+\.\d/min, ETA 0s$", last_header), last_header
    # The progress reports come before bps's failure report.
    assert runs.failed.output.index("Progress ") < runs.failed.output.index("did not succeed")
    # progress: false
    assert "Progress " not in runs.ok.output and "quanta finished" not in runs.ok.output


def test_watch_follows_the_run_to_its_end(runs: Runs) -> None:
    assert runs.watch.returncode == 1, runs.watch.stdout  # the run failed
    out = runs.watch.stdout
    assert "Run u_tester_failing_" in out and runs.failed.submit_dir in out
    assert out.rstrip().endswith("Run ended: failed"), out
    tables = _progress_tables(out)
    assert tables and tables[-1]["isr"][:3] == [3, 1, 0] and tables[-1]["globalTable"][2] == 1


@pytest.mark.parametrize("which", ["failed", "ok"])
def test_watch_once(runs: Runs, which: str) -> None:
    run: Run = getattr(runs, which)
    result = tool("gen3wf-watch", "--once", run.submit_dir)
    # A run that ended without succeeding says so by its status, as bps status does.
    assert result.returncode == (1 if which == "failed" else 0), result.stderr
    (table,) = _progress_tables(result.stdout)
    states = job_states(run.submit_dir)
    order = [JobState.EXEC_DONE, JobState.FAILED, JobState.DEP_FAIL, JobState.RUNNING]
    order += [JobState.LAUNCHED, JobState.PENDING]
    assert table == {label: [states[label][s] for s in order] + [QUANTA[label]] for label in DRP_LABELS}


@pytest.mark.parametrize("which", ["failed", "ok"])
def test_summary_matches_store_and_butler(runs: Runs, which: str) -> None:
    run: Run = getattr(runs, which)
    result = tool("workflow_summary", "--json", run.submit_dir)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary["labels"]) == ALL_LABELS
    states = job_states(run.submit_dir)
    outputs = registered_outputs(run.submit_dir)
    for label in DRP_LABELS:
        row = summary["labels"][label]
        assert row["counts"] == {s.value: n for s, n in states[label].items()}, label
        assert row["total"] == QUANTA[label]
        # What succeeded is what the final job registered.
        for dataset_type in OUTPUTS_PER_QUANTUM[label]:
            assert outputs[dataset_type] == row["counts"]["exec_done"], (label, dataset_type)
        if row["counts"]["exec_done"]:
            assert row["wall_time_total"] > 0 and 0 < row["wall_time_mean"] <= row["wall_time_total"]
            # Measured by the plug-in (parsl's monitoring never measures
            # ThreadPool tasks): the quanta's CPU time, and a peak memory
            # of at least the middleware a quantum runs.
            assert 0 < row["cpu_time_mean"] <= row["cpu_time_total"], label
            assert 50 < row["peak_memory_mb"] < 4000, label
    assert summary["labels"]["finalJob"]["counts"]["exec_done"] == 1
    assert summary["run"]["state"] == ("failed" if which == "failed" else "succeeded")
    walls = [job["wall_time"] for job in summary["slowest"]]
    assert len(walls) == 5 and walls == sorted(walls, reverse=True)
    assert summary["resources"] == MEASURED
    # Every job that ran, ran here: the quanta, and the jobs bps submit runs itself.
    ran = summary["totals"]["exec_done"] + summary["totals"]["failed"]
    assert summary["hosts"] == {socket.gethostname(): ran}, summary["hosts"]
    # The jobs bps submit runs itself are measured too (CPU time at least).
    for label in ("pipetaskInit", "finalJob"):
        assert summary["labels"][label]["cpu_time_total"] > 0, label
    assert all(job["cpu_time"] is not None for job in summary["slowest"] if job["label"] in DRP_LABELS)

    text = tool("workflow_summary", run.submit_dir)
    assert text.returncode == 0, text.stderr
    for label in DRP_LABELS:
        row = next(line for line in text.stdout.splitlines() if line.split()[:1] == [label])
        assert [int(w) for w in row.split()[1:8]] == [*states[label].values(), QUANTA[label]]
    assert "Slowest jobs (5):" in text.stdout
    assert f"CPU time and peak memory: {MEASURED}" in text.stdout
    assert f"Hosts (jobs run): {socket.gethostname()} {ran}\n" in text.stdout


def test_summary_lists_the_failure(runs: Runs) -> None:
    summary = json.loads(tool("workflow_summary", "--json", runs.failed.submit_dir).stdout)
    (failure,) = summary["failures"]
    assert failure["label"] == "isr" and failure["exit_code"] == 1 and failure["attempts"] == 1
    assert failure["host"] == socket.gethostname()
    assert '"detector":1' in failure["data_id"] and '"visit":1' in failure["data_id"]
    assert "DemoTaskError" in Path(failure["log"]).read_text()
    text = tool("workflow_summary", runs.failed.submit_dir).stdout
    assert "Failed jobs (1):" in text
    # Exit code 1 is in ctrl_bps's retryUnlessExit: one attempt, and it says why.
    assert "exit code 1; not tried again: exit code 1 is not retried (retryUnlessExit)" in text
    assert f"(retryUnlessExit), on host {socket.gethostname()}, attempts 1; log: {failure['log']}" in text
    ok = tool("workflow_summary", runs.ok.submit_dir).stdout
    assert "Failed jobs: none" in ok


@pytest.mark.parametrize("which", ["failed", "ok"])
def test_plot_jobs_history(runs: Runs, which: str, tmp_path: Path) -> None:
    run: Run = getattr(runs, which)
    output = tmp_path / "history.png"
    result = tool("plot_jobs_history", run.submit_dir, "-o", str(output))
    assert result.returncode == 0, result.stderr
    assert f"Wrote {output} (17 jobs" in result.stdout
    assert output.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image

    height, width = matplotlib.image.imread(str(output)).shape[:2]
    assert width == 1200 and 900 <= height <= 1600, (width, height)
    # Default: into the submit directory.
    default = tool("plot_jobs_history", run.submit_dir)
    assert default.returncode == 0, default.stderr
    assert (Path(run.submit_dir) / "jobs_history.png").read_bytes()[:8] == PNG_MAGIC


def test_user_area_and_query_collections(runs: Runs) -> None:
    run_name = json.loads(tool("workflow_summary", "--json", runs.ok.submit_dir).stdout)["run"]["name"]
    assert run_name.startswith("u_tester_ok_")
    written = list((runs.ok_root / "tester" / "ok").glob("*/postISRCCD/**/*.*"))
    assert len(written) == QUANTA["isr"], list((runs.ok_root / "tester").rglob("*"))[:20]
    result = subprocess.run(
        [str(BIN / "butler"), "query-collections", str(runs.ok_root / "repo"), "--chains", "tree"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "DemoCam/defaults" in result.stdout and "CHAINED" in result.stdout
    assert re.search(r"^u/tester/ok/\d{8}T\d{6}Z\s+RUN", result.stdout, re.MULTILINE), result.stdout


def test_timings(runs: Runs) -> None:
    """Not a check: the figure, for the record (pytest -s)."""
    print(f"two concurrent submissions: {runs.seconds:.1f} s")
