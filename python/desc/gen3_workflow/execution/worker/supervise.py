"""The supervisor every process-mode job runs its payload under.

``python -m desc.gen3_workflow.execution.worker.supervise --submit-dir D --seq N
[--memory MB] [--walltime S] -- COMMAND`` runs ``/bin/bash -c COMMAND`` as
its child, on the worker node, and:

- records how the payload ended in ``D/status/N.exit`` (see `markers`): the
  record the runner trusts, whatever the executor reports afterwards, with
  the payload's CPU time and peak memory (`job_usage`) and this host;
- does not run a payload that already succeeded (an earlier attempt whose
  task never came back): it exits 0 at once;
- holds the payload to its memory request: the resident memory of its whole
  process tree is measured every `POLL_SECONDS`, and a tree over the
  request is stopped, with a message naming the resource;
- stops the payload when it runs past its walltime, or when the runner asks
  (``D/status/N.kill``), or when the supervisor itself is told to stop
  (SIGTERM, SIGINT, SIGHUP from a cancel or the executor).

Its exit status is the payload's (128 + N for a payload ended by signal N),
as a bash app would report it.  Standard library and psutil only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from types import FrameType

import psutil

from ...constants import CANCELLED_EXIT_CODE, CANCELLED_MARK
from ..job_io import markers, oom
from ..job_io.job_usage import children_usage
from ..job_io.processes import JOB_VARIABLE, kill_processes, task_processes

__all__ = ["main", "stop_reason", "tree_rss_mb"]

POLL_SECONDS = 1.0
"""Between two looks at the payload's memory, time and kill requests."""
STOP_GRACE_SECONDS = 5.0
"""Between SIGTERM and SIGKILL when the payload is stopped."""
_MB = 1024 * 1024


def tree_rss_mb(process: psutil.Process) -> float:
    """Resident memory of a process and all its descendants, in MB."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue  # it has just exited
    return total / _MB


def stop_reason(
    submit_dir: str,
    seq: int,
    used_mb: float,
    memory_mb: float | None,
    elapsed: float,
    walltime: float | None,
) -> tuple[str, str]:
    """Why a running job must be stopped, if it must: ``(reason, detail)``,
    or ``("", "")``.  Shared by the supervisor and Work Queue's node runner,
    so that both say the same."""
    if memory_mb and used_mb > memory_mb:
        return "memory", f"used {used_mb:.0f} MB of memory, more than the {memory_mb:.0f} MB requested"
    if walltime and elapsed > walltime:
        return "walltime", f"ran longer than its walltime of {walltime:.0f} s"
    if asked := markers.kill_requested(submit_dir, seq):
        return "killed", asked
    return "", ""


def _stop_tree(child: subprocess.Popen[bytes]) -> int:
    """SIGTERM the payload and its descendants, SIGKILL what is left; return
    the payload's return code.  The payload is reaped by `subprocess` only,
    which must read its status."""
    try:
        descendants = {p.pid for p in psutil.Process(child.pid).children(recursive=True)}
    except psutil.Error:
        descendants = set()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in (child.pid, *descendants):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        try:
            child.wait(timeout=STOP_GRACE_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    kill_processes(descendants, timeout=STOP_GRACE_SECONDS)
    return child.wait()


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class _SignalledError(Exception):
    """The supervisor was told to stop (a signal)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _SignalledError(signum)


def supervise(
    submit_dir: str, seq: int, command: str, memory_mb: float | None, walltime: float | None
) -> int:
    """Run one payload to its end; return the job's exit status."""
    if os.path.exists(os.path.join(submit_dir, CANCELLED_MARK)):
        return CANCELLED_EXIT_CODE
    earlier = markers.read_exit(submit_dir, seq)
    if earlier is not None and earlier.code == 0 and not earlier.reason:
        print(
            "gen3_workflow: the payload of this job already succeeded; not run again",
            file=sys.stderr,
            flush=True,
        )
        return 0
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _raise_stop)
    started = time.time()
    host = markers.this_host()
    markers.write_started(submit_dir, seq, started, task_processes(), host)
    start = time.monotonic()
    kills_before = oom.oom_kills()
    env = {**os.environ, JOB_VARIABLE: str(seq)}
    child = subprocess.Popen(["/bin/bash", "-c", command], env=env)
    payload = psutil.Process(child.pid)
    reason = detail = ""
    peak = 0.0
    try:
        while True:
            try:
                returncode = child.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            used = tree_rss_mb(payload) if memory_mb else 0.0
            peak = max(peak, used)
            reason, detail = stop_reason(submit_dir, seq, used, memory_mb, time.monotonic() - start, walltime)
            if reason:
                print(f"gen3_workflow: the payload {detail}; stopping it", file=sys.stderr, flush=True)
                returncode = _stop_tree(child)
                break
    except _SignalledError as stop:
        _stop_tree(child)
        code = 128 + stop.signum
        record = markers.ExitRecord(code, time.time(), "terminated", str(stop), *_usage(peak), started, host)
        markers.write_exit(submit_dir, seq, record)
        return code
    code = _exit_code(returncode)
    if not reason and oom.was_oom_kill(code, kills_before):
        reason, detail = "memory", oom.OOM_MESSAGE
    record = markers.ExitRecord(code, time.time(), reason, detail, *_usage(peak), started, host)
    markers.write_exit(submit_dir, seq, record)
    return code


def _usage(tree_peak_mb: float) -> tuple[float, int]:
    """The payload's CPU seconds and peak resident memory (bytes): the
    kernel's account of the supervisor's children (the payload and what it
    waited for), the memory its whole tree was seen to hold if more."""
    cpu, max_rss = children_usage()
    return cpu, max(max_rss, int(tree_peak_mb * _MB))


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module documentation)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submit-dir", required=True)
    parser.add_argument("--seq", required=True, type=int)
    parser.add_argument("--memory", type=float, default=None, help="MB of resident memory allowed")
    parser.add_argument("--walltime", type=float, default=None, help="seconds the payload may run")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the payload's bash command")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if len(command) != 1:
        parser.error("expected one bash command after --")
    return supervise(args.submit_dir, args.seq, command[0], args.memory, args.walltime)


if __name__ == "__main__":
    sys.exit(main())
