"""Parsl-based workflow plug-in for the LSST batch processing system (ctrl_bps)."""

from .parsl_settings import ParslConfigError, ParslSettings
from .service import ParslService, ParslWorkflow, WorkflowFailedError

__all__ = ["ParslConfigError", "ParslService", "ParslSettings", "ParslWorkflow", "WorkflowFailedError"]
