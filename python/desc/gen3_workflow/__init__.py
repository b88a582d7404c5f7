"""Parsl-based workflow plug-in for the LSST batch processing system (ctrl_bps).

Data flows one way through the subpackages::

    BpsConfig + GenericWorkflow
      -> settings/   the ``parsl_config:`` section, validated; parsl.Config
      -> plan/       job rows: argument vectors, environments, resources, edges
      -> store/      the job-state store (one SQLite file per run), run index
      -> execution/  the runner hands jobs to parsl, records what comes back
      -> reporting/  bps report/status, progress, summaries, plots

`ParslService` (the ctrl_bps plug-in) and `ParslGraph` (the Python API)
sit on top; ``cli/`` holds the command-line tools, ``demo/`` the demo
pipeline and repository, ``testing/`` the Slurm and PostgreSQL harnesses,
``benchmarks/`` the benchmark scripts.

Names are imported on first use: parsl workers import submodules of this
package (the bash app lives in one), and should not pay for importing the
whole middleware stack behind `ParslService`.  For the same reason every
subpackage's ``__init__`` imports nothing.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ParslConfigError",
    "ParslGraph",
    "ParslService",
    "ParslSettings",
    "ParslWorkflow",
    "WorkflowFailedError",
    "start_pipeline",
]

_WHERE = {
    "ParslConfigError": "errors",
    "ParslSettings": "settings.parsl_section",
    "ParslGraph": "parsl_graph",
    "start_pipeline": "parsl_graph",
    "ParslService": "service",
    "ParslWorkflow": "service",
    "WorkflowFailedError": "errors",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
