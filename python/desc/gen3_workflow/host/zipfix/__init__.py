"""CPython gh-128131 (zipfile random access): detection, warning, and the
workaround that `~desc.gen3_workflow.host.environment.prepare_environment`
gives every job.

The fix itself lives in this directory's ``sitecustomize.py`` (stdlib only),
which Python imports at start-up when the directory is on ``PYTHONPATH``;
this module only reads it.  Nothing here changes anything on an interpreter
without the defect.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping

from .sitecustomize import FIXED_IN, apply_fix, fix_applied, zipfile_has_defect

__all__ = [
    "FIXED_IN",
    "SITE_DIR",
    "apply_fix",
    "defect_warning",
    "fix_applied",
    "interpreter_affected",
    "zipfile_has_defect",
    "put_on_pythonpath",
]

SITE_DIR = os.path.dirname(os.path.abspath(__file__))
"""The directory whose ``sitecustomize.py`` applies the fix at start-up."""


def interpreter_affected() -> bool:
    """Whether this interpreter's own zipfile has gh-128131 (also when this
    process already carries the fix)."""
    return fix_applied() or zipfile_has_defect()


def put_on_pythonpath(environ: MutableMapping[str, str]) -> bool:
    """Put `SITE_DIR` first on ``environ["PYTHONPATH"]`` (once).

    Returns
    -------
    added : `bool`
        Whether it was not there before.
    """
    parts = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if SITE_DIR in parts:
        return False
    environ["PYTHONPATH"] = os.pathsep.join([SITE_DIR, *parts])
    return True


def defect_warning() -> str | None:
    """One line for ``bps ping`` and ``bps submit`` on an affected
    interpreter, `None` on a sound one."""
    if not interpreter_affected():
        return None
    version = platform.python_version()
    problem = (
        f"Python {version} has CPython bug gh-128131 (zipfile mis-reads QuantumGraph files; jobs and the "
        "final job fail with EOFError on graphs of more than ~100 quanta)"
    )
    if fix_applied():
        return (
            f"{problem}; gen3_workflow patches zipfile in bps and in every job it starts, not in other "
            f"programs; fixed in Python {FIXED_IN}"
        )
    return f"{problem} and gen3_workflow could not patch it; use Python {FIXED_IN} or newer"
