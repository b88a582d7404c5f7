"""`ParslService`: the ctrl_bps `~lsst.ctrl.bps.BaseWmsService` of this plug-in.

Select it with ``wmsServiceClass: desc.gen3_workflow.ParslService`` in the
bps file, ``--wms-service-class`` or ``BPS_WMS_SERVICE_CLASS``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
from lsst.ctrl.bps import (
    BaseWmsService,
    BaseWmsWorkflow,
    BpsConfig,
    BpsSubprocessError,
    GenericWorkflow,
    WmsRunReport,
    WmsStates,
)
from lsst.daf.butler import Config
from lsst.resources import ResourcePath

from .constants import DEFAULTS_URI
from .errors import Gen3WorkflowError, RunInterruptedError, WorkflowFailedError
from .execution.bridge.availability import check_executor
from .execution.bridge.modes import mode_for
from .execution.bridge.ping import service_ping
from .execution.job_io.cancel import request_cancel
from .host import zipfix
from .host.environment import prepare_environment
from .parsl_graph import ParslGraph
from .plan.workflow import run_info, stream_plan
from .reporting.bps_report import active_runs, detailed_report, quick_status, summary_reports
from .reporting.failures import failure_summary, tried_again_lines
from .settings.executor_list import check_requests_fit
from .settings.parsl_section import ParslSettings
from .settings.submission_checks import check_submission, check_workflow_nodes
from .store.job_store import JobStateStore
from .store.plan_process import PlanWriterProcess
from .store.records import RunState
from .store.run_index import register_run

__all__ = ["ParslService", "ParslWorkflow"]

_LOG = logging.getLogger(__name__)

COMMIT_TIMEOUT = 120.0
COMMIT_TIMEOUT_PER_JOB = 1e-4
"""Seconds the store's writer may take to finish the plan once it has all
of it (indexes, commit): 120 s, and 0.1 s more per thousand jobs (it took
about 5 s at 10^6 jobs)."""

_T = TypeVar("_T")


@contextlib.contextmanager
def _bps_errors() -> Iterator[None]:
    """Hand the plug-in's errors to ctrl_bps as it expects them: ``bps``
    prints the one-line message and exits with the error's status."""
    try:
        yield
    except Gen3WorkflowError as exc:
        raise BpsSubprocessError(exc.exit_status, str(exc)) from exc


def _with_bps_errors(method: Callable[..., _T]) -> Callable[..., _T]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> _T:
        with _bps_errors():
            return method(*args, **kwargs)

    return wrapper


MONITORING_WARNING_JOBS = 100_000
"""From this many jobs, ``bps submit`` warns of what parsl monitoring costs
(parsl's monitoring database is known to become hard to query at 10^5 tasks)."""
MONITORING_BYTES_PER_JOB = 1500
"""What ``monitoring.db`` grows by per job (doc/scale.md: 1.4-1.6 KB)."""


class ParslWorkflow(BaseWmsWorkflow):
    """A prepared run: its plan lives in the submit directory's job-state
    store, so this object only names it.

    Parameters
    ----------
    name : `str`
        Unique name of the workflow.
    config : `lsst.ctrl.bps.BpsConfig`
        The run's configuration.
    submit_path : `str`
        The submit directory, which is also the run's id.
    """

    def __init__(self, name: str, config: BpsConfig, submit_path: str) -> None:
        super().__init__(name, config)
        self.submit_path = submit_path
        self.run_id = submit_path

    @classmethod
    def from_generic_workflow(
        cls, config: BpsConfig, generic_workflow: GenericWorkflow, out_prefix: str, service_class: str
    ) -> ParslWorkflow:
        """Plan the generic workflow into a new store in ``out_prefix``."""
        settings = ParslSettings.from_bps_config(config)
        workflow = cls(generic_workflow.name, config, out_prefix)
        check_workflow_nodes(generic_workflow)
        sites = dict.fromkeys(mode_for(entry).site for entry in settings.executor_list())
        info = run_info(config, settings.as_dict(), "+".join(sites))
        # The store is written by a process of its own while the plan is
        # made (`desc.gen3_workflow.store.plan_process`).
        with PlanWriterProcess(out_prefix, generic_workflow.name, info) as writer:
            jobs = stream_plan(config, generic_workflow, out_prefix, writer)
            writer.commit(timeout=COMMIT_TIMEOUT + jobs * COMMIT_TIMEOUT_PER_JOB)
        with JobStateStore.open(out_prefix) as store:
            check_requests_fit(settings.executor_list(), store.largest_memory_request())
        register_run(out_prefix)
        _LOG.info("Planned %d jobs in %s", jobs, out_prefix)
        if settings.monitoring and jobs >= MONITORING_WARNING_JOBS:
            _LOG.warning(
                "parsl_config.monitoring is on for %d jobs: monitoring.db will grow to about %.1f GB "
                "(1.5 KB per job) and slows parsl's task dispatch; workflow_summary does not need it "
                "(set monitoring: false)",
                jobs,
                jobs * MONITORING_BYTES_PER_JOB / 1e9,
            )
        return workflow

    def write(self, out_prefix: str) -> None:
        """Nothing to write: `from_generic_workflow` filled the store."""


class ParslService(BaseWmsService):
    """Run ctrl_bps workflows with parsl.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        Configuration needed by the WMS service.
    """

    def __init__(self, config: BpsConfig) -> None:
        super().__init__(config)
        prepare_environment()

    @property
    def defaults(self) -> Config:
        """The plug-in's bps defaults, with the final job's ``-j`` fitted to
        this machine (ctrl_bps asks for 16 cores; on a small node that
        oversubscribes it several times over)."""
        defaults = Config(ResourcePath(DEFAULTS_URI))
        defaults["finalJob", "requestCpus"] = min(16, os.cpu_count() or 1)
        return defaults

    @property
    def defaults_uri(self) -> ResourcePath:
        """Where the plug-in's bps defaults live."""
        return ResourcePath(DEFAULTS_URI)

    @_with_bps_errors
    def run_submission_checks(self) -> None:
        """Validate ``parsl_config``, names and paths before the QuantumGraph
        is built; warn of an interpreter defect that would fail the jobs."""
        settings = ParslSettings.from_bps_config(self.config)
        check_submission(self.config)
        check_executor(settings)
        _warn_of_interpreter_defects()

    @_with_bps_errors
    def prepare(
        self, config: BpsConfig, generic_workflow: GenericWorkflow, out_prefix: str | None = None
    ) -> ParslWorkflow:
        """Turn the GenericWorkflow into a planned run in ``out_prefix``.

        Parameters
        ----------
        config : `lsst.ctrl.bps.BpsConfig`
            BPS configuration.
        generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
            Generic representation of a single workflow.
        out_prefix : `str`
            The submit directory.

        Returns
        -------
        workflow : `ParslWorkflow`
            The planned run.
        """
        if out_prefix is None:
            raise ValueError("ParslService.prepare needs the submit directory (out_prefix)")
        return ParslWorkflow.from_generic_workflow(config, generic_workflow, out_prefix, "")

    @_with_bps_errors
    def submit(self, workflow: ParslWorkflow, **kwargs: Any) -> ParslWorkflow:
        """Run the workflow; return when it has ended.

        Raises
        ------
        WorkflowFailedError
            If any job or the final job did not succeed; the message lists
            them (label, data ID, exit code, log file).
        """
        graph = ParslGraph(
            workflow.submit_path, workflow.config, ParslSettings.from_bps_config(workflow.config)
        )
        _finish(graph, _run_loudly(graph))
        return workflow

    def restart(self, wms_workflow_id: str) -> tuple[str | None, str | None, str]:
        """Run again every job of a run that did not succeed, then the final
        job; return when the run has ended.

        Parameters
        ----------
        wms_workflow_id : `str`
            The run's submit directory.

        Returns
        -------
        wms_id, run_name, message : `str`
            The submit directory, the run's name and an empty message.

        Raises
        ------
        click.ClickException
            If the run does not succeed this time either (so that ``bps
            restart`` prints the failures and exits non-zero).
        """
        submit_dir = os.path.abspath(wms_workflow_id)
        try:
            graph = ParslGraph.restore(submit_dir)
        except Gen3WorkflowError as exc:
            return None, None, str(exc)
        try:
            _finish(graph, _run_loudly(graph))
        except RunInterruptedError as exc:
            click.echo(str(exc), err=True)
            raise click.exceptions.Exit(exc.exit_status) from None
        except WorkflowFailedError as exc:
            raise click.ClickException(str(exc)) from None
        return submit_dir, os.path.basename(graph.config["uniqProcName"]), ""

    def cancel(self, wms_id: str, pass_thru: str | None = None) -> tuple[bool, str]:
        """Cancel a running submission.

        Parameters
        ----------
        wms_id : `str`
            The run's submit directory.
        pass_thru : `str`, optional
            Unused.

        Returns
        -------
        deleted : `bool`
            Whether the run took the cancel request.
        message : `str`
            What happened.
        """
        submit_dir = os.path.abspath(wms_id)
        try:
            return request_cancel(submit_dir)
        except Gen3WorkflowError as exc:
            return False, str(exc)

    def list_submitted_jobs(
        self,
        wms_id: str | None = None,
        user: str | None = None,
        require_bps: bool = True,
        pass_thru: str | None = None,
        is_global: bool = False,
    ) -> list[str]:
        """The run named by ``wms_id`` (a submit directory, or its tail), or
        the running runs of ``user``; what ``bps cancel`` acts on."""
        return active_runs(wms_id, user)

    def report(
        self,
        wms_workflow_id: str | None = None,
        user: str | None = None,
        hist: float = 0,
        pass_thru: str | None = None,
        is_global: bool = False,
        return_exit_codes: bool = False,
    ) -> tuple[list[WmsRunReport], str]:
        """One run in detail (``--id``), or this user's runs (ctrl_bps sorts
        them by id): the running ones, and with ``hist`` those that ended
        within that many days.  Exit codes are always filled in (they come from the store)."""
        if wms_workflow_id:
            return detailed_report(wms_workflow_id)
        return summary_reports(user, hist)

    def get_status(
        self, wms_workflow_id: str, hist: float = 1, is_global: bool = False
    ) -> tuple[WmsStates, str]:
        """The run's state, from its store's run row (quick)."""
        return quick_status(wms_workflow_id)

    def ping(self, pass_thru: str | None = None) -> tuple[int, str]:
        """Check what the executor and provider need; ``--pass-thru`` names a
        bps file (or gives ``key=value`` settings) to take them from."""
        _warn_of_interpreter_defects()
        return service_ping(self.config, pass_thru)


def _warn_of_interpreter_defects() -> None:
    """One warning line for ``bps submit`` and ``bps ping`` when this Python
    has CPython gh-128131 (see `~desc.gen3_workflow.host.zipfix`)."""
    message = zipfix.defect_warning()
    if message:
        _LOG.warning(message)


def _run_loudly(graph: ParslGraph) -> RunState | None:
    """Run the graph; an unexpected error becomes a one-line failure that
    points at its traceback, which ``bps --no-log-tty`` would not show."""
    try:
        return graph.run(block=True)
    except Exception as exc:
        path = os.path.join(graph.submit_dir, "submit_error.log")
        with open(path, "a") as fh:
            traceback.print_exc(file=fh)
        raise WorkflowFailedError(
            f"Run {graph.submit_dir} stopped: {type(exc).__name__}: {exc} (traceback in {path}); "
            "bps restart resumes it"
        ) from exc


def _finish(graph: ParslGraph, state: RunState | None) -> None:
    """Tell the user how a run ended; raise if it did not succeed."""
    submit_dir = graph.submit_dir
    if state == RunState.INTERRUPTED:
        signum = graph.interrupted_by or signal.SIGTERM
        raise RunInterruptedError(
            f"Run {submit_dir} was interrupted by {signal.Signals(signum).name}; its jobs and workers "
            f"were stopped. Resume it with: bps restart --id {submit_dir}\n{failure_summary(submit_dir)}",
            signum,
        )
    if state == RunState.CANCELLED:
        raise WorkflowFailedError(f"Run {submit_dir} was cancelled.\n{failure_summary(submit_dir)}")
    if state != RunState.SUCCEEDED:
        raise WorkflowFailedError(failure_summary(submit_dir))
    print(f"All jobs succeeded; logs are in {os.path.join(submit_dir, 'logs')}")
    # What went wrong on the way, even so: jobs tried again, hosts lost.
    with JobStateStore.open(submit_dir) as store:
        notes = tried_again_lines(store)
    for line in notes:
        print(f"  {line}")
