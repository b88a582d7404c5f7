"""Can this machine run the settings' executor and launch its blocks?
Checked before the QuantumGraph is built (`check_executor`) and by ``bps
ping`` (`launch_problem`).
"""

from __future__ import annotations

import importlib
import os
import platform
from collections.abc import Mapping

from ...errors import SubmissionCheckError
from ...settings.parsl_section import ParslSettings
from .modes import mode_for

__all__ = [
    "check_executor",
    "launch_problem",
    "launcher_description",
    "work_queue_missing",
    "work_queue_unusable_message",
]


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
    for entry in settings.executor_list():
        if "work_queue" in mode_for(entry).needs():
            reason = work_queue_missing()
            if reason is not None:
                raise SubmissionCheckError(work_queue_unusable_message(reason))
        if (problem := launch_problem(entry)) is not None:
            raise SubmissionCheckError(problem)


def launcher_description(settings: ParslSettings) -> str | None:
    """How each block of workers starts its workers, for ``bps ping``;
    `None` if the settings start no blocks."""
    if not mode_for(settings).starts_blocks:
        return None
    nodes = settings.nodes_per_block
    where = "this machine" if settings.local_provider else f"a {settings.provider} job"
    if settings.effective_launcher == "Srun":
        return f"srun starts a worker on each of {nodes} node(s) of {where}"
    if settings.effective_launcher == "MpiRun":
        return f"mpirun starts a worker on each of {nodes} node(s) of {where}"
    return f"one worker on {where} (SingleNodeLauncher)"


def launch_problem(settings: ParslSettings, environ: Mapping[str, str] | None = None) -> str | None:
    """Why the settings' blocks could not start their workers here: ``srun``
    across several nodes (``nodes_per_block`` > 1) with the Local provider,
    outside a Slurm allocation (the NERSC walkthrough's set-up, run where
    there is none); `None` if they can."""
    if not mode_for(settings).starts_blocks or not settings.local_provider:
        return None
    allocation = (os.environ if environ is None else environ).get("SLURM_JOB_ID")
    if settings.effective_launcher == "Srun" and not allocation:
        return (
            f"parsl_config.nodes_per_block: {settings.nodes_per_block} with provider Local starts workers "
            "with srun, which needs a Slurm allocation (SLURM_JOB_ID is not set); run bps submit inside "
            "salloc or an sbatch script of that many nodes, or set nodes_per_block: 1 (launcher: Single)"
        )
    return None
