"""Helpers for end-to-end tests: bps files, real ``bps`` runs, butler counts."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from desc.gen3_workflow.run_summary import output_counts
from desc.gen3_workflow.state_store import JobState, JobStateStore

PIPELINES = Path(__file__).resolve().parents[1] / "config" / "pipelines"
BPS = str(Path(sys.prefix) / "bin" / "bps")

# Datasets one quantum of each demo task writes (besides metadata and logs).
OUTPUTS_PER_QUANTUM = {
    "isr": ["postISRCCD"],
    "characterizeImage": ["icExp", "icSrc"],
    "calibrate": ["calexp", "src"],
    "visitSummary": ["visitSummary"],
    "globalTable": ["objectTable"],
}


def quanta_per_label(n_visits: int, n_detectors: int) -> dict[str, int]:
    """Quanta of each demo task, in pipeline order, for a repository size."""
    return {
        "isr": n_visits * n_detectors,
        "characterizeImage": n_visits * n_detectors,
        "calibrate": n_visits * n_detectors,
        "visitSummary": n_visits,
        "globalTable": 1,
    }


def expected_outputs(n_visits: int, n_detectors: int, labels: list[str]) -> Counter[str]:
    """Output dataset counts of a complete run of the demo pipeline."""
    quanta = quanta_per_label(n_visits, n_detectors)
    counts: Counter[str] = Counter()
    for label in labels:
        for dataset_type in OUTPUTS_PER_QUANTUM[label]:
            counts[dataset_type] += quanta[label]
    return counts


def write_bps_file(
    directory: Path,
    repo: str,
    parsl_config: dict[str, Any] | None,
    pipeline: str = "demo_drp",
    payload_name: str = "e2e",
    **extra: Any,
) -> Path:
    """A bps file for the demo pipeline on ``repo``; ``extra`` adds
    top-level keys (``finalJob``, ``extraQgraphOptions``, ...)."""
    content: dict[str, Any] = {
        "wmsServiceClass": "desc.gen3_workflow.ParslService",
        "pipelineYaml": str(PIPELINES / f"{pipeline}.yaml"),
        "operator": "tester",
        "payload": {
            "payloadName": payload_name,
            "butlerConfig": repo,
            "inCollection": "DemoCam/defaults",
            "dataQuery": "instrument = 'DemoCam'",
        },
        **extra,
    }
    if parsl_config is not None:
        content["parsl_config"] = parsl_config
    path = directory / "bps.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


@dataclasses.dataclass
class BpsResult:
    """A finished ``bps`` command."""

    returncode: int
    output: str

    @property
    def submit_dir(self) -> str:
        """The submit directory bps printed."""
        match = re.search(r"^Submit dir: (.+)$", self.output, re.MULTILINE)
        assert match, f"no submit dir in bps output:\n{self.output}"
        return match.group(1).strip()


def run_bps(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> BpsResult:
    """Run the real ``bps`` CLI in a subprocess."""
    proc = subprocess.run(
        [BPS, "--no-log-tty", *args],
        cwd=cwd,
        # ctrl_bps's submitPath is ${PWD}/submit/...: PWD must follow cwd.
        env={**os.environ, "PWD": str(cwd), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    return BpsResult(proc.returncode, proc.stdout)


def submit_in_background(
    tmp_path: Path, bps_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``bps submit`` without waiting; its output goes to ``tmp_path/submit.log``."""
    log = open(tmp_path / "submit.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        [BPS, "--no-log-tty", "submit", str(bps_file)],
        cwd=tmp_path,
        env={**os.environ, "PWD": str(tmp_path), **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def run_info(submit_dir: str) -> dict[str, Any]:
    """The run row of a submit directory's job-state store."""
    store = JobStateStore.in_dir(submit_dir)
    try:
        return store.run_info()
    finally:
        store.close()


def job_states(submit_dir: str) -> dict[str, dict[JobState, int]]:
    """Job counts per label and state from the store."""
    store = JobStateStore.in_dir(submit_dir)
    try:
        return store.counts()
    finally:
        store.close()


def registered_outputs(submit_dir: str) -> Counter[str]:
    """Datasets registered in the run's output collection, by type, leaving
    out task metadata, logs and configs (counted separately by the butler)."""
    info = run_info(submit_dir)["info"]
    counts = output_counts(info["butlerConfig"], info["outputRun"])
    return Counter(
        {
            k: v
            for k, v in counts.items()
            if not k.endswith(("_metadata", "_log", "_config")) and k != "packages"
        }
    )


def pids_matching(pattern: str) -> set[int]:
    """Pids of processes whose command line matches ``pattern`` (pgrep -f)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()} - {os.getpid()}
