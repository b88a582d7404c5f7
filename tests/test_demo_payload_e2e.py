"""Tests of the demo payload: repo builder, tasks' failOn control, real pipetask runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from lsst.daf.butler import Butler

from desc.gen3_workflow.demo import DEFAULTS_COLLECTION, make_demo_repo
from desc.gen3_workflow.demo.tasks import IsrConfig, fail_condition_matches, parse_fail_condition

PIPELINE = str(Path(__file__).resolve().parents[1] / "config" / "pipelines" / "demo_drp.yaml")
N_VISITS = 2
N_DETECTORS = 2
OUTPUT_TYPES = ("postISRCCD", "icExp", "icSrc", "calexp", "src", "visitSummary", "objectTable")


def _pipetask(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``pipetask`` from this interpreter's environment, single-process."""
    # Single process on purpose: -j N spawns a fresh interpreter per quantum (~1 s each).
    cmd = [sys.executable, "-c", "from lsst.ctrl.mpexec.cli.pipetask import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _run_pipeline(repo: str, output: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return _pipetask(
        "run", "-b", repo, "-i", DEFAULTS_COLLECTION, "-o", output, "-p", PIPELINE,
        "--register-dataset-types", *extra,
    )  # fmt: skip


def _counts(repo: str, collection: str) -> dict[str, int]:
    butler = Butler.from_config(repo)
    try:
        return {
            name: len(butler.query_datasets(name, collections=collection, explain=False, limit=None))
            for name in OUTPUT_TYPES
        }
    finally:
        butler.close()


@pytest.fixture
def repo(tmp_path: Path) -> str:
    return make_demo_repo(str(tmp_path / "repo"), n_visits=N_VISITS, n_detectors=N_DETECTORS)


def test_fail_conditions() -> None:
    assert parse_fail_condition("visit=3,detector=2") == {"visit": "3", "detector": "2"}
    assert parse_fail_condition("visit = 3 AND detector == 2") == {"visit": "3", "detector": "2"}
    assert parse_fail_condition("visit:3, detector:2") == {"visit": "3", "detector": "2"}
    assert parse_fail_condition("*") is None
    for bad in ("", "visit", "visit=3,oops"):
        with pytest.raises(ValueError):
            parse_fail_condition(bad)
    assert fail_condition_matches("visit=3,detector=2", {"instrument": "DemoCam", "visit": 3, "detector": 2})
    assert not fail_condition_matches("visit=3,detector=2", {"visit": 3, "detector": 1})
    # A key missing from the data ID never matches (per-visit quanta have no detector).
    assert not fail_condition_matches("detector=2", {"visit": 3})
    config = IsrConfig()
    config.failOn = "visit:1"  # What `pipetask -c isr:failOn=visit:1` does.
    assert list(config.failOn) == ["visit:1"]


def test_make_demo_repo_refuses_non_empty(tmp_path: Path) -> None:
    (tmp_path / "junk").write_text("x")
    with pytest.raises(FileExistsError):
        make_demo_repo(str(tmp_path))


def test_pipetask_run(repo: str) -> None:
    result = _run_pipeline(repo, "u/test/demo")
    assert result.returncode == 0, result.stderr[-3000:]
    n = N_VISITS * N_DETECTORS
    assert _counts(repo, "u/test/demo") == {
        "postISRCCD": n, "icExp": n, "icSrc": n, "calexp": n, "src": n,
        "visitSummary": N_VISITS, "objectTable": 1,
    }  # fmt: skip
    butler = Butler.from_config(repo, collections="u/test/demo")
    try:
        table = butler.get("objectTable", instrument="DemoCam")
        assert table["nVisits"] == N_VISITS and table["nDetectorVisits"] == n
        assert table["nSources"] > 0
    finally:
        butler.close()


def test_pipetask_run_fail_on(repo: str) -> None:
    result = _run_pipeline(repo, "u/test/fail", "-c", "isr:failOn=visit:2,detector:1")
    assert result.returncode != 0
    assert "DemoTaskError" in result.stderr
    n = N_VISITS * N_DETECTORS
    # Only the failed isr quantum and its descendants (its characterizeImage and calibrate,
    # visit 2's visitSummary and the globalTable) are missing.
    assert _counts(repo, "u/test/fail") == {
        "postISRCCD": n - 1, "icExp": n - 1, "icSrc": n - 1, "calexp": n - 1, "src": n - 1,
        "visitSummary": N_VISITS - 1, "objectTable": 0,
    }  # fmt: skip
    butler = Butler.from_config(repo)
    try:
        missing = butler.query_datasets(
            "postISRCCD",
            collections="u/test/fail",
            where="instrument='DemoCam' AND visit=2 AND detector=1",
            explain=False,
        )
        assert missing == []
    finally:
        butler.close()
