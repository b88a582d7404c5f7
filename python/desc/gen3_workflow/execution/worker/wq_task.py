"""A faster start for parsl's Work Queue task wrapper.

Every Work Queue task of parsl runs ``python3 exec_parsl_function.py MAP
FUNCTION RESULT``: parsl's own script, which unpickles the app call, runs it
and pickles its result.  The script needs four small parsl modules
(serialization, files, errors), but importing any of them first runs
``parsl/__init__.py``, which imports every executor, provider and the
monitoring database: about 1.5 s of this machine's 2 cores per task, longer
than a warm quantum takes.

``python -m desc.gen3_workflow.execution.worker.wq_task SCRIPT MAP FUNCTION
RESULT`` runs the same script's functions (``load_function``,
``execute_function``, ``dump_result_to_file``) with the ``parsl`` and
``parsl.app`` packages registered as bare namespaces, so that only the
submodules the call needs are imported (about 0.2 s).  When the app is not
one of this package's (whose modules import no parsl package ``__init__``
through the namespaces), or loading the call fails, it hands over to
parsl's script unchanged (``exec``), before anything has run.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
import types
from typing import Any

__all__ = ["main"]

_OURS = "desc.gen3_workflow."


def _bare_packages() -> None:
    """Register ``parsl`` and ``parsl.app`` without running their ``__init__``."""
    spec = importlib.util.find_spec("parsl")
    if spec is None or spec.submodule_search_locations is None:
        raise ImportError("parsl is not installed")
    root = list(spec.submodule_search_locations)[0]
    for name, path in (("parsl", root), ("parsl.app", os.path.join(root, "app"))):
        package = types.ModuleType(name)
        package.__path__ = [path]
        sys.modules[name] = package


def _load_script(script: str) -> Any:
    spec = importlib.util.spec_from_file_location("exec_parsl_function", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _is_ours(function: Any) -> bool:
    """Whether an app function is one of this package's, wrapped at most by
    parsl's ``wrap_error`` (monitoring's wrapper needs the whole of parsl)."""
    while hasattr(function, "__wrapped__"):
        code = getattr(function, "__code__", None)
        if code is None or not code.co_filename.endswith(os.path.join("parsl", "app", "errors.py")):
            return False
        function = function.__wrapped__
    return getattr(function, "__module__", "").startswith(_OURS)


def _hand_over(script: str, files: list[str]) -> None:
    """Run parsl's own script instead, in a fresh interpreter."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, script, *files])


def main(argv: list[str]) -> int:
    """Run one parsl task (see the module documentation)."""
    script, files = argv[0], argv[1:]
    if "parsl" in sys.modules or len(files) != 3:
        _hand_over(script, files)
    map_file, function_file, result_file = files
    try:
        _bare_packages()
        parsl_script = _load_script(script)
        namespace, code, result_name = parsl_script.load_function(map_file, function_file)
        # parsl's name for an unpickled app function (source mode has none).
        function = namespace.get("parsl_function_name")
        if not _is_ours(function):
            raise ImportError(f"not one of {_OURS}*: {function!r}")
    except Exception:
        _hand_over(script, files)
    try:
        result = parsl_script.execute_function(namespace, code, result_name)
    except Exception:
        traceback.print_exc()
        result = parsl_script.RemoteExceptionWrapper(*sys.exc_info())
    try:
        parsl_script.dump_result_to_file(result_file, result)
    except Exception:
        print("Could not write to result file.")
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
