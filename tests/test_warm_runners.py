"""Work Queue's warm path without Work Queue: the node runner (a real one,
reached over its socket as a task reaches it) and the fast start of parsl's
task script (on a real function file that parsl's serializer wrote)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from parsl.app.errors import BashExitFailure
from parsl.serialize import deserialize, pack_apply_message

from desc.gen3_workflow.benchmarks.bench_floors import noop, parsl_modules
from desc.gen3_workflow.execution.job_io import markers, run_secrets
from desc.gen3_workflow.execution.job_io.processes import is_alive, kill_run_processes, run_processes
from desc.gen3_workflow.execution.runner.local_jobs import run_local_job
from desc.gen3_workflow.execution.warm.in_process import run_quantum_job
from desc.gen3_workflow.execution.warm.local_fork import ForkedJob, runs_in_fork
from desc.gen3_workflow.execution.warm.protocol import socket_name
from desc.gen3_workflow.execution.worker import wq_task
from desc.gen3_workflow.store.records import JobCommand, JobKind, JobRecord

PARSL_SCRIPT = str(
    Path(sys.modules["parsl"].__file__).parent / "executors" / "workqueue" / "exec_parsl_function.py"
)


def _job(tmp_path: Path, seq: int, shell: str, **kwargs: object) -> dict:
    """Run ``shell`` as job ``seq`` through the node runner of ``tmp_path``."""
    command = JobCommand(("/bin/bash", "-c", shell), ())
    logs = tmp_path / "logs"
    return run_quantum_job(
        command,
        str(logs / f"{seq}.out"),
        str(logs / f"{seq}.err"),
        str(tmp_path),
        seq,
        node_runner=True,
        **kwargs,
    )


@pytest.fixture
def run_dir(tmp_path: Path):
    run_secrets.create(str(tmp_path))  # as the run's parsl session does
    yield tmp_path
    # The runner watches this process (the test's): stop it as the run's end does.
    kill_run_processes(str(tmp_path))


def test_node_runner_runs_jobs_and_reports_how_they_ended(run_dir: Path) -> None:
    reply = _job(run_dir, 1, "echo hello; echo oops >&2")
    assert reply["code"] == 0 and reply["runner"] != os.getpid()
    assert (run_dir / "logs" / "1.out").read_text().strip() == "hello"
    assert "oops" in (run_dir / "logs" / "1.err").read_text()
    assert markers.read_exit(str(run_dir), 1).code == 0
    # A second job reaches the same runner; each job is its own fork.
    with pytest.raises(BashExitFailure) as failed:
        _job(run_dir, 2, "exit 3")
    assert failed.value.exitcode == 3
    assert markers.read_exit(str(run_dir), 2).code == 3
    with pytest.raises(BashExitFailure) as killed:
        _job(run_dir, 3, "kill -9 $$")
    assert killed.value.exitcode == 137
    # One runner for the run on this machine, its socket named after the run's key.
    # Executors are reused: one runs jobs one after another.
    assert _job(run_dir, 4, "true")["executor"] == reply["executor"]
    # (and its idle executor, a fork of it).
    ours = set(run_processes(str(run_dir)))
    assert len([pid for pid in ours if psutil.Process(pid).ppid() not in ours]) == 1
    other = run_dir / "other"
    run_secrets.create(str(other))
    key = run_secrets.runner_key(str(run_dir))
    assert socket_name(key) != socket_name(run_secrets.runner_key(str(other)))
    # A job that already succeeded is not run again (a task re-sent after a lost worker).
    assert _job(run_dir, 1, "exit 9")["skipped"]


def test_node_runner_holds_jobs_to_their_memory_and_walltime(run_dir: Path) -> None:
    hold = "import time; data = bytearray([1]) * (1000 * 2**20); time.sleep(60)"
    hog = f"{shlex.quote(sys.executable)} -c {shlex.quote(hold)}"
    start = time.monotonic()
    with pytest.raises(BashExitFailure) as memory:
        _job(run_dir, 1, hog, memory=700)
    record = markers.read_exit(str(run_dir), 1)
    assert memory.value.exitcode == 143 and record.reason == "memory"
    assert "more than the 700 MB requested" in record.detail
    assert "more than the 700 MB requested" in (run_dir / "logs" / "1.err").read_text()
    with pytest.raises(BashExitFailure):
        _job(run_dir, 2, "sleep 60", walltime=1.0)
    assert markers.read_exit(str(run_dir), 2).reason == "walltime"
    assert time.monotonic() - start < 40


def test_node_runner_stops_a_job_when_asked_or_when_its_task_goes(run_dir: Path) -> None:
    # The watchdog's request.
    threading.Timer(3.0, markers.request_kill, (str(run_dir), 1, "stuck for 3 s")).start()
    with pytest.raises(BashExitFailure):
        _job(run_dir, 1, "sleep 60")
    assert markers.read_exit(str(run_dir), 1).detail == "stuck for 3 s"
    # Its task killed (a cancel, Work Queue's kill): the job goes too.
    pid_file = run_dir / "payload.pid"
    code = (
        "from desc.gen3_workflow.execution.warm.in_process import run_quantum_job; "
        "from desc.gen3_workflow.store.records import JobCommand; "
        f"run_quantum_job(JobCommand(('/bin/bash', '-c', 'echo $$ > {pid_file}; sleep 60'), ()), "
        f"'{run_dir}/logs/2.out', '{run_dir}/logs/2.err', '{run_dir}', 2, node_runner=True)"
    )
    task = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline and task.poll() is None
        time.sleep(0.1)
    payload = int(pid_file.read_text())
    task.kill()
    task.wait()
    deadline = time.monotonic() + 15
    while is_alive(payload):
        assert time.monotonic() < deadline, "the job outlived its task"
        time.sleep(0.1)


def _function_file(tmp_path: Path, function) -> tuple[str, str, str]:
    fn, mapping, result = (str(tmp_path / name) for name in ("function", "map", "result"))
    with open(fn, "wb") as out:
        pickle.dump({"byte code": pack_apply_message(function, (), {}, buffer_threshold=1024 * 1024)}, out)
    with open(mapping, "wb") as out:
        pickle.dump({}, out)
    return mapping, fn, result


def test_parsl_task_script_starts_without_the_whole_of_parsl(tmp_path: Path) -> None:
    files = _function_file(tmp_path, parsl_modules)
    task = [sys.executable, "-m", wq_task.__name__, PARSL_SCRIPT, *files]
    subprocess.run(task, check=True, cwd=tmp_path)
    loaded = deserialize(Path(files[2]).read_bytes())
    assert "parsl.serialize" in loaded
    assert "parsl.dataflow.dflow" not in loaded and "parsl.executors" not in loaded


def test_parsl_task_script_hands_other_apps_to_parsl(tmp_path: Path) -> None:
    # Not one of the plug-in's functions: parsl's own script runs it.
    files = _function_file(tmp_path, os.getcwd)
    task = [sys.executable, "-m", wq_task.__name__, PARSL_SCRIPT, *files]
    subprocess.run(task, check=True, cwd=tmp_path)
    assert deserialize(Path(files[2]).read_bytes()) == str(tmp_path)
    files = _function_file(tmp_path, noop)
    subprocess.run(task[:3] + [PARSL_SCRIPT, *files], check=True, cwd=tmp_path)
    assert deserialize(Path(files[2]).read_bytes()) == 0


def _init_job(tmp_path: Path, *args: str) -> JobRecord:
    logs = tmp_path / "logs" / "pipetaskInit"
    return JobRecord(
        seq=0,
        name="pipetaskInit",
        label="pipetaskInit",
        kind=JobKind.INIT,
        data_id="{}",
        command=JobCommand(("${CTRL_MPEXEC_DIR}/bin/pipetask", "pre-exec-init-qbb", *args), ()),
        resources={},
        stdout=str(logs / "pipetaskInit.stdout"),
        stderr=str(logs / "pipetaskInit.stderr"),
    )


def test_init_job_in_a_fork_reports_as_its_own_process_would(tmp_path: Path) -> None:
    """``execution: in_process`` runs pipetaskInit in a fork of the
    submitting process: pipetask's exit code and log, in the job's log file."""
    job = _init_job(tmp_path, str(tmp_path / "no_repo"), str(tmp_path / "no.qg"))
    assert runs_in_fork(job)
    code = run_local_job(job, fork=ForkedJob(job, str(tmp_path), start=False))
    assert code == 1
    log = Path(job.stderr).read_text()
    assert "--> in-process execution follows <--" in log and "pre-exec-init-qbb" in log
    assert "no_repo" in log  # pipetask's own error
    # Anything else (a run-qbb command, bash) is not for the fork.
    assert not runs_in_fork(dataclasses.replace(job, command=JobCommand(("/bin/true",), ())))


def test_init_job_in_a_fork_is_stopped_with_its_session(tmp_path: Path) -> None:
    """A cancel while pipetaskInit runs reaches the fork (its own session)."""
    graph = tmp_path / "graph.qg"
    os.mkfifo(graph)  # pipetask blocks reading it, until stopped
    job = _init_job(tmp_path, str(tmp_path / "repo"), str(graph))
    started = time.monotonic()
    asked = []
    code = run_local_job(
        job, lambda: bool(asked.append(1)) or len(asked) > 1, ForkedJob(job, str(tmp_path), start=False)
    )
    assert code == -signal.SIGTERM
    assert len(asked) == 2 and time.monotonic() - started < 15


def test_a_fork_made_ahead_runs_nothing_when_discarded(tmp_path: Path) -> None:
    """The final job's fork is made before parsl starts; a run that ends
    without its final job (interrupted, whenRun: SUCCESS held) discards it."""
    job = _init_job(tmp_path, str(tmp_path / "no_repo"), str(tmp_path / "no.qg"))
    fork = ForkedJob(job, str(tmp_path), start=False)
    # Alive, but not yet one of the run's processes (a cancel does not take it).
    assert is_alive(fork.pid) and fork.pid not in run_processes(str(tmp_path))
    fork.discard()
    assert fork.returncode == 0 and not is_alive(fork.pid)
    assert not Path(job.stderr).exists()


_RUN_QBB = [
    "pipetask",
    "--long-log",
    "--log-level=VERBOSE",
    "run-qbb",
    "/repo",
    "/submit/run.qg",
    "--qgraph-node-id",
    "01a2194f-3158-7d4b-b839-6ed9bf759d16",
]


@pytest.mark.parametrize(
    "extra, direct",
    [
        ([], True),
        (["--summary", "job.json", "--start-method", "spawn", "--no-raise-on-partial-outputs"], True),
        (["-j", "2"], False),
        (["--profile", "prof.out"], False),
        (["--debug"], False),
        (["--pdb"], False),
        (["--coverage"], False),
    ],
)
def test_run_qbb_jobs_skip_pipetasks_command_line_unless_they_need_it(extra: list[str], direct: bool) -> None:
    """A warm executor runs a bps ``run-qbb`` job on the graph it holds open;
    options only pipetask's command line honours send the job through it."""
    from desc.gen3_workflow.execution.warm.warm_qbb import _parse

    assert (_parse(_RUN_QBB + extra) is not None) is direct
    old_format = [word.replace(".qg", ".qgraph") for word in _RUN_QBB]
    assert _parse(old_format) is None
    assert _parse(_RUN_QBB[:-2]) is None  # the whole graph: not a bps job
