"""Parsl-based workflow plug-in for the LSST batch processing system (ctrl_bps).

Names are imported on first use: parsl workers import submodules of this
package (the bash app lives in one), and should not pay for importing the
whole middleware stack behind `ParslService`.
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
    "ParslConfigError": "parsl_settings",
    "ParslSettings": "parsl_settings",
    "ParslGraph": "parsl_graph",
    "start_pipeline": "parsl_graph",
    "ParslService": "service",
    "ParslWorkflow": "service",
    "WorkflowFailedError": "service",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
