"""bps cancel's refusals, from stores written directly: a run that ended, a
run whose submitting process died, a run on another host."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from synthetic import job, set_run, write_store

from desc.gen3_workflow.constants import CANCEL_REQUEST
from desc.gen3_workflow.execution.job_io.cancel import request_cancel
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import RunState


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStateStore]:
    """A one-job run marked running by this process."""
    with write_store(tmp_path, [job(0, "isr", tmp_path)]) as store:
        store.start_run()
        yield store


def test_a_run_that_ended_is_left_alone(store: JobStateStore, tmp_path: Path) -> None:
    store.end_run(RunState.SUCCEEDED)
    ok, message = request_cancel(str(tmp_path))
    assert not ok and "is not running (state: succeeded); nothing changed" in message
    assert not (tmp_path / CANCEL_REQUEST).exists()


def test_a_run_whose_process_died_is_left_alone(store: JobStateStore, tmp_path: Path) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    set_run(tmp_path, pid=gone.pid)
    ok, message = request_cancel(str(tmp_path))
    assert not ok and "is gone" in message and "bps restart" in message
    assert not (tmp_path / CANCEL_REQUEST).exists()


def test_a_run_on_another_host_is_left_alone(store: JobStateStore, tmp_path: Path) -> None:
    set_run(tmp_path, host="elsewhere")
    ok, message = request_cancel(str(tmp_path))
    assert not ok and f"runs on host elsewhere (pid {os.getpid()}); cancel it there" in message
    assert not (tmp_path / CANCEL_REQUEST).exists()
