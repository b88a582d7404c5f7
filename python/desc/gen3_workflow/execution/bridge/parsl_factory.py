"""Assemble a `parsl.config.Config` from validated settings.

Config -> Executor -> Provider -> Launcher, as parsl composes them; the
executor and provider come from their factories, this module adds what is
run-wide: retries, monitoring, checkpointing and where parsl writes.
"""

from __future__ import annotations

import dataclasses
import os

from parsl.config import Config
from parsl.dataflow.memoization import BasicMemoizer

from ...settings.parsl_section import ParslSettings
from .modes import PARSL_RUN_DIR, ExecutionMode, mode_for
from .parsl_logging import ComponentLogging

__all__ = ["ParslRunConfig", "make_parsl_config"]


@dataclasses.dataclass(frozen=True)
class ParslRunConfig:
    """The parsl `Config` for one run and facts about its executor."""

    config: Config
    """Ready to hand to `parsl.load`."""

    executors: tuple[tuple[str, ExecutionMode], ...]
    """The parsl label of each executor that runs quantum jobs, and how
    the jobs run on it (what it takes, how many at once, ...), in the
    order ``parsl_config`` lists them."""

    @property
    def executor_label(self) -> str:
        """The label of the (first) executor."""
        return self.executors[0][0]

    @property
    def mode(self) -> ExecutionMode:
        """How the jobs of the (first) executor run."""
        return self.executors[0][1]

    @property
    def capacity(self) -> int:
        """Most jobs to hand the (first) executor at once."""
        return self.mode.in_flight()


def make_parsl_config(settings: ParslSettings, submit_dir: str, workflow_name: str) -> ParslRunConfig:
    """Build the parsl configuration of one run.

    Parameters
    ----------
    settings : `ParslSettings`
        Validated ``parsl_config`` section.
    submit_dir : `str`
        The run's submit directory; parsl's run directory, monitoring
        database and checkpoints go inside it.
    workflow_name : `str`
        Name shown by parsl monitoring.

    Returns
    -------
    run_config : `ParslRunConfig`
        The parsl config and the quantum executors' labels and abilities.
    """
    run_dir = os.path.join(submit_dir, PARSL_RUN_DIR)
    modes = [mode_for(entry) for entry in settings.executor_list()]
    executors = [mode.make_executor(submit_dir) for mode in modes]
    monitoring = None
    if settings.monitoring:
        # Imported only when asked for: it pulls in SQLAlchemy machinery.
        from parsl.monitoring import MonitoringHub

        monitoring = MonitoringHub(
            workflow_name=workflow_name,
            logging_endpoint=f"sqlite:///{os.path.join(submit_dir, 'monitoring.db')}",
            # A monitor process per task: workflow_summary has the plug-in's
            # own figures (execution.job_usage), parsl-visualize needs these.
            resource_monitoring_enabled=settings.monitoring_resources,
        )
    memoizer = BasicMemoizer(checkpoint_mode="task_exit") if settings.checkpoint else None
    config = Config(
        executors=executors,
        # The runner retries jobs itself, with new attempts.
        retries=0,
        run_dir=run_dir,
        monitoring=monitoring,
        memoizer=memoizer,
        # The submitting process's parsl log is routed by the session; the
        # other processes parsl starts log through this (execution.parsl_logging).
        initialize_logging=ComponentLogging(settings.log_level),
        usage_tracking=0,
        exit_mode="wait",
        # parsl asks providers for the first blocks only at its first
        # strategy tick; the default 5 s is dead time at the start of a run
        # (a tick costs little: providers are polled at their own, slower
        # intervals, e.g. Slurm's squeue once a minute).
        strategy_period=0.5,
    )
    return ParslRunConfig(config, tuple((e.label, mode) for e, mode in zip(executors, modes, strict=True)))
