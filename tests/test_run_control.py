"""bps cancel's refusals, from stores written directly: a run that ended, a
run whose submitting process died, a run on another host."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from desc.gen3_workflow.run_control import CANCEL_REQUEST, request_cancel
from desc.gen3_workflow.state_store import JobRecord, JobStateStore, RunState


@pytest.fixture
def store(tmp_path: Path) -> JobStateStore:
    """A one-job run marked running by this process."""
    job = JobRecord(0, "a", "isr", "quantum", json.dumps({"visit": 1}), "true", {}, "a.out", "a.err")
    store = JobStateStore.in_dir(str(tmp_path), writable=True)
    store.write_plan("run", str(tmp_path), {}, [job], [])
    store.start_run()
    return store


def test_a_run_that_ended_is_left_alone(store: JobStateStore, tmp_path: Path) -> None:
    store.end_run(RunState.SUCCEEDED)
    ok, message = request_cancel(str(tmp_path))
    assert not ok and "is not running (state: succeeded); nothing changed" in message
    assert not (tmp_path / CANCEL_REQUEST).exists()


def test_a_run_whose_process_died_is_left_alone(store: JobStateStore, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    store._db.execute("UPDATE run SET pid = ?", (gone.pid,))
    ok, message = request_cancel(str(tmp_path))
    assert not ok and "is gone" in message and "bps restart" in message
    assert not (tmp_path / CANCEL_REQUEST).exists()


def test_a_run_on_another_host_is_left_alone(store: JobStateStore, tmp_path: Path) -> None:
    store._db.execute("UPDATE run SET host = 'elsewhere'")
    ok, message = request_cancel(str(tmp_path))
    assert not ok and f"runs on host elsewhere (pid {os.getpid()}); cancel it there" in message
    assert not (tmp_path / CANCEL_REQUEST).exists()
