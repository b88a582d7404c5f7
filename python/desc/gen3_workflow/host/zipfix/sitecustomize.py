"""Work around CPython gh-128131 in every Python process of a run.

CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 read stored (uncompressed) zip
members wrongly after a forward ``seek`` when another handle on the same
archive has read in between: ``ZipExtFile.seek`` asks the shared file for a
``SEEK_CUR`` move, and ``zipfile._SharedFile.seek`` applies it to the
position the *other* handle left.  QuantumGraph ``.qg`` files are such
archives, so ``pipetask run-qbb`` and ``butler aggregate-graph`` fail with
``EOFError`` once a graph has more than about a hundred quanta.

This file is stdlib only.  gen3_workflow puts its directory on the
``PYTHONPATH`` of every job and worker, and only when the submitting
interpreter has the defect, so that Python imports it as ``sitecustomize``
at start-up (including ``multiprocessing`` spawn children).  Then it:

1. checks the defect with a tiny in-memory zip (`zipfile_has_defect`), and
   only if it is there replaces ``zipfile._SharedFile.seek`` with the
   upstream fix (python/cpython PR #128143: ``SEEK_CUR`` relative to this
   handle's own position), keeping the fix only if the check then passes;
2. runs the ``sitecustomize`` it shadows (the next one on ``sys.path``), if
   any, as Python would have.

Imported under its package name (``desc.gen3_workflow.host.zipfix``)
it does nothing until called.
"""

from __future__ import annotations

import io
import os
import sys
import zipfile
from typing import Any

__all__ = ["FIXED_IN", "apply_fix", "fix_applied", "zipfile_has_defect"]

FIXED_IN = "3.12.9 and 3.13.2"
"""The first CPython releases with the upstream fix (and 3.14)."""

_MARK = "_gen3wf_gh128131_fix"


def zipfile_has_defect() -> bool:
    """Whether this interpreter's zipfile, as it is now, mis-reads a stored
    member after another handle moved the shared file (gh-128131).

    Feature detection: an in-memory archive of two stored members; read a
    little of the first, read the second, seek the first forward past its
    read buffer, read again.
    """
    first = bytes(range(256)) * 64  # 16 KiB: larger than ZipExtFile.MIN_READ_SIZE
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("first", first)
        archive.writestr("second", b"x" * 8192)
    try:
        with zipfile.ZipFile(buffer) as archive, archive.open("first") as member:
            member.read(10)
            archive.read("second")
            member.seek(12000)
            return member.read(100) != first[12000:12100]
    except (EOFError, OSError, ValueError, zipfile.BadZipFile):
        return True


def _fixed_seek(self: Any, offset: int, whence: int = 0) -> int:
    # zipfile._SharedFile.seek of CPython 3.12.9 / 3.13.2.
    with self._lock:
        if self._writing():
            raise ValueError(
                "Can't reposition in the ZIP file while there is an open writing handle on it. "
                "Close the writing handle before trying to read."
            )
        if whence == os.SEEK_CUR:
            self._file.seek(self._pos + offset)
        else:
            self._file.seek(offset, whence)
        self._pos = self._file.tell()
        return self._pos


setattr(_fixed_seek, _MARK, True)


def fix_applied() -> bool:
    """Whether ``zipfile._SharedFile.seek`` is this fix (in this process)."""
    shared = getattr(zipfile, "_SharedFile", None)
    return bool(getattr(getattr(shared, "seek", None), _MARK, False))


def apply_fix() -> bool:
    """Patch this process's zipfile if, and only if, it has the defect.

    Returns
    -------
    patched : `bool`
        True if the fix is in place after the call because the defect was
        there (now or at an earlier call); False on a sound interpreter, or
        if the patch did not cure the defect (then it is taken back).
    """
    if fix_applied():
        return True
    shared = getattr(zipfile, "_SharedFile", None)
    if shared is None or not zipfile_has_defect():
        return False
    original = shared.seek
    shared.seek = _fixed_seek
    if zipfile_has_defect():  # not the zipfile this fix was written for
        shared.seek = original
        return False
    return True


def _run_shadowed_sitecustomize() -> None:
    """Run the ``sitecustomize`` this file hides by coming first on
    ``sys.path`` (an environment's own, e.g. Debian's or a conda env's)."""
    import importlib.machinery
    import importlib.util

    here = os.path.realpath(os.path.dirname(os.path.abspath(__file__)))
    rest = [p for p in sys.path if os.path.realpath(os.path.abspath(p or os.curdir)) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


if __name__ == "sitecustomize":
    apply_fix()
    _run_shadowed_sitecustomize()
