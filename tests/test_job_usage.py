"""What a job's payload used (CPU time, peak memory), as each way of running
a job records it in its exit record, on real processes; and what the store
keeps of it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from synthetic import job, old_attempts_table, write_store

from desc.gen3_workflow.execution.bridge.submitters import wrapped
from desc.gen3_workflow.execution.job_io import markers
from desc.gen3_workflow.execution.job_io.job_usage import QuantumUsage, parse_bash_times
from desc.gen3_workflow.execution.worker import supervise
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import AttemptRecord, JobCommand

# About 0.3-1 s of CPU, and 150 MB held at once.
BURN = f"{sys.executable} -c 'data = bytearray([1]) * (150 * 2**20); sum(range(10**7))'"
_MB = 2**20


def test_bash_times_are_read() -> None:
    assert parse_bash_times("0m0.004s 0m0.000s\n1m2.500s 0m0,250s\n") == 62.75
    assert parse_bash_times("garbage") is None
    assert parse_bash_times("0m0.004s 0m0.000s\nxmys 0m0.1s") is None


def test_the_supervisor_records_cpu_and_peak_memory(tmp_path: Path) -> None:
    command = [sys.executable, "-m", supervise.__name__]
    result = subprocess.run(
        [*command, "--submit-dir", str(tmp_path), "--seq", "1", "--", BURN], capture_output=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    record = markers.read_exit(str(tmp_path), 1)
    assert record is not None and record.cpu is not None and record.max_rss is not None
    assert 0.05 < record.cpu < 60
    assert 150 * _MB < record.max_rss < 1000 * _MB


def test_the_bash_wrapper_records_cpu(tmp_path: Path) -> None:
    burner = dataclasses.replace(job(1, "isr", tmp_path), command=JobCommand(("/bin/bash", "-c", BURN)))
    (tmp_path / markers.STATUS_DIR).mkdir()  # (the runner's submitter makes it)
    done = subprocess.run(
        ["/bin/bash", "-c", wrapped(burner, str(tmp_path))], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    record = markers.read_exit(str(tmp_path), 1)
    assert record is not None and (record.code, record.reason) == (0, "")
    assert record.cpu is not None and 0.05 < record.cpu < 60
    assert record.max_rss is None  # bash cannot say
    # Its record still tells the wrapper not to run a success again.
    again = subprocess.run(
        ["/bin/bash", "-c", wrapped(burner, str(tmp_path))], capture_output=True, text=True
    )
    assert again.returncode == 0 and "already succeeded; not run again" in again.stderr


def _resident() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def test_an_in_process_quantum_is_measured_alone() -> None:
    spike = bytearray([1]) * (400 * _MB)  # an earlier quantum's peak
    del spike
    before = _resident()
    usage = QuantumUsage()
    data = bytearray([1]) * (50 * _MB)
    sum(range(3 * 10**6))
    cpu, max_rss = usage.end()
    del data
    assert 0.01 < cpu < 30
    # The peak counts from the quantum's start: its 50 MB, not the 400 before.
    assert before + 45 * _MB < max_rss < before + 300 * _MB


def test_the_store_keeps_each_attempts_use(tmp_path: Path) -> None:
    with write_store(tmp_path, [job(0, "isr", tmp_path), job(1, "isr", tmp_path)]) as store:
        store.apply(
            [],
            [
                AttemptRecord(0, 1, False, 10.0, 137, 2048, "memory", 1.5, 300 * _MB),
                AttemptRecord(0, 2, True, 20.0, 0, 4096, None, 2.0, 500 * _MB),
                AttemptRecord(1, 1, True, 20.0, 0, None, None),
            ],
        )
    with JobStateStore.open(str(tmp_path)) as store:
        assert [a.max_rss for a in store.attempts_of([0])[0]] == [300 * _MB, 500 * _MB]
        assert store.attempt_usage() == [(0, 3.5, 500 * _MB)]


def test_a_store_from_before_usage_was_kept_is_read_and_written(tmp_path: Path) -> None:
    with write_store(tmp_path, [job(0, "isr", tmp_path)]):
        pass
    old_attempts_table(tmp_path, "", "0, 1, 0, 5.0, 1, NULL, 'x'")
    with JobStateStore.open(str(tmp_path)) as store:
        (old,) = store.attempts_of([0])[0]
        assert (old.exit_code, old.message, old.cpu, old.max_rss) == (1, "x", None, None)
        assert store.attempt_usage() == []
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        store.apply([], [AttemptRecord(0, 2, True, 9.0, 0, None, None, 0.5, 100)])
        assert [a.cpu for a in store.attempts_of([0])[0]] == [None, 0.5]
        assert store.attempt_usage() == [(0, 0.5, 100)]
