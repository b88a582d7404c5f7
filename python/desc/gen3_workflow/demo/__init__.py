"""Demo science payload (tiny DRP-shaped PipelineTasks) and repository builder.

`make_demo_repo` builds a butler repository with DemoCam raw data; the tasks
live in `desc.gen3_workflow.demo.tasks` and are wired together by the
``config/pipelines/demo_drp.yaml`` and ``demo_sfp.yaml`` pipelines.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEFAULTS_COLLECTION", "INSTRUMENT", "RAW_RUN", "make_demo_repo"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that ``python -m desc.gen3_workflow.demo.repo`` does
    # not find the module already imported (runpy warns about that), and so
    # that importing the tasks does not pull in the repo builder.
    if name in __all__:
        from . import repo

        return getattr(repo, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
