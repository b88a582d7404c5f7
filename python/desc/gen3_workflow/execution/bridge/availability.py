"""Can this interpreter build the run's executor?  Checked before the
QuantumGraph is built (`check_executor`) and by ``bps ping``.
"""

from __future__ import annotations

import importlib
import platform

from ...errors import SubmissionCheckError
from ...settings.parsl_section import ParslSettings
from .modes import mode_for

__all__ = ["check_executor", "work_queue_missing", "work_queue_unusable_message"]


def work_queue_missing() -> str | None:
    """Why parsl's WorkQueueExecutor cannot be built by this interpreter.

    parsl imports Work Queue as ``ndcctools.work_queue`` (conda's cctools);
    Debian's bindings are the top-level ``work_queue`` module, which
    ``python -m desc.gen3_workflow.cli.ndcctools_shim`` wraps.  Neither exists
    for every Python (Debian's are built for its 3.11 only).

    Returns
    -------
    reason : `str` or `None`
        `None` if ``ndcctools.work_queue`` imports; otherwise why not.
    """
    try:
        importlib.import_module("ndcctools.work_queue")
        return None
    except (ImportError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    try:
        importlib.import_module("work_queue")
    except (ImportError, OSError):
        return (
            f"no Work Queue Python bindings for this interpreter (Python {platform.python_version()}: "
            f"cannot import ndcctools.work_queue, {error})"
        )
    return (
        "Debian's work_queue module imports but ndcctools.work_queue does not "
        f"({error}); run: python -m desc.gen3_workflow.cli.ndcctools_shim"
    )


def work_queue_unusable_message(reason: str) -> str:
    """The one-line refusal of ``executor: WorkQueue`` for ``reason``."""
    return (
        f"parsl_config.executor: WorkQueue cannot run here: {reason}; "
        "use executor ThreadPool or HighThroughput instead"
    )


def check_executor(settings: ParslSettings) -> None:
    """Refuse an executor this interpreter cannot build (today: WorkQueue
    without Work Queue's Python bindings), before the QuantumGraph is built.

    Parameters
    ----------
    settings : `ParslSettings`
        The validated ``parsl_config`` section.

    Raises
    ------
    SubmissionCheckError
        One line naming ``parsl_config.executor``, why and the alternatives.
    """
    if "work_queue" in mode_for(settings).needs():
        reason = work_queue_missing()
        if reason is not None:
            raise SubmissionCheckError(work_queue_unusable_message(reason))
