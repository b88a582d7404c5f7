"""Files through which a job and the runner talk, in ``SUBMIT_DIR/status/``.

A job's own record of how its payload ended is the truth the runner goes
by, whatever the executor says afterwards (a task that never comes back, a
worker lost after the payload succeeded):

``<seq>.exit``
    Written by the job (its supervisor, or the in-process worker) when the
    payload ends: one JSON line with the exit status, the time, and why it
    was stopped if it was (``memory``, ``walltime``, ``killed``), what
    the payload used (`~.job_usage`) and the host that ran it.  Written
    atomically (a temporary file renamed), so a reader never sees half of
    it.  The bash-builtin wrapper keeps to one file per job (making a file
    costs more than the rest of its bookkeeping): it makes this one as the
    payload starts, with a *start record* (a JSON line without ``code``:
    when, on which host) in place of ``<seq>.pids``, and writes the exit
    record over it, with the payload's CPU time as bash's ``times`` on the
    lines after (not atomically: a reader may find it empty for an instant).
``<seq>.kill``
    Written by the runner to ask the job to stop its payload (a job stuck or
    over its time); the supervisor looks for it while the payload runs.
``<seq>.pids``
    Written by the job when it starts, on the node that runs it: when it
    started (the runner shows it running from then on), on which host, and
    the processes
    that stand between the executor and the payload (the job's supervisor;
    Work Queue's resource monitor and parsl's task wrapper), so that the
    runner can kill a task whose processes are left hanging after the
    payload ended.  None for the bash-builtin wrapper's jobs (see above):
    the readers of the start take it from ``<seq>.exit`` then.

Only jobs in flight have files here: the runner removes them once it has
recorded the job.  Standard library only (workers import it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
from collections.abc import Collection

from .job_usage import parse_bash_times

__all__ = [
    "STATUS_DIR",
    "ExitRecord",
    "clear",
    "clear_jobs",
    "ended_jobs",
    "exit_files",
    "kill_requested",
    "marked_jobs",
    "prepare_attempt",
    "read_exit",
    "read_pids",
    "read_start_and_first_host",
    "read_started",
    "request_kill",
    "started_host",
    "this_host",
    "write_exit",
    "write_started",
]

STATUS_DIR = "status"


@dataclasses.dataclass(frozen=True)
class ExitRecord:
    """How a job's payload ended, as the job recorded it."""

    code: int
    """Exit status: the payload's own, or 128 + N if signal N ended it."""
    time: float
    """When it ended (seconds since the epoch), on the node that ran it."""
    reason: str = ""
    """Why the job stopped it: ``memory``, ``walltime`` or ``killed``; empty
    if it ended by itself."""
    detail: str = ""
    """What the job says about it (e.g. the memory it used)."""
    cpu: float | None = None
    """CPU seconds (user + system) the payload took, if measured
    (`~.job_usage`)."""
    max_rss: int | None = None
    """The payload's peak resident memory (bytes), if measured."""
    start: float | None = None
    """When the payload started, on the node that ran it (records written
    before it was kept have none)."""
    host: str = ""
    """The host that ran the payload (empty in records written before it
    was kept)."""


def this_host() -> str:
    """This node's host name, as the kernel has it (a job's own: each node
    of a cluster has its own, where an inherited ``$HOSTNAME`` may be the
    submitting host's)."""
    return socket.gethostname()


def _path(submit_dir: str, seq: int, suffix: str) -> str:
    return os.path.join(submit_dir, STATUS_DIR, f"{seq}.{suffix}")


def write_exit(submit_dir: str, seq: int, record: ExitRecord) -> None:
    """Record how the payload ended (atomically)."""
    path = _path(submit_dir, seq, "exit")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.{os.getpid()}"
    with open(temporary, "w") as fh:
        json.dump(dataclasses.asdict(record), fh)
    os.replace(temporary, path)


def read_exit(submit_dir: str, seq: int) -> ExitRecord | None:
    """How the payload of job ``seq`` ended, if it has (and said so): not
    while the bash-builtin wrapper's start record stands in its place."""
    try:
        with open(_path(submit_dir, seq, "exit")) as fh:
            first, _, times = fh.read().partition("\n")
        found = json.loads(first)
        if "code" not in found:  # the wrapper's start record: still running
            return None
        record = ExitRecord(**found)
    except (OSError, ValueError, TypeError):
        return None
    if times.strip() and record.cpu is None:  # the bash-builtin wrapper's
        record = dataclasses.replace(record, cpu=parse_bash_times(times))
    return record


def request_kill(submit_dir: str, seq: int, reason: str) -> None:
    """Ask the job ``seq`` to stop its payload."""
    path = _path(submit_dir, seq, "kill")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(f"{reason}\n{time.time()}\n")


def kill_requested(submit_dir: str, seq: int) -> str | None:
    """The reason the runner gave for stopping job ``seq``, if it asked."""
    try:
        with open(_path(submit_dir, seq, "kill")) as fh:
            return fh.readline().strip() or "killed"
    except OSError:
        return None


def write_started(
    submit_dir: str,
    seq: int,
    start: float,
    processes: list[tuple[int, float]] | tuple[()] = (),
    host: str | None = None,
) -> None:
    """Record that job ``seq`` started at ``start``, and its processes (pid
    and start time of each), on ``host`` (default: this one).

    A record left by the same attempt on another host means the executor
    ran the job again after losing that host (Work Queue does, for a lost
    worker): the hosts it started on before are kept, for the runner to
    say so (one small read per start, on the node).
    """
    path = _path(submit_dir, seq, "pids")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    host = this_host() if host is None else host
    _, _, before, earlier = _read_started(submit_dir, seq)
    if before and before != host:
        earlier = [*earlier, before]
    record: dict[str, object] = {"start": start, "pids": list(processes), "host": host}
    if earlier:
        record["earlier_hosts"] = earlier
    with open(path, "w") as fh:
        json.dump(record, fh)


def _read_started(submit_dir: str, seq: int) -> tuple[float | None, list[tuple[int, float]], str, list[str]]:
    try:
        try:
            with open(_path(submit_dir, seq, "pids")) as fh:
                found = json.load(fh)
        except FileNotFoundError:
            # The bash-builtin wrapper's job: its start and host are in its
            # one file, the start record first, then the exit record.
            with open(_path(submit_dir, seq, "exit")) as fh:
                found = json.loads(fh.readline())
            found = {"start": found.get("start"), "host": found.get("host")}
        if isinstance(found, list):  # written before the start was kept
            return None, [(int(pid), float(started)) for pid, started in found], "", []
        start = found.get("start")
        return (
            None if start is None else float(start),
            [(int(pid), float(started)) for pid, started in found.get("pids", ())],
            str(found.get("host") or ""),  # none before hosts were kept
            [str(h) for h in found.get("earlier_hosts", ())],
        )
    except (OSError, ValueError, TypeError, AttributeError):
        return None, [], "", []


def read_started(submit_dir: str, seq: int) -> float | None:
    """When job ``seq`` started, if it has said so."""
    return _read_started(submit_dir, seq)[0]


def read_start_and_first_host(submit_dir: str, seq: int) -> tuple[float | None, str]:
    """When job ``seq`` started, if it has said so, and the first host it
    started on (another than its last if the executor ran it again)."""
    start, _, host, earlier = _read_started(submit_dir, seq)
    return start, (earlier[0] if earlier else host)


def read_pids(submit_dir: str, seq: int) -> list[tuple[int, float]]:
    """The processes job ``seq`` recorded (pid, start time)."""
    return _read_started(submit_dir, seq)[1]


def started_host(submit_dir: str, seq: int) -> str:
    """The host job ``seq`` said it started on; empty if it has not said."""
    return _read_started(submit_dir, seq)[2]


def clear(submit_dir: str, seq: int) -> None:
    """Forget job ``seq``'s files (it is recorded)."""
    for suffix in ("exit", "kill", "pids"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(_path(submit_dir, seq, suffix))


def clear_jobs(submit_dir: str, seqs: Collection[int]) -> None:
    """Forget the files of the jobs ``seqs`` (they are recorded): one
    listing of the directory, and a removal per file there, not one per
    file a job might have (`clear`: three per job, most of them misses)."""
    if not seqs:
        return
    wanted = {str(seq) for seq in seqs}
    for seq, suffix in _listed(submit_dir):
        if seq in wanted and suffix in ("exit", "kill", "pids"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(submit_dir, STATUS_DIR, f"{seq}.{suffix}"))


def _listed(submit_dir: str) -> list[tuple[str, str]]:
    """``(seq, suffix)`` of each file here: one listing of the directory,
    which holds the files of the jobs in flight at most."""
    try:
        names = os.listdir(os.path.join(submit_dir, STATUS_DIR))
    except FileNotFoundError:
        return []
    return [(seq, suffix) for seq, _, suffix in (name.partition(".") for name in names) if seq.isdigit()]


def exit_files(submit_dir: str) -> set[int]:
    """The jobs with an ``exit`` file: those that recorded their payload's
    end, and the bash-builtin wrapper's running ones (its start record;
    `read_exit` tells them apart).  One listing, no file read."""
    return {int(seq) for seq, suffix in _listed(submit_dir) if suffix == "exit"}


def ended_jobs(submit_dir: str) -> set[int]:
    """The jobs that recorded their payload's end: a file read per job
    with an ``exit`` file (not those where the bash-builtin wrapper's start
    record still stands)."""
    return {seq for seq in exit_files(submit_dir) if _ended(submit_dir, str(seq))}


def _ended(submit_dir: str, seq: str) -> bool:
    try:
        with open(os.path.join(submit_dir, STATUS_DIR, f"{seq}.exit")) as fh:
            return '"code":' in fh.readline()
    except OSError:
        return False


def marked_jobs(submit_dir: str) -> set[int]:
    """The jobs that have files here."""
    return {int(seq) for seq, _ in _listed(submit_dir)}


def prepare_attempt(submit_dir: str, seq: int) -> None:
    """Before a new attempt of job ``seq``: forget an earlier attempt's
    files, except the record of a payload that succeeded (a restart after
    the submitting process died: the job then does not run again)."""
    record = read_exit(submit_dir, seq)
    if record is not None and record.code == 0 and not record.reason:
        return
    clear(submit_dir, seq)


FORKED_PIDS = "forked.pids"
"""Forks of the submitting process that belong to the run (pid, start time
and kind per line): a fork keeps its parent's environment block, so it
cannot be found by ``GEN3WF_RUN_DIR`` as the run's other processes are."""


def record_fork(submit_dir: str, pid: int, started: float, kind: str) -> None:
    """Append a fork of the submitting process (``kind``: ``init``,
    ``final``, ``runner``, ``node_runner``) to the run's list."""
    path = os.path.join(submit_dir, STATUS_DIR, FORKED_PIDS)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as fh:
        fh.write(f"{pid} {started} {kind}\n")


def read_forks(submit_dir: str) -> list[tuple[int, float, str]]:
    """The run's recorded forks (pid, start time, kind), alive or not."""
    try:
        with open(os.path.join(submit_dir, STATUS_DIR, FORKED_PIDS)) as fh:
            rows = [line.split() for line in fh if line.strip()]
        return [(int(pid), float(started), kind) for pid, started, kind in rows]
    except (OSError, ValueError):
        return []
