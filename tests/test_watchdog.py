"""The pieces that keep a run from waiting for ever, on real processes but
without parsl: the job supervisor, exit records, the watchdog's decisions,
and how an attempt's end is judged."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from synthetic import job

from desc.gen3_workflow.execution.job_io import markers
from desc.gen3_workflow.execution.job_io.processes import kill_job_processes
from desc.gen3_workflow.execution.runner.attempts import Attempt, attempt_host, outcome
from desc.gen3_workflow.execution.runner.in_flight import InFlight
from desc.gen3_workflow.execution.runner.watchdog import Watchdog
from desc.gen3_workflow.execution.worker import supervise

SUPERVISE = [sys.executable, "-m", supervise.__name__]
HOLD_MEMORY = "import time; data = bytearray([1]) * ({mb} * 2**20); time.sleep(60)"


def _supervise(
    tmp_path: Path, seq: int, command: str, *options: str, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SUPERVISE, "--submit-dir", str(tmp_path), "--seq", str(seq), *options, "--", command],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_supervisor_records_the_end_and_never_reruns_a_success(tmp_path: Path) -> None:
    failed = _supervise(tmp_path, 1, "echo out; exit 3")
    assert (failed.returncode, failed.stdout) == (3, "out\n")
    record = markers.read_exit(str(tmp_path), 1)
    assert record is not None and (record.code, record.reason) == (3, "")
    assert abs(record.time - time.time()) < 30

    killed = _supervise(tmp_path, 2, "kill -9 $$")
    assert killed.returncode == 137  # as a shell reports a SIGKILL
    assert markers.read_exit(str(tmp_path), 2).code == 137  # type: ignore[union-attr]

    marker = tmp_path / "ran"
    assert _supervise(tmp_path, 3, f"touch {marker}").returncode == 0
    marker.unlink()
    again = _supervise(tmp_path, 3, f"touch {marker}")
    assert again.returncode == 0 and not marker.exists()
    assert "already succeeded; not run again" in again.stderr
    # The job's payload saw its seq (cancel and the watchdog find its processes by it).
    assert _supervise(tmp_path, 4, 'test "$GEN3WF_JOB" = 4').returncode == 0


def test_supervisor_holds_the_payload_to_its_memory_request(tmp_path: Path) -> None:
    hog = f"{sys.executable} -c '{HOLD_MEMORY.format(mb=300)}'"
    result = _supervise(tmp_path, 1, hog, "--memory", "200")
    assert result.returncode in (137, 143), result.stderr
    assert "more than the 200 MB requested" in result.stderr
    record = markers.read_exit(str(tmp_path), 1)
    assert (
        record is not None and record.reason == "memory" and "more than the 200 MB requested" in record.detail
    )
    # Within its request, it runs to its end.
    small = f"{sys.executable} -c 'data = bytearray(20 * 2**20)'"
    assert _supervise(tmp_path, 2, small, "--memory", "200").returncode == 0


def test_supervisor_stops_at_walltime_and_when_asked(tmp_path: Path) -> None:
    start = time.monotonic()
    late = _supervise(tmp_path, 1, "sleep 60", "--walltime", "2")
    assert late.returncode == 143 and time.monotonic() - start < 30
    assert markers.read_exit(str(tmp_path), 1).reason == "walltime"  # type: ignore[union-attr]

    proc = subprocess.Popen([*SUPERVISE, "--submit-dir", str(tmp_path), "--seq", "2", "--", "sleep 60"])
    time.sleep(1.5)
    markers.request_kill(str(tmp_path), 2, "stuck")
    assert proc.wait(timeout=30) == 143
    record = markers.read_exit(str(tmp_path), 2)
    assert record is not None and (record.reason, record.detail) == ("killed", "stuck")


def test_supervisor_passes_a_signal_on_to_the_payload(tmp_path: Path) -> None:
    marker = tmp_path / "child"
    proc = subprocess.Popen(
        [*SUPERVISE, "--submit-dir", str(tmp_path), "--seq", "1", "--", f"echo $$ > {marker}; sleep 60"]
    )
    deadline = time.monotonic() + 30
    while not (marker.exists() and marker.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    payload = int(marker.read_text())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    time.sleep(0.2)
    with pytest.raises(ProcessLookupError):
        os.kill(payload, 0)
    assert markers.read_exit(str(tmp_path), 1).reason == "terminated"  # type: ignore[union-attr]


def test_hung_wrappers_of_a_job_are_killed(tmp_path: Path) -> None:
    """What a deadlocked resource monitor leaves: a wrapper whose payload
    ended; the supervisor recorded it, the runner kills it."""
    # A stand-in for cctools-monitor: runs the supervisor, then hangs.
    wrapper = tmp_path / "exec_parsl_function.sh"
    supervise = " ".join([*SUPERVISE, "--submit-dir", str(tmp_path), "--seq", "7", "--", "'true'"])
    wrapper.write_text(f"#!/bin/bash\n{supervise}\nexec sleep 600\n")
    wrapper.chmod(0o755)
    proc = subprocess.Popen([str(wrapper)])
    deadline = time.monotonic() + 30
    while markers.read_exit(str(tmp_path), 7) is None:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)
    assert proc.poll() is None  # hung after its payload ended
    assert kill_job_processes(str(tmp_path), 7) >= 1
    assert proc.wait(timeout=30) in (-signal.SIGTERM, -signal.SIGKILL)


class _Future:
    def done(self) -> bool:
        return False


def test_watchdog_decisions(tmp_path: Path) -> None:
    dog = Watchdog(str(tmp_path), "WorkQueue", return_grace=10, stuck_factor=5, stuck_min_seconds=30)
    now = time.time()
    quiet = Attempt(job(1, "isr"), 1, _Future(), now - 100, now - 100, now - 100)  # type: ignore[arg-type]
    assert dog.check([quiet], now) == []  # no median yet, no walltime: left alone
    for seconds in (10, 11, 12, 9, 10):
        dog.succeeded("isr", seconds)
    assert dog.median("isr") == 10
    (stuck,) = dog.check([quiet], now)
    assert stuck.kind == "stop" and "more than 5 times the median (10.0 s) of isr" in stuck.message
    young = Attempt(job(2, "isr"), 1, _Future(), now, now, now - 20)  # type: ignore[arg-type]
    assert dog.check([young], now) == []  # 20 s < stuck_min_seconds

    timed = job(3, "calibrate")
    timed.resources = {"walltime": "0.5"}  # minutes, as ctrl_bps gives it
    late = Attempt(timed, 1, _Future(), now - 40, now - 40, now - 40)  # type: ignore[arg-type]
    (over,) = dog.check([late], now)
    assert over.kind == "stop" and "walltime (30 s)" in over.message

    ended = Attempt(job(4, "isr"), 1, _Future(), now - 100, now - 100, now - 100)  # type: ignore[arg-type]
    markers.write_exit(str(tmp_path), 4, markers.ExitRecord(0, now - 11))
    (hung,) = dog.check([ended], now)
    assert hung.kind == "kill"
    assert (
        hung.message
        == "payload ended with exit 0 but WorkQueue did not return the task within 10 s; task killed"
    )
    markers.write_exit(str(tmp_path), 4, markers.ExitRecord(0, now - 5))
    assert dog.check([ended], now) == []  # still within the grace

    ended.stopped = now - 11
    (given_up,) = dog.check([ended], now)
    assert given_up.kind == "abandon"


def test_outcome_trusts_the_jobs_own_record() -> None:
    attempt = Attempt(job(1, "isr"), 2, _Future(), 0.0)  # type: ignore[arg-type]
    lost = RuntimeError("task lost with its worker")
    # The payload succeeded: whatever the executor says afterwards.
    assert outcome(attempt, lost, markers.ExitRecord(0, 1.0), cancelled=False).succeeded
    failed = outcome(attempt, lost, markers.ExitRecord(1, 1.0), cancelled=False)
    assert (failed.succeeded, failed.exit_code, failed.message, failed.retry) == (
        False,
        1,
        "exit code 1",
        True,
    )
    memory = outcome(attempt, None, markers.ExitRecord(143, 1.0, "memory", "used 300 MB ..."), False)
    assert memory.message == "exit code 143 (killed by signal 15, SIGTERM): used 300 MB ..."
    # No record: the executor's word.
    unknown = outcome(attempt, lost, None, cancelled=False)
    assert unknown.exit_code is None and unknown.message == "RuntimeError: task lost with its worker"
    assert outcome(attempt, None, None, cancelled=False).succeeded
    assert outcome(attempt, lost, None, cancelled=True).message == "cancelled"


def test_the_host_an_attempt_ran_on(tmp_path: Path) -> None:
    """From the job's exit record; for a task lost before its payload
    ended, from its started record; none if it never said."""
    submit_dir = str(tmp_path)
    markers.write_started(submit_dir, 1, 1.0, [], host="n1")
    assert attempt_host(markers.ExitRecord(0, 2.0, host="n2"), submit_dir, 1) == "n2"
    assert attempt_host(None, submit_dir, 1) == "n1"  # lost with its node after it started
    assert attempt_host(markers.ExitRecord(0, 2.0), submit_dir, 1) == "n1"  # a record from before hosts
    assert attempt_host(None, submit_dir, 2) is None  # never started
    markers.write_started(submit_dir, 3, 1.0)  # on this host, by default
    assert attempt_host(None, submit_dir, 3) == socket.gethostname()


def test_the_jobs_with_files_left_are_found_in_one_listing(tmp_path: Path) -> None:
    """A restart clears earlier attempts' files only for the jobs that have
    some (a success record among them stays, so that job is not run again)."""
    assert markers.marked_jobs(str(tmp_path)) == set()
    markers.write_exit(str(tmp_path), 7, markers.ExitRecord(0, 1.0))
    markers.write_started(str(tmp_path), 12, 1.0, [(1, 1.0)])
    markers.request_kill(str(tmp_path), 12, "walltime")
    markers.record_fork(str(tmp_path), 1, 1.0, "runner")
    assert markers.marked_jobs(str(tmp_path)) == {7, 12}
    markers.prepare_attempt(str(tmp_path), 7)
    markers.prepare_attempt(str(tmp_path), 12)
    assert markers.marked_jobs(str(tmp_path)) == {7}


def test_a_job_that_recorded_its_success_is_concluded_before_its_task_returns(tmp_path: Path) -> None:
    """Work Queue starts a worker's next task before parsl hands back the
    last one: a job that recorded a success is concluded from its record,
    then watched until its task comes back; a failure waits for its task."""
    submit_dir = str(tmp_path)
    flight = InFlight(submit_dir)
    futures = [concurrent.futures.Future() for _ in range(3)]
    attempts = [Attempt(job(seq, "isr"), 1, f, 0.0) for seq, f in enumerate(futures, 1)]  # type: ignore[arg-type]
    for attempt in attempts:
        flight.add(attempt)
        markers.write_started(submit_dir, attempt.job.seq, 1.0, [(1, 1.0)])
    markers.write_exit(submit_dir, 1, markers.ExitRecord(0, 5.0))
    markers.write_exit(submit_dir, 2, markers.ExitRecord(1, 5.0))
    assert markers.ended_jobs(submit_dir) == {1, 2}
    (ended,) = flight.ended_by_record()
    assert ended is attempts[0] and ended.ended == 5.0
    flight.conclude(ended)
    assert len(flight) == 2 and flight.watched() == [attempts[1], attempts[2], attempts[0]]
    dog = Watchdog(submit_dir, "WorkQueue", return_grace=10, stuck_factor=0, stuck_min_seconds=0)
    (late,) = dog.check([ended], 16.0)
    assert late.kind == "kill"
    futures[0].set_result(0)
    futures[1].set_exception(RuntimeError("failed"))
    # Both came back: the failure is for its caller to conclude, the success to settle.
    assert list(flight.came_back()) == [attempts[0], attempts[1]]
    flight.settle(attempts[0])
    assert flight.returning == set() and flight.watched() == [attempts[1], attempts[2]]


def test_a_job_run_again_on_another_host_keeps_its_first_host(tmp_path: Path) -> None:
    """Work Queue runs a task whose worker was lost again elsewhere, in the
    same attempt: its started record keeps the host it started on first."""
    submit_dir = str(tmp_path)
    markers.write_started(submit_dir, 5, 1.0, host="n3")
    markers.write_started(submit_dir, 5, 2.0, host="n3")  # the same host again: not a move
    assert markers.read_start_and_first_host(submit_dir, 5) == (2.0, "n3")
    markers.write_started(submit_dir, 5, 3.0, host="n1")
    assert markers.read_start_and_first_host(submit_dir, 5) == (3.0, "n3")
    assert markers.started_host(submit_dir, 5) == "n1"
    markers.prepare_attempt(submit_dir, 5)  # a retry of the runner's own starts afresh
    markers.write_started(submit_dir, 5, 4.0, host="n2")
    assert markers.read_start_and_first_host(submit_dir, 5) == (4.0, "n2")
