"""The exceptions of the plug-in: one tree under `Gen3WorkflowError`.

Each carries the exit status ``bps`` should end with.  The tree imports
nothing, so that light modules (parsl workers, job wrappers) share it;
`desc.gen3_workflow.service` turns these errors into ctrl_bps's
`~lsst.ctrl.bps.BpsSubprocessError` at the boundary, so that ``bps`` prints
the one-line message and exits with that status instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "CommandError",
    "Gen3WorkflowError",
    "ParslConfigError",
    "PlanError",
    "RunInProgressError",
    "RunInterruptedError",
    "RunNotFoundError",
    "RunStateError",
    "RunnerError",
    "StoreWriteError",
    "SubmissionCheckError",
    "UserInputError",
    "WorkflowFailedError",
]


class Gen3WorkflowError(Exception):
    """Base of every error the plug-in raises on purpose."""

    exit_status = 1
    """The status ``bps`` exits with when this error ends a command."""


class UserInputError(Gen3WorkflowError, ValueError):
    """The bps file or command line asks for something that cannot work;
    found before any job starts (exit status 2)."""

    exit_status = 2


class ParslConfigError(UserInputError):
    """A ``parsl_config`` value the plug-in cannot use."""


class SubmissionCheckError(UserInputError):
    """A name or path of the bps configuration that cannot be submitted."""


class CommandError(UserInputError):
    """A job's command line cannot be built from the workflow."""


class PlanError(UserInputError):
    """The GenericWorkflow holds something the plug-in cannot run (e.g. the
    lazy groups of ``bpsBatchSubmission``)."""


class StoreWriteError(Gen3WorkflowError):
    """The run's job-state store could not be written (the process writing
    the plan failed: disk full, store locked, ...)."""


class RunNotFoundError(Gen3WorkflowError):
    """No run (job-state store, saved bps config) where one was named."""


class RunStateError(Gen3WorkflowError):
    """The run is not in a state that allows what was asked."""


class RunInProgressError(RunStateError):
    """The run is already being executed (by this object or another process)."""


class RunnerError(Gen3WorkflowError):
    """A warm runner could not serve a job (it died, or cannot start)."""


class WorkflowFailedError(Gen3WorkflowError):
    """Some job, or the final job, of a run did not succeed."""


class RunInterruptedError(Gen3WorkflowError):
    """The submitting process was told to stop by a signal; the run can be
    resumed.  ``bps`` exits with 128 + the signal's number, as a process
    that signal killed would."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_status = 128 + signum
