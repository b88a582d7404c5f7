"""The error a failed job's log gives, as the failure summary quotes it."""

from __future__ import annotations

from pathlib import Path

from desc.gen3_workflow.reporting.failures import first_error

ATTEMPT = "--> in-process execution follows <--\npipetask run-qbb ...\n--> end executable <--\n"
MIDDLEWARE_ERROR = (
    "ERROR 2026-12-06T15:42:28.184+00:00 lsst.pipe.base.single_quantum_executor (isr:{{visit: 1}})"
    "(single_quantum_executor.py:298) - Execution of task 'isr' on quantum {{visit: 1}} failed. "
    "Exception {name}: {text}\n"
)
TRACEBACK = 'Traceback (most recent call last):\n  File "x.py", line 1\n{name}: {text}\n'


def test_the_last_attempts_first_error_line(tmp_path: Path) -> None:
    log = tmp_path / "job.stderr"
    log.write_text(
        ATTEMPT
        + MIDDLEWARE_ERROR.format(name="OSError", text="disk full")
        + ATTEMPT
        + "INFO all is well\n"
        + MIDDLEWARE_ERROR.format(name="ValueError", text="bad pixel")
        + "ERROR ... - 0001 (isr@{visit: 1}) failed; processing will continue\n"
        + TRACEBACK.format(name="lsst.pipe.base.MPGraphExecutorError", text="One or more tasks failed")
    )
    error = first_error(str(log))
    assert error == "Execution of task 'isr' on quantum {visit: 1} failed. Exception ValueError: bad pixel"


def test_a_traceback_without_an_error_line(tmp_path: Path) -> None:
    log = tmp_path / "job.stderr"
    log.write_text(
        "--> executable follows <--\nbash x\n--> end executable <--\n"
        + TRACEBACK.format(name="FileNotFoundError", text="[Errno 2] No such file: 'repo/butler.yaml'")
    )
    assert first_error(str(log)) == "FileNotFoundError: [Errno 2] No such file: 'repo/butler.yaml'"
    log.write_text("--> executable follows <--\nbash x\n--> end executable <--\nkilled\n")
    assert first_error(str(log)) is None
    assert first_error(str(tmp_path / "missing.stderr")) is None
