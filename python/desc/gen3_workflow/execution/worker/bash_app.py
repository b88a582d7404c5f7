"""The function parsl runs as a bash app for every job.

It lives alone in this module because workers unpickle it by module name:
with Work Queue each task starts a fresh Python that imports it, so the
module (and its package's ``__init__``) must import nothing (importing the
runner's module cost ~1.5 s per task).
"""

from __future__ import annotations

__all__ = ["bash_line"]


def bash_line(command: str, stdout: str, stderr: str, **kwargs: object) -> str:
    """Return the command line for parsl's bash app to run.

    ``stdout``, ``stderr`` and parsl's own keywords are consumed by parsl
    before and after the call.
    """
    return command
