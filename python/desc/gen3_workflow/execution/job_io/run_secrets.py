"""A run's secrets: Work Queue's password and the warm runners' key.

Both are made afresh for every parsl session of a run (``bps submit``,
``bps restart``, `~desc.gen3_workflow.ParslGraph.run`) by `create`, in
``SUBMIT_DIR/secrets/`` (mode 0700), each file mode 0600 from the moment it
exists: only the run's owner can read them, on every node that shares the
submit directory.  Nothing else holds them: not the job-state store, not a
log, not a command line (workers are given the password file's *path*).

- ``work_queue.password``: the Work Queue manager's password; a worker must
  prove it knows it (``work_queue_worker --password FILE``) before it is
  given a task.
- ``runner.key``: signs every request to a node runner
  (`~desc.gen3_workflow.execution.warm.protocol`), and names its socket.

The run's control directories (``status/``, ``runners/``) are made
writable by the owner alone (`owner_writable_dir`).

Standard library only (Work Queue tasks import it).
"""

from __future__ import annotations

import os
import secrets
import stat

__all__ = [
    "RUNNER_KEY",
    "SECRETS_DIR",
    "WORK_QUEUE_PASSWORD",
    "create",
    "owner_writable_dir",
    "runner_key",
    "secret_path",
]

SECRETS_DIR = "secrets"
"""The secrets' directory, in the submit directory."""
WORK_QUEUE_PASSWORD = "work_queue.password"
RUNNER_KEY = "runner.key"

_KEY_CACHE: dict[str, tuple[tuple[int, int], bytes]] = {}
"""Runner keys read in this process, by path, with the file's identity."""


def secret_path(submit_dir: str, name: str) -> str:
    """Where the secret ``name`` of a run is kept."""
    return os.path.join(submit_dir, SECRETS_DIR, name)


def create(submit_dir: str) -> None:
    """Write a run's secrets anew (replacing those of a previous session).

    Each file is written to a temporary name with mode 0600 and renamed
    into place, so that no reader ever sees a partial secret and none is
    ever readable by another user, whatever the umask.
    """
    directory = os.path.join(submit_dir, SECRETS_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if stat.S_IMODE(os.stat(directory).st_mode) != 0o700:
        os.chmod(directory, 0o700)
    for name in (WORK_QUEUE_PASSWORD, RUNNER_KEY):
        _write_private(secret_path(submit_dir, name), secrets.token_hex(32) + "\n")


def _write_private(path: str, text: str) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing temporary file keeps its mode otherwise
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def owner_writable_dir(path: str) -> str:
    """Make (if need be) a directory of the run's control files or logs
    that only the owner may write in, whatever the umask (a group-writable
    ``status/`` would let others forge a job's exit record or the pids the
    runner kills; a writable ``runners/``, plant a link where a runner
    appends its log); group and others may read.  Returns ``path``."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o022:
        os.chmod(path, mode & ~0o022)
    return path


def runner_key(submit_dir: str) -> bytes:
    """The run's runner key (read once per process and session).

    Raises
    ------
    OSError
        If the run has no key (it was never run by a session that made
        one), or it cannot be read.
    """
    path = secret_path(submit_dir, RUNNER_KEY)
    info = os.stat(path)
    identity = (info.st_ino, info.st_mtime_ns)
    cached = _KEY_CACHE.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    with open(path, "rb") as file:
        key = file.read().strip()
    if not key:
        raise OSError(f"{path} is empty")
    _KEY_CACHE[path] = (identity, key)
    return key
