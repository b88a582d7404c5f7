"""The pieces that keep other users out, one at a time: the run's secrets,
the node runner's request signature and log check, Work Queue's password in
the workers' command line, HighThroughput's encryption (see
test_security_e2e.py for the same against a real run)."""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import pytest
from harness import requires_work_queue

from desc.gen3_workflow.errors import ParslConfigError
from desc.gen3_workflow.execution.bridge.modes import mode_for
from desc.gen3_workflow.execution.job_io import run_secrets
from desc.gen3_workflow.execution.warm.protocol import (
    decode_request,
    encode_request,
    misplaced_logs,
    socket_name,
)
from desc.gen3_workflow.settings.parsl_section import ParslSettings


def test_secrets_are_the_owners_alone_and_new_each_session(tmp_path: Path) -> None:
    submit_dir = str(tmp_path / "run")
    os.makedirs(submit_dir)
    previous = os.umask(0)  # the loosest umask a user could have
    try:
        run_secrets.create(submit_dir)
        first = {name: Path(run_secrets.secret_path(submit_dir, name)).read_text() for name in _NAMES}
        run_secrets.create(submit_dir)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(os.path.join(submit_dir, run_secrets.SECRETS_DIR)).st_mode) == 0o700
    for name in _NAMES:
        path = run_secrets.secret_path(submit_dir, name)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        value = Path(path).read_text().strip()
        assert len(value) == 64 and value != first[name].strip()
    assert set(os.listdir(os.path.join(submit_dir, run_secrets.SECRETS_DIR))) == set(_NAMES)
    # The key read is the new one (the cache follows the file).
    assert (
        run_secrets.runner_key(submit_dir)
        == Path(run_secrets.secret_path(submit_dir, run_secrets.RUNNER_KEY)).read_bytes().strip()
    )


_NAMES = (run_secrets.WORK_QUEUE_PASSWORD, run_secrets.RUNNER_KEY)


def test_requests_must_carry_the_runs_key() -> None:
    key, other = b"a" * 64, b"b" * 64
    request = {"argv": ["pipetask", "run-qbb"], "env": [], "seq": 3, "stdout": "o", "stderr": "e"}
    line = encode_request(key, request)
    assert line.endswith(b"\n") and key not in line
    assert decode_request(key, line) == request
    assert decode_request(other, line) is None
    assert decode_request(key, line.replace(b'"seq": 3', b'"seq": 4')) is None
    assert decode_request(key, line.split(b" ", 1)[1]) is None  # no MAC
    assert decode_request(key, b"") is None
    # The socket's name comes from the key: unforeseeable, and one per run.
    assert socket_name(key) != socket_name(other) and socket_name(key).startswith("\0gen3wf-runner-")
    assert key.decode() not in socket_name(key)


@pytest.mark.parametrize(
    ("stdout", "refused"),
    [
        ("{run}/logs/isr/a.out", False),
        ("logs/isr/a.out", False),  # relative to the submit directory
        ("/tmp/elsewhere.out", True),
        ("{run}/../elsewhere.out", True),
        ("{run}/logs/../../elsewhere.out", True),
        ("{run}2/a.out", True),  # a sibling whose name starts alike
        ("", True),
    ],
)
def test_log_files_must_lie_in_the_submit_directory(tmp_path: Path, stdout: str, refused: bool) -> None:
    run = str(tmp_path / "run")
    path, inside = stdout.format(run=run), f"{run}/logs/isr/a.err"
    assert (misplaced_logs(run, {"stdout": path, "stderr": inside}) is not None) == refused
    assert (misplaced_logs(run, {"stdout": inside, "stderr": path}) is not None) == refused


@pytest.mark.parametrize("options", ["--password x", "--memory=10 -P x", "-Px", "--cores 2 --password=x"])
def test_worker_options_cannot_carry_a_password(options: str) -> None:
    with pytest.raises(ParslConfigError, match=r"^parsl_config.worker_options: leave out --password/-P"):
        ParslSettings.from_mapping({"executor": "WorkQueue", "worker_options": options})


@requires_work_queue  # parsl's executor imports Work Queue's bindings
def test_work_queue_workers_are_given_the_runs_password(tmp_path: Path) -> None:
    submit_dir = str(tmp_path / "a submit dir")  # a space: the path must be quoted
    os.makedirs(submit_dir)
    run_secrets.create(submit_dir)
    settings = ParslSettings.from_mapping({"executor": "WorkQueue", "worker_options": "--memory=4000"})
    executor = mode_for(settings).make_executor(submit_dir)
    password = run_secrets.secret_path(submit_dir, run_secrets.WORK_QUEUE_PASSWORD)
    assert executor.project_password_file == password  # the manager's
    executor._chosen_port = 9123  # what parsl sets once the manager listens
    words = shlex.split(executor._construct_worker_command())
    assert words[words.index("--password") + 1] == password
    assert words[-2:] == [executor.address, "9123"] and "--memory=4000" in words


@pytest.mark.parametrize(
    "section",
    [
        {"executor": "HighThroughput", "provider": "Slurm"},
        {"executor": "HighThroughput", "provider": "Local", "execution": "process"},
        {"executor": "HighThroughput", "provider": "Slurm", "address": "10.0.0.1", "nodes_per_block": 4},
    ],
)
def test_high_throughput_keeps_parsls_encryption(tmp_path: Path, section: dict[str, object]) -> None:
    executor = mode_for(ParslSettings.from_mapping(section)).make_executor(str(tmp_path))
    assert executor.encrypted is True


def test_control_directories_are_writable_by_the_owner_alone(tmp_path: Path) -> None:
    previous = os.umask(0o002)  # a group-writable umask, common on shared project areas
    try:
        status = run_secrets.owner_writable_dir(str(tmp_path / "run" / "status"))
        os.chmod(status, 0o777)  # made before, by someone careless
        run_secrets.owner_writable_dir(status)
        fresh = run_secrets.owner_writable_dir(str(tmp_path / "run" / "runners"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(status).st_mode) == 0o755
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o755
