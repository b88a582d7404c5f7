"""When and where a job really started and ended, as the side that runs it
records it (the bash wrapper, the supervisor, warm runners), and what the
store, the summary and the runner's view make of it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from synthetic import job, old_attempts_table, write_store

from desc.gen3_workflow.execution.bridge.submitters import wrapped
from desc.gen3_workflow.execution.job_io import markers
from desc.gen3_workflow.execution.worker import supervise
from desc.gen3_workflow.reporting.failures import failure_summary
from desc.gen3_workflow.reporting.history import load_job_history
from desc.gen3_workflow.reporting.summary import format_summary, summarize
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import AttemptRecord, JobCommand, JobState, JobUpdate

SLEEP = "sleep 0.5"


def test_the_bash_wrapper_records_start_and_end(tmp_path: Path) -> None:
    sleeper = dataclasses.replace(job(1, "isr", tmp_path), command=JobCommand(("/bin/bash", "-c", SLEEP)))
    (tmp_path / markers.STATUS_DIR).mkdir()
    before = time.time()
    # A job's environment may carry the submitting host's $HOSTNAME (Slurm
    # passes it on): the host recorded is the node's own.
    env = {**os.environ, "HOSTNAME": "the-submitting-host"}
    done = subprocess.run(
        ["/bin/bash", "-c", wrapped(sleeper, str(tmp_path))], capture_output=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    started = markers.read_started(str(tmp_path), 1)
    record = markers.read_exit(str(tmp_path), 1)
    assert record is not None and record.start == started
    assert started is not None and before <= started <= record.time - 0.45
    assert markers.read_pids(str(tmp_path), 1) == []  # nothing for the runner to kill but the job
    assert record.host == markers.started_host(str(tmp_path), 1) == socket.gethostname()


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs unshare -u (root)")
def test_a_host_name_cannot_break_the_wrappers_records(tmp_path: Path) -> None:
    """A node whose name holds a quote, a backslash, a space or ``$(...)``
    (in a UTS namespace of its own): the records stay JSON, the name's
    other characters kept."""
    quiet = dataclasses.replace(job(4, "isr", tmp_path), command=JobCommand(("true",)))
    (tmp_path / markers.STATUS_DIR).mkdir()
    name_the_node = 'printf %s "$1" > /proc/sys/kernel/hostname && exec /bin/bash -c "$2"'
    done = subprocess.run(
        ["unshare", "-u", "/bin/bash", "-c", name_the_node, "-", 'n"1\\ $(x)', wrapped(quiet, str(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    record = markers.read_exit(str(tmp_path), 4)
    assert record is not None and record.code == 0 and record.host == "n?1????x?"
    assert markers.started_host(str(tmp_path), 4) == "n?1????x?"


def test_the_supervisor_records_start_and_end(tmp_path: Path) -> None:
    command = [sys.executable, "-m", supervise.__name__, "--submit-dir", str(tmp_path), "--seq", "2"]
    before = time.time()
    done = subprocess.run([*command, "--", SLEEP], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    record = markers.read_exit(str(tmp_path), 2)
    assert record is not None and record.start == markers.read_started(str(tmp_path), 2)
    assert record.start is not None and before <= record.start <= record.time - 0.45
    assert markers.read_pids(str(tmp_path), 2)  # the supervisor's own process
    assert record.host == markers.started_host(str(tmp_path), 2) == socket.gethostname()


def test_markers_written_before_starts_were_kept_are_read(tmp_path: Path) -> None:
    path = tmp_path / markers.STATUS_DIR / "3.pids"
    path.parent.mkdir()
    path.write_text(json.dumps([[123, 4.5]]))
    assert markers.read_pids(str(tmp_path), 3) == [(123, 4.5)]
    assert markers.read_started(str(tmp_path), 3) is None
    assert markers.started_host(str(tmp_path), 3) == ""
    (tmp_path / markers.STATUS_DIR / "3.exit").write_text(
        '{"code": 0, "time": 9.0, "reason": "", "detail": ""}'
    )
    record = markers.read_exit(str(tmp_path), 3)
    assert record is not None and record.start is None and record.host == ""
    # With a start, before hosts were kept.
    path.write_text(json.dumps({"start": 4.0, "pids": [[123, 4.5]]}))
    assert markers.read_started(str(tmp_path), 3) == 4.0 and markers.started_host(str(tmp_path), 3) == ""


def test_the_store_keeps_real_starts_and_ends(tmp_path: Path) -> None:
    jobs = [job(0, "isr", tmp_path), job(1, "isr", tmp_path)]
    with write_store(tmp_path, jobs) as store:
        store.apply([JobUpdate(0, JobState.LAUNCHED, 10.0), JobUpdate(1, JobState.LAUNCHED, 10.0)])
        # Job 0 seen running at 14 (the runner's poll), started at 12.5 on its node.
        store.apply([JobUpdate(0, JobState.RUNNING, 14.0, started=12.5)])
        # It ended at 15 on its node; the runner recorded it at 16.
        store.apply(
            [JobUpdate(0, JobState.EXEC_DONE, 15.0, 1, 0, started=12.5)],
            [AttemptRecord(0, 1, True, 15.0, 0, None, None, 1.0, None, 12.5)],
        )
        # Job 1 ran between two polls: only its final update says when it started.
        store.apply([JobUpdate(1, JobState.EXEC_DONE, 11.2, 1, 0, started=11.0)])
    with JobStateStore.open(str(tmp_path)) as store:
        assert [a.start for a in store.attempts_of([0])[0]] == [12.5]
    history = load_job_history(str(tmp_path))
    assert list(history.start[:2]) == [12.5, 11.0] and list(history.end[:2]) == [15.0, 11.2]
    np.testing.assert_allclose(history.wall[:2], [2.5, 0.2])
    np.testing.assert_allclose(history.queue[:2], [2.5, 1.0])
    isr = summarize(history)["labels"]["isr"]
    assert isr["wall_time_total"] == 2.7 and isr["queue_time_mean"] == 1.75


def test_a_store_from_before_starts_were_kept_is_read(tmp_path: Path) -> None:
    """A run of the previous version: its attempts have usage, no start;
    reports read them as they are (read-only) and a restart adds the column."""
    with write_store(tmp_path, [job(0, "isr", tmp_path)]):
        pass
    old_attempts_table(tmp_path, "cpu REAL, max_rss INTEGER", "0, 1, 1, 5.0, 0, NULL, NULL, 0.5, 100")
    with JobStateStore.open(str(tmp_path)) as store:
        (old,) = store.attempts_of([0])[0]
        assert (old.cpu, old.max_rss, old.start) == (0.5, 100, None)
        assert store.attempt_usage() == [(0, 0.5, 100)]
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        store.apply([], [AttemptRecord(0, 2, True, 9.0, 0, None, None, 0.25, 50, 8.0)])
        assert [a.start for a in store.attempts_of([0])[0]] == [None, 8.0]


def test_a_store_from_before_hosts_were_kept_is_read_and_restarted(tmp_path: Path) -> None:
    """A run of the previous version (usage and start, no host): reports
    read it as it is, read-only; a restart adds the column and keeps the
    hosts of the attempts it runs."""
    failed = dataclasses.replace(job(0, "isr", tmp_path), state=JobState.FAILED, attempts=1, exit_code=1)
    with write_store(tmp_path, [failed]):
        pass
    old_attempts_table(
        tmp_path, "cpu REAL, max_rss INTEGER, t_start REAL", "0, 1, 0, 5.0, 1, NULL, 'x', 0.5, 100, 4.0"
    )
    with JobStateStore.open(str(tmp_path)) as store:
        (old,) = store.attempts_of([0])[0]
        assert (old.start, old.host) == (4.0, None)
        assert store.last_hosts() == []
    summary = summarize(load_job_history(str(tmp_path)))
    assert summary["hosts"] == {} and summary["failures"][0]["host"] is None
    assert "Hosts (jobs run): not recorded" in format_summary(summary)
    assert f"FAILED isr {failed.data_id} exit code 1; log:" in failure_summary(str(tmp_path))
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        store.apply([], [AttemptRecord(0, 2, True, 9.0, 0, None, None, 0.25, 50, 8.0, "n2")])
        assert [a.host for a in store.attempts_of([0])[0]] == [None, "n2"]
    assert summarize(load_job_history(str(tmp_path)))["hosts"] == {"n2": 1}
