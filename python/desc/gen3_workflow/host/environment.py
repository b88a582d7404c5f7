"""The process environment jobs and parsl workers inherit."""

from __future__ import annotations

import os
import shutil
import sys

__all__ = ["prepare_environment"]


def prepare_environment() -> None:
    """Make this environment's middleware and parsl scripts findable.

    ctrl_bps's default commands call ``${CTRL_MPEXEC_DIR}/bin/pipetask`` and
    ``${DAF_BUTLER_DIR}/bin/butler``.  EUPS defines both; in a pip-installed
    environment they are unset and the scripts live in the interpreter's own
    ``bin``, which may not even be on PATH (``.venv/bin/bps submit`` without
    activating the venv), while parsl starts ``interchange.py`` and worker
    scripts through PATH.  Jobs and workers inherit all of this.

    On an interpreter with CPython gh-128131 (zipfile; 3.12.0-3.12.8,
    3.13.0-3.13.1) it also patches zipfile in this process and puts
    `~desc.gen3_workflow.host.zipfix`'s ``sitecustomize`` first on
    PYTHONPATH, so that every job, worker and spawned child patches its
    own zipfile at start-up.  On other interpreters PYTHONPATH is left alone.
    """
    _fix_zipfile()
    bin_dir = os.path.join(sys.prefix, "bin")
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
    for variable, script in (("CTRL_MPEXEC_DIR", "pipetask"), ("DAF_BUTLER_DIR", "butler")):
        if os.environ.get(variable):
            continue
        found = shutil.which(script)
        if found:
            os.environ[variable] = os.path.dirname(os.path.dirname(os.path.abspath(found)))


def _fix_zipfile() -> None:
    # Imported here: the probe is cheap, but jobs importing this module for
    # other reasons should not pay for it.
    from . import zipfix

    if zipfix.apply_fix():
        zipfix.put_on_pythonpath(os.environ)
