"""Another user on the node gets nothing from a run (issue: shared nodes).

During a real Work Queue run of the demo pipeline (warm node runners, local
workers), a second local user (``nobody``, through ``setpriv``) tries what
anyone with a shell on the node can:

- connects to the run's node runner (its abstract socket is listed in
  ``/proc/net/unix`` for everyone) and sends a request that would create a
  file as the run's owner;
- points a ``work_queue_worker`` of its own at the manager's port for 20 s,
  to be given the run's tasks.

Both are refused, the rogue worker gets no task, and the run still ends
with every output registered.  A request from the owner that names a log
file outside the submit directory, or does not carry the run's key, is
refused too, by a real runner.  HighThroughput keeps parsl's encryption.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import DRP_LABELS, N_DETECTORS, N_VISITS
from harness import (
    BackgroundBps,
    expected_outputs,
    registered_outputs,
    requires_work_queue,
    run_processes,
    wait_for,
    wait_for_jobs,
    write_bps_file,
)

from desc.gen3_workflow.errors import RunnerError
from desc.gen3_workflow.execution.job_io import run_secrets
from desc.gen3_workflow.execution.warm import node_runner as node_runner_module
from desc.gen3_workflow.execution.warm.node_client import connect_to_node_runner
from desc.gen3_workflow.execution.warm.protocol import encode_request, socket_name
from desc.gen3_workflow.store.records import JobState

NOBODY = 65534
ROGUE_SECONDS = 20.0

requires_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another user",
)

# What the other user runs (Debian's python3, standard library only): it
# connects to an abstract socket, sends one request line and says what came
# back.  The request asks to run a shell line that creates a file.
_INTRUDER = r"""
import json, socket, sys
name, target = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect("\0" + name)
except OSError as exc:
    print("connect refused:", exc); sys.exit(0)
print("connected")
request = {"argv": ["/bin/bash", "-c", f"touch {target}"], "env": [], "seq": 1,
           "stdout": "/tmp/gen3wf-intruder.out", "stderr": "/tmp/gen3wf-intruder.err"}
try:
    s.sendall((json.dumps(request) + "\n").encode())
    reply = s.recv(65536)
    print("reply:", reply.decode(errors="replace").strip() if reply else "(closed without an answer)")
except OSError as exc:
    print("closed:", exc)
"""


def _as_nobody(words: list[str], **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *words],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd="/",
        **kwargs,  # type: ignore[arg-type]
    )


def _runner_sockets(submit_dir: str) -> list[str]:
    """Abstract socket names the run's processes listen on (as listed in
    /proc/net/unix, which every user can read)."""
    inodes: set[str] = set()
    for pid in run_processes(submit_dir):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    names = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith("@gen3wf-runner-"):
            names.append(fields[7][1:])
    return sorted(set(names))


def _manager_ports(submit_dir: str) -> list[int]:
    """TCP ports the run's Work Queue manager listens on."""
    ports = set()
    for pid in run_processes(submit_dir, "GEN3WF_SERVICE_RUN_DIR"):
        try:
            for conn in psutil.Process(pid).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports.add(conn.laddr.port)
        except psutil.Error:
            continue
    return sorted(ports)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _stop(process: subprocess.Popen[str]) -> str:
    """Stop a worker or probe; what it printed."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.communicate(timeout=10)[0] or ""
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()[0] or ""


@requires_root
@requires_work_queue
def test_other_user_gets_nothing_from_a_work_queue_run(demo_repo: str, tmp_path: Path) -> None:
    switch = tmp_path / "slow"
    switch.touch()
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "WorkQueue", "provider": "Local", "worker_options": "--memory=4000", "retries": 1},
        extraQgraphOptions=f"-c characterizeImage:sleep=120 -c characterizeImage:onlyWhileExists={switch}",
    )
    created = tmp_path / "created_by_intruder"
    rogue_dir = Path(tempfile.mkdtemp(prefix="gen3wf-rogue-"))
    os.chown(rogue_dir, NOBODY, NOBODY)
    try:
        with BackgroundBps(tmp_path, bps_file) as bps:
            submit_dir = wait_for_jobs(bps, "characterizeImage", JobState.RUNNING, timeout=240)
            sockets = wait_for(lambda: _runner_sockets(submit_dir), "the run's node runner socket", 60)
            port = wait_for(lambda: _manager_ports(submit_dir), "the Work Queue manager's port", 60)[0]

            # Two rogue workers: one without a password, one with a guess.
            guess = rogue_dir / "guess"
            guess.write_text("0" * 64 + "\n")
            os.chown(guess, NOBODY, NOBODY)
            rogues = [
                _as_nobody(
                    ["work_queue_worker", "--workdir", str(rogue_dir)]
                    + ["-d", "all", "-o", str(rogue_dir / log), *password]
                    + ["--cores=2", "--memory=4000", "--disk=4000", "127.0.0.1", str(port)]
                )
                for log, password in (("plain.log", []), ("guess.log", ["--password", str(guess)]))
            ]
            answers = []
            for name in sockets:
                probe = _as_nobody(["/usr/bin/python3", "-c", _INTRUDER, name, str(created)])
                answers.append(probe.communicate(timeout=30)[0])
            time.sleep(ROGUE_SECONDS)
            rogue_output = [_stop(rogue) for rogue in rogues]

            # The owner adds a worker by hand, as bps submit says to (the user
            # guide's "Security"): it is given the jobs the rogues were not.
            line = re.search(r"to add a worker: (work_queue_worker .*)$", bps.output, re.MULTILINE)
            assert line, bps.output
            extra_log = tmp_path / "extra_worker.log"
            extra = subprocess.Popen(
                [*shlex.split(line.group(1)), "--workdir", str(tmp_path), "-d", "all", "-o", str(extra_log)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
                text=True,
            )
            try:
                wait_for(
                    lambda: "rx from manager: task" in _text(extra_log), "a task on the extra worker", 60
                )
                switch.unlink()
                returncode = bps.wait(timeout=300)
            finally:
                _stop(extra)
    finally:
        debug = {p.name: p.read_text(errors="replace") for p in rogue_dir.glob("*.log")}
        shutil.rmtree(rogue_dir, ignore_errors=True)

    print("intruder:", answers, "\nrogue workers:", [out[-1000:] for out in rogue_output])
    # The runner did not run the intruder's command, and answered nothing.
    assert not created.exists(), answers
    assert answers and all("reply: {" not in a for a in answers), answers
    runner_logs = "".join(p.read_text() for p in Path(submit_dir, "runners").glob("*.log"))
    assert f"refused a connection from uid {NOBODY}" in runner_logs, runner_logs
    # The rogue worker was never given a task.
    assert sorted(debug) == ["guess.log", "plain.log"], debug
    for log, text in debug.items():
        given = [line for line in text.splitlines() if "rx from manager: task" in line]
        assert "connected to manager" in text and not given, (log, given or text[-3000:])
    assert "this manager requires a password" in rogue_output[0], rogue_output[0]
    assert "wrong password" in rogue_output[1], rogue_output[1]
    # ... and the run went on as if nothing happened.
    assert returncode == 0, bps.output
    assert registered_outputs(submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, DRP_LABELS)
    # The secrets are the owner's alone; none was printed or stored.
    for name in ("work_queue.password", "runner.key"):
        path = Path(submit_dir, "secrets", name)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        secret = path.read_text().strip()
        assert secret and secret not in bps.output
        assert secret.encode() not in Path(submit_dir, "gen3_workflow.sqlite3").read_bytes()
    assert stat.S_IMODE(Path(submit_dir, "secrets").stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(submit_dir, "gen3_workflow.sqlite3").stat().st_mode) & 0o077 in (0, 0o040)


@pytest.fixture
def node_runner(tmp_path: Path):
    """A real node runner of a run in ``tmp_path/submit`` (secrets made
    as a session makes them), stopped afterwards."""
    submit_dir = tmp_path / "submit"
    (submit_dir / "runners").mkdir(parents=True)
    run_secrets.create(str(submit_dir))
    log = submit_dir / "runners" / "runner.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", node_runner_module.__name__, "--run-dir", str(submit_dir)],
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
        )
    name = socket_name(run_secrets.runner_key(str(submit_dir)))
    try:
        wait_for(lambda: _listening(name), lambda: f"the node runner listening: {log.read_text()}", 60)
        yield submit_dir, name, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _listening(name: str) -> bool:
    conn = connect_to_node_runner(name)
    if conn is not None:
        conn.close()
    return conn is not None


def _ask(name: str, line: bytes) -> bytes:
    """Send one line to the runner as this user; what it answers."""
    conn = connect_to_node_runner(name)
    assert conn is not None
    with conn:
        conn.settimeout(60)
        conn.sendall(line)
        data = b""
        while not data.endswith(b"\n") and (chunk := conn.recv(65536)):
            data += chunk
    return data


def test_node_runner_takes_only_signed_requests_with_logs_in_the_run(node_runner, tmp_path: Path) -> None:
    submit_dir, name, log = node_runner
    key = run_secrets.runner_key(str(submit_dir))
    logs = {"stdout": str(submit_dir / "logs" / "job.out"), "stderr": str(submit_dir / "logs" / "job.err")}
    job = {"argv": ["/bin/bash", "-c", "echo ran as a job"], "env": [], "seq": 1, "cwd": str(tmp_path)}
    job.update(logs)

    # The owner's request, signed with the run's key: run, answered.
    reply = json.loads(_ask(name, encode_request(key, job)))
    assert reply["code"] == 0 and "refused" not in reply, reply
    assert "ran as a job" in Path(logs["stdout"]).read_text()

    # Unsigned (as the runner took requests before), or signed with another key: no answer, nothing run.
    created = tmp_path / "created"
    forged = {**job, "argv": ["/bin/bash", "-c", f"touch {created}"]}
    assert _ask(name, (json.dumps(forged) + "\n").encode()) == b""
    assert _ask(name, encode_request(b"0" * 64, forged)) == b""
    tampered = encode_request(key, job).replace(b"echo ran as a job", f"touch {created}".encode())
    assert _ask(name, tampered) == b""

    # Signed, but its log outside the submit directory: refused with the reason.
    outside = tmp_path / "outside.log"
    for field in ("stdout", "stderr"):
        for path in (str(outside), str(submit_dir / ".." / "outside.log")):
            answer = json.loads(_ask(name, encode_request(key, {**forged, field: path})))
            assert "outside the run's submit directory" in answer["refused"], answer
    assert not created.exists() and not outside.exists()

    # Another user cannot even connect.
    probe = _as_nobody(["/usr/bin/python3", "-c", _INTRUDER, name[1:], str(created)])
    assert "reply: {" not in probe.communicate(timeout=30)[0]
    assert not created.exists()

    text = log.read_text()
    assert text.count("it is not signed with the run's key") == 3, text
    assert text.count("is outside the run's submit directory") == 4, text
    if os.geteuid() == 0:
        assert f"refused a connection from uid {NOBODY}" in text, text
    # The runner went on: the owner's next job runs.
    assert json.loads(_ask(name, encode_request(key, {**job, "seq": 2})))["code"] == 0


@requires_root
def test_a_task_talks_only_to_a_runner_of_its_own_user(tmp_path: Path) -> None:
    """Another user who holds the runner's socket name first (were it known)
    gets no request: the task sees whose socket it is and stops."""
    submit_dir = tmp_path / "submit"
    run_secrets.create(str(submit_dir))
    name = socket_name(run_secrets.runner_key(str(submit_dir)))
    squatter = _as_nobody(["/usr/bin/python3", "-c", _SQUATTER, name[1:]], stdin=subprocess.PIPE)
    try:
        assert squatter.stdout is not None
        assert squatter.stdout.readline().strip() == "listening"
        with pytest.raises(RunnerError, match=f"held by uid {NOBODY}"):
            connect_to_node_runner(name)
    finally:
        squatter.kill()
        squatter.wait()


_SQUATTER = r"""
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1]); s.listen(8)
print("listening", flush=True)
time.sleep(60)
"""
