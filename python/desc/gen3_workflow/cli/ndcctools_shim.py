"""Make ``ndcctools.work_queue`` importable from Debian's Work Queue bindings.

parsl imports Work Queue as ``ndcctools.work_queue`` (the conda package's
layout), while Debian's ``python3-workqueue`` installs the same bindings as a
top-level ``work_queue`` module.  When, and only when, no real ``ndcctools``
package is importable, this writes a two-file package into the environment's
site-packages that re-exports the Debian module.  It must be a real package
on disk rather than a ``sys.modules`` alias, because parsl starts the Work
Queue submit process with multiprocessing *spawn* (a fresh interpreter).

Run as ``python -m desc.gen3_workflow.cli.ndcctools_shim``.
"""

from __future__ import annotations

import importlib.util
import sys
import sysconfig
from pathlib import Path

__all__ = ["install"]

# (The module's old name: shims written before are still recognised as ours.)
_MARKER = "# Written by desc.gen3_workflow.tools.ndcctools_shim"

_INIT = f'{_MARKER}\n"""Shim over Debian\'s Work Queue bindings (python3-workqueue)."""\n'
_WORK_QUEUE = f"""{_MARKER}
import work_queue as _work_queue

globals().update({{k: v for k, v in vars(_work_queue).items() if not k.startswith("__")}})
"""


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def install(site_packages: Path | None = None) -> str:
    """Install the shim if it is needed and possible.

    Parameters
    ----------
    site_packages : `pathlib.Path`, optional
        Where to write the ``ndcctools`` package; defaults to this
        interpreter's purelib directory.

    Returns
    -------
    message : `str`
        What was done, for the caller to print.
    """
    target = Path(site_packages or sysconfig.get_paths()["purelib"]) / "ndcctools"
    shim_file = target / "work_queue.py"
    ours = shim_file.exists() and shim_file.read_text().startswith(_MARKER)
    if not ours and _has_module("ndcctools.work_queue"):
        return "ndcctools.work_queue is already provided by a real ndcctools; nothing to do."
    if not _has_module("work_queue"):
        return "No Work Queue bindings found (apt-get install python3-workqueue); shim not installed."
    target.mkdir(parents=True, exist_ok=True)
    (target / "__init__.py").write_text(_INIT)
    shim_file.write_text(_WORK_QUEUE)
    return f"Installed ndcctools.work_queue shim over Debian's work_queue in {target}."


if __name__ == "__main__":
    print(install())
    sys.exit(0)
