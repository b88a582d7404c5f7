"""Find and stop processes, by pid or by the run they belong to (psutil).

Used to stop a run's jobs (``bps cancel``, restarts after a crash, a job
that never returns) and by the test harnesses to stop what they started and
to check that nothing is left behind; nothing here matches processes by a
broad name alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

import psutil

from ...constants import RUN_DIR_VARIABLE
from . import markers

__all__ = [
    "descendants",
    "is_alive",
    "kill_job_processes",
    "kill_processes",
    "kill_run_processes",
    "process_name",
    "run_forks",
    "run_processes",
    "task_processes",
]

JOB_VARIABLE = "GEN3WF_JOB"
"""Set by a job's supervisor for its payload: the job's ``seq``."""


_WRAPPERS = ("cctools-monitor", "exec_parsl_function")
"""What may stand between an executor's worker and a job's process, and be
killed with the job (Work Queue's resource monitor, parsl's task wrapper)."""


def task_processes() -> list[tuple[int, float]]:
    """This process and the executor's wrappers above it (pid, start time):
    what a job records for the watchdog to kill should it never return."""
    me = psutil.Process()
    found = [(me.pid, me.create_time())]
    for parent in me.parents():
        try:
            if not any(w in " ".join(parent.cmdline()) for w in _WRAPPERS):
                break
            found.append((parent.pid, parent.create_time()))
        except psutil.Error:
            break
    return found


def is_alive(pid: int) -> bool:
    """Whether a process runs; a zombie has exited and counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def process_name(pid: int) -> str | None:
    """The command name of a process, `None` if there is none."""
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None


def descendants(roots: Iterable[int]) -> set[int]:
    """The children, grandchildren, ... of ``roots`` (not the roots)."""
    found: set[int] = set()
    for pid in roots:
        try:
            found.update(child.pid for child in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    return found


def run_processes(submit_dir: str, variable: str = RUN_DIR_VARIABLE) -> list[int]:
    """Pids of this machine's processes that belong to jobs of the run in
    ``submit_dir`` (they carry ``GEN3WF_RUN_DIR``), other than this one.

    With ``variable=SERVICE_VARIABLE``: what parsl started for the run on
    this machine (interchange, blocks of workers, runners) instead."""
    pids = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(variable) == submit_dir:
                pids.append(process.pid)
        except psutil.Error:  # gone, or not ours to read
            continue
    if variable == RUN_DIR_VARIABLE:
        # Forks of the submitting process (local_fork) keep its environment
        # block: the run lists them, with whatever they started.
        forks = set(run_forks(submit_dir))
        forks |= descendants(forks)
        pids.extend(sorted(forks - set(pids) - {os.getpid()}))
    return pids


def run_forks(submit_dir: str, kind: str | None = None) -> list[int]:
    """The run's forks of its submitting process that are still running (of
    one ``kind``, or all), as `~.markers.record_fork` listed them."""
    found = []
    for pid, started, what in markers.read_forks(submit_dir):
        if kind not in (None, what):
            continue
        with contextlib.suppress(psutil.Error):
            fork = psutil.Process(pid)
            if abs(fork.create_time() - started) < 1.0 and fork.status() != psutil.STATUS_ZOMBIE:
                found.append(pid)
    return found


def kill_processes(pids: Iterable[int], timeout: float = 5.0) -> set[int]:
    """Send SIGTERM, wait up to ``timeout`` seconds, then SIGKILL what is left.

    Exited processes are never reaped here (a zombie counts as gone): their
    parent, often a `subprocess.Popen` in this process, must still read
    their exit status.

    Parameters
    ----------
    pids : `~collections.abc.Iterable` [`int`]
        Processes to stop.
    timeout : `float`, optional
        Grace period after SIGTERM, in seconds.

    Returns
    -------
    survivors : `set` [`int`]
        Pids still alive 5 s after SIGKILL (normally empty).
    """
    remaining = set(pids)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        remaining = {pid for pid in remaining if is_alive(pid)}
        for pid in remaining:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while remaining and time.monotonic() < deadline:
            remaining = {pid for pid in remaining if is_alive(pid)}
            time.sleep(0.05)
    return remaining


def kill_run_processes(submit_dir: str, grace: float = 3.0) -> int:
    """Terminate every local process of the run's jobs.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    grace : `float`
        Seconds between SIGTERM and SIGKILL.

    Returns
    -------
    count : `int`
        How many processes were signalled.
    """
    pids = run_processes(submit_dir)
    kill_processes(pids, timeout=grace)
    return len(pids)


def kill_job_processes(submit_dir: str, seq: int, grace: float = 3.0) -> int:
    """Kill what is left on this machine of one job of a run: the processes
    it recorded when it started (its supervisor, and the executor's wrappers
    around it, such as Work Queue's resource monitor), their descendants,
    and its payload's processes.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    seq : `int`
        The job.
    grace : `float`
        Seconds between SIGTERM and SIGKILL.

    Returns
    -------
    count : `int`
        How many processes were signalled (0 if the job runs on another node).
    """
    found: set[int] = set()
    for pid, started in markers.read_pids(submit_dir, seq):
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - started) < 1.0:  # not a reused pid
                found.add(pid)
                found.update(child.pid for child in process.children(recursive=True))
        except psutil.Error:
            continue
    wanted = {RUN_DIR_VARIABLE: submit_dir, JOB_VARIABLE: str(seq)}
    for process in psutil.process_iter():
        try:
            environ = process.environ()
        except psutil.Error:
            continue
        if all(environ.get(k) == v for k, v in wanted.items()):
            found.add(process.pid)
    found.discard(os.getpid())
    kill_processes(found, timeout=grace)
    return len(found)
