"""Names shared across the package, and with the processes a run starts.

This module imports nothing: parsl workers and job wrappers read it too.
"""

from __future__ import annotations

__all__ = [
    "CANCELLED_EXIT_CODE",
    "CANCELLED_MARK",
    "CANCEL_REQUEST",
    "DEFAULTS_URI",
    "FINAL_JOB_NAME",
    "INIT_JOB_NAME",
    "MONITORING_FILENAME",
    "RUN_DIR_VARIABLE",
    "SERVICE_VARIABLE",
    "SERVICE_CLASS",
    "STORE_FILENAME",
]

SERVICE_CLASS = "desc.gen3_workflow.ParslService"
"""What ``wmsServiceClass`` (or ``BPS_WMS_SERVICE_CLASS``) names to select this plug-in."""

DEFAULTS_URI = "resource://desc.gen3_workflow/config/bps_defaults.yaml"
"""The plug-in's bps defaults."""

STORE_FILENAME = "gen3_workflow.sqlite3"
"""The job-state store, in the submit directory."""

MONITORING_FILENAME = "monitoring.db"
"""parsl's monitoring database (``monitoring: true``), in the submit directory."""

INIT_JOB_NAME = "pipetaskInit"
"""ctrl_bps's name for the job that runs before every quantum."""

FINAL_JOB_NAME = "finalJob"
"""ctrl_bps's name for the job that registers the run's outputs at its end."""

RUN_DIR_VARIABLE = "GEN3WF_RUN_DIR"
"""Exported to every job and runner of a run (its submit directory), so that
cancel and restart can find the run's processes."""

SERVICE_VARIABLE = "GEN3WF_SERVICE_RUN_DIR"
"""Exported, for the length of a run's parsl session, to everything parsl
starts on the submitting machine (HighThroughput's interchange, Local
blocks of workers, Work Queue workers, runners): whatever parsl's own
shutdown leaves is found by it and stopped."""

CANCEL_REQUEST = "cancel.request"
"""Written into the submit directory by ``bps cancel``; taken by the runner."""

CANCELLED_MARK = "cancelled.mark"
"""Written by the runner once cancelled; every job checks it before it starts."""

CANCELLED_EXIT_CODE = 143
"""What a job stopped by a cancel reports (as if killed by SIGTERM)."""
