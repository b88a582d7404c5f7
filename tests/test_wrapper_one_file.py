"""The bash-builtin wrapper keeps one file per job: its start record, then
its exit record over it; the readers tell the two apart."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from desc.gen3_workflow.execution.bridge.submitters import wrapped_command
from desc.gen3_workflow.execution.job_io import markers


def test_one_file_from_start_to_end(tmp_path: Path) -> None:
    status = tmp_path / markers.STATUS_DIR
    status.mkdir()
    go = tmp_path / "go"
    payload = f"/bin/sh -c 'while [ ! -e {go} ]; do sleep 0.05; done; exit 3'"
    proc = subprocess.Popen(["/bin/bash", "-c", wrapped_command(payload, str(tmp_path), 5)])
    deadline = time.time() + 30
    while markers.read_started(str(tmp_path), 5) is None and time.time() < deadline:
        time.sleep(0.02)
    # Running: a start and a host, no end.
    assert os.listdir(status) == ["5.exit"]
    assert markers.read_exit(str(tmp_path), 5) is None
    assert markers.ended_jobs(str(tmp_path)) == set()
    assert markers.marked_jobs(str(tmp_path)) == {5}
    start, host = markers.read_start_and_first_host(str(tmp_path), 5)
    assert start is not None and host == socket.gethostname()
    assert markers.read_pids(str(tmp_path), 5) == []
    go.touch()
    assert proc.wait(30) == 3
    assert os.listdir(status) == ["5.exit"]
    record = markers.read_exit(str(tmp_path), 5)
    assert record is not None and record.code == 3 and record.start == start and record.host == host
    assert record.cpu is not None and record.time >= start
    assert markers.ended_jobs(str(tmp_path)) == {5}
    assert markers.read_started(str(tmp_path), 5) == start


def test_a_start_record_left_behind_does_not_skip_the_payload(tmp_path: Path) -> None:
    """An attempt killed while running leaves its start record: the next
    one runs the payload (only an exit record of a success skips it)."""
    status = tmp_path / markers.STATUS_DIR
    status.mkdir()
    (status / "6.exit").write_text('{"start": 1.0, "host": "n1"}\n')
    marker = tmp_path / "ran"
    done = subprocess.run(["/bin/bash", "-c", wrapped_command(f"touch {marker}", str(tmp_path), 6)])
    assert done.returncode == 0 and marker.exists()
    marker.unlink()
    again = ["/bin/bash", "-c", wrapped_command(f"touch {marker}", str(tmp_path), 6)]
    done = subprocess.run(again, capture_output=True, text=True)
    assert done.returncode == 0 and not marker.exists() and "already succeeded" in done.stderr
    # prepare_attempt keeps a success, forgets a start record.
    markers.prepare_attempt(str(tmp_path), 6)
    assert (status / "6.exit").exists()
    (status / "6.exit").write_text('{"start": 1.0, "host": "n1"}\n')
    markers.prepare_attempt(str(tmp_path), 6)
    assert not (status / "6.exit").exists()
