"""A per-user index of the submit directories of this plug-in's runs.

Parsl keeps no queue that outlives the submitting process, so ``bps report``
without ``--id`` (and ``bps cancel --user``) would have nothing to list.  Each
prepared run appends its submit directory, one per line, to a text file,
``~/.gen3_workflow/runs.txt`` (``GEN3WF_RUN_INDEX`` names another file).
Everything else about a run is read from its own job-state store.

Appends are single ``write`` calls on a file opened with ``O_APPEND``, so
concurrent submissions on one machine never interleave their lines (on NFS
``O_APPEND`` is not atomic across clients; a torn line only hides one run).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pwd

from ..constants import STORE_FILENAME

__all__ = [
    "INDEX_VARIABLE",
    "index_path",
    "last_write",
    "register_run",
    "resolve_run",
    "run_owner",
    "submitted_runs",
]

_LOG = logging.getLogger(__name__)

INDEX_VARIABLE = "GEN3WF_RUN_INDEX"
_DEFAULT_RELATIVE = os.path.join(".gen3_workflow", "runs.txt")


def index_path(user: str | None = None) -> str:
    """Where a user's index lives.

    Parameters
    ----------
    user : `str`, optional
        Account whose index is wanted; `None` means the current user, for
        whom ``GEN3WF_RUN_INDEX`` overrides the default location.

    Returns
    -------
    path : `str`
        The index file (it may not exist yet).
    """
    if user is None or user == _current_user():
        override = os.environ.get(INDEX_VARIABLE)
        if override:
            return os.path.abspath(os.path.expanduser(override))
        return os.path.join(os.path.expanduser("~"), _DEFAULT_RELATIVE)
    try:
        home = pwd.getpwnam(user).pw_dir
    except KeyError:  # an operator name that is no local account
        return ""
    return os.path.join(home, _DEFAULT_RELATIVE)


def register_run(submit_dir: str) -> None:
    """Append a run's submit directory to the current user's index.

    Never raises: a read-only or full home directory must not stop a
    submission; it only hides the run from ``bps report`` without ``--id``.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    """
    line = os.path.abspath(submit_dir)
    if "\n" in line:
        _LOG.warning("Not indexing %r: a path with a newline cannot be one line of the index", line)
        return
    path = index_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as exc:
        _LOG.warning(
            "Could not add %s to the run index %s (%s); bps report --id still works", line, path, exc
        )


def submitted_runs(user: str | None = None) -> list[str]:
    """Submit directories of indexed runs that still hold a store, newest
    first, each once.

    Parameters
    ----------
    user : `str`, optional
        Also read this account's index, if it has a readable one.  Which runs
        belong to whom is decided by the caller from each run's store (the
        operator of a run need not be a local account).

    Returns
    -------
    submit_dirs : `list` [`str`]
        Absolute paths, most recently registered first.
    """
    paths = [index_path()]
    if user is not None:
        other = index_path(user)
        if other and other not in paths:
            paths.append(other)
    lines: list[str] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                lines.extend(fh.read().splitlines())
        except OSError:  # no index yet, or not ours to read
            continue
    result: list[str] = []
    seen: set[str] = set()
    for line in reversed(lines):
        submit_dir = line.strip()
        if not submit_dir or submit_dir in seen:
            continue
        seen.add(submit_dir)
        if os.path.isfile(os.path.join(submit_dir, STORE_FILENAME)):
            result.append(submit_dir)
    return result


def resolve_run(wms_id: str) -> tuple[list[str], str]:
    """Find the submit directory a ``--id`` names.

    Parameters
    ----------
    wms_id : `str`
        A submit directory (absolute or relative), or the tail of one as
        found in the index: the timestamp directory name or the output run
        collection (``u/operator/payload/timestamp``).

    Returns
    -------
    submit_dirs : `list` [`str`]
        Matching submit directories: one normally, none if nothing matches,
        several if the tail is ambiguous.
    message : `str`
        Why nothing matched, or empty.
    """
    candidate = os.path.abspath(os.path.expanduser(wms_id))
    if os.path.isfile(os.path.join(candidate, STORE_FILENAME)):
        return [candidate], ""
    tail = wms_id.strip().strip("/")
    matches = [d for d in submitted_runs() if tail and (d == candidate or d.endswith("/" + tail))]
    if matches:
        return matches, ""
    if os.path.isdir(candidate):
        return [], f"{candidate} is not a gen3_workflow submit directory (no {STORE_FILENAME} in it)."
    return [], (
        f"No gen3_workflow run found for id '{wms_id}': it is neither a submit directory nor the end of "
        f"one listed in {index_path()}."
    )


def run_owner(submit_dir: str) -> str:
    """The account owning a run's store (empty if unknown)."""
    try:
        return pwd.getpwuid(os.stat(os.path.join(submit_dir, STORE_FILENAME)).st_uid).pw_name
    except (OSError, KeyError):
        return ""


def last_write(submit_dir: str) -> float:
    """When a run's store was last written (0 if unreadable)."""
    base = os.path.join(submit_dir, STORE_FILENAME)
    times = []
    for path in (base, base + "-wal"):
        with contextlib.suppress(OSError):
            times.append(os.path.getmtime(path))
    return max(times, default=0.0)


def _current_user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (some containers)
        return os.environ.get("USER", "")
