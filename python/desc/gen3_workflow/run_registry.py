"""A per-user list of the runs submitted with this plug-in.

``bps report`` with no ``--id`` must find a user's runs without a batch
system to ask.  Every prepared run appends its submit directory to a small
text file, ``~/.gen3_workflow/runs.txt`` (``GEN3WF_RUN_INDEX`` overrides the
path); each line is written with one ``O_APPEND`` write, so concurrent
submissions never interleave.
"""

from __future__ import annotations

import os

__all__ = ["INDEX_VARIABLE", "index_path", "register_run", "submitted_runs"]

INDEX_VARIABLE = "GEN3WF_RUN_INDEX"


def index_path() -> str:
    """Where the current user's run list lives."""
    return os.environ.get(INDEX_VARIABLE) or os.path.join(
        os.path.expanduser("~"), ".gen3_workflow", "runs.txt"
    )


def register_run(submit_dir: str) -> None:
    """Add a run's submit directory to the user's list."""
    path = index_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (os.path.abspath(submit_dir) + "\n").encode())
    finally:
        os.close(fd)


def submitted_runs() -> list[str]:
    """Submit directories of the user's runs that still exist, newest last."""
    try:
        with open(index_path()) as fh:
            lines = [line.strip() for line in fh]
    except FileNotFoundError:
        return []
    runs = dict.fromkeys(line for line in lines if line)  # ordered, without repeats
    return [run for run in runs if os.path.isdir(run)]
