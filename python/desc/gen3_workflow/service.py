"""`ParslService`: the ctrl_bps `~lsst.ctrl.bps.BaseWmsService` of this plug-in.

Select it with ``wmsServiceClass: desc.gen3_workflow.ParslService`` in the
bps file, ``--wms-service-class`` or ``BPS_WMS_SERVICE_CLASS``.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from typing import Any

from lsst.ctrl.bps import BaseWmsService, BaseWmsWorkflow, BpsConfig, BpsSubprocessError, GenericWorkflow
from lsst.daf.butler import Config
from lsst.resources import ResourcePath

from .graph_runner import GraphRunner
from .parsl_settings import ParslSettings
from .state_store import JobStateStore, RunState
from .submit_report import failure_summary
from .workflow_plan import plan_workflow

__all__ = ["ParslService", "ParslWorkflow", "WorkflowFailedError", "parsl_settings_from"]

_LOG = logging.getLogger(__name__)

DEFAULTS_URI = "resource://desc.gen3_workflow/config/bps_defaults.yaml"


class WorkflowFailedError(BpsSubprocessError):
    """Some job, or the final job, of a run did not succeed.

    ctrl_bps prints the message and exits with ``errno`` (1) rather than
    showing a traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(1, message)


def parsl_settings_from(config: BpsConfig) -> ParslSettings:
    """Validate the ``parsl_config`` section of a bps configuration."""
    found, section = config.search("parsl_config", opt={"default": None})
    if found and section is not None and not hasattr(section, "items"):
        raise BpsSubprocessError(2, f"parsl_config: expected a mapping of settings, got {section!r}")
    mapping = section.toDict() if hasattr(section, "toDict") else section
    return ParslSettings.from_mapping(mapping)


def prepare_environment() -> None:
    """Make this environment's middleware and parsl scripts findable.

    ctrl_bps's default commands call ``${CTRL_MPEXEC_DIR}/bin/pipetask`` and
    ``${DAF_BUTLER_DIR}/bin/butler``.  EUPS defines both; in a pip-installed
    environment they are unset and the scripts live in the interpreter's own
    ``bin``, which may not even be on PATH (``.venv/bin/bps submit`` without
    activating the venv), while parsl starts ``interchange.py`` and worker
    scripts through PATH.  Jobs and workers inherit all of this.
    """
    bin_dir = os.path.join(sys.prefix, "bin")
    path = os.environ.get("PATH", "")
    if bin_dir not in path.split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
    for variable, script in (("CTRL_MPEXEC_DIR", "pipetask"), ("DAF_BUTLER_DIR", "butler")):
        if os.environ.get(variable):
            continue
        found = shutil.which(script)
        if found:
            os.environ[variable] = os.path.dirname(os.path.dirname(os.path.abspath(found)))


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
        self.service_class = f"{ParslService.__module__}.{ParslService.__qualname__}"

    @classmethod
    def from_generic_workflow(
        cls, config: BpsConfig, generic_workflow: GenericWorkflow, out_prefix: str, service_class: str
    ) -> ParslWorkflow:
        """Plan the generic workflow into a new store in ``out_prefix``."""
        settings = parsl_settings_from(config)
        workflow = cls(generic_workflow.name, config, out_prefix)
        plan = plan_workflow(config, generic_workflow, out_prefix)
        info = run_info(config, settings)
        store = JobStateStore.in_dir(out_prefix, writable=True)
        try:
            store.write_plan(generic_workflow.name, out_prefix, info, plan.jobs, plan.edges)
        finally:
            store.close()
        _LOG.info("Planned %d jobs in %s", len(plan.jobs), store.path)
        return workflow

    def write(self, out_prefix: str) -> None:
        """Nothing to write: `from_generic_workflow` filled the store."""


def run_info(config: BpsConfig, settings: ParslSettings) -> dict[str, Any]:
    """What report and restart need to know about a run, from its config."""
    info: dict[str, Any] = {}
    for key in ("operator", "project", "campaign", "payloadName", "outputRun", "butlerConfig"):
        _, info[key] = config.search(key, opt={"default": None})
    info["parsl_config"] = {k: getattr(settings, k) for k in settings.keys()}
    return info


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

    def run_submission_checks(self) -> None:
        """Validate ``parsl_config`` before the QuantumGraph is built."""
        parsl_settings_from(self.config)

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
        return ParslWorkflow.from_generic_workflow(
            config, generic_workflow, out_prefix, self.__class__.__name__
        )

    def submit(self, workflow: ParslWorkflow, **kwargs: Any) -> ParslWorkflow:
        """Run the workflow; return when it has ended.

        Raises
        ------
        WorkflowFailedError
            If any job or the final job did not succeed; the message lists
            them (label, data ID, exit code, log file).
        """
        submit_dir = workflow.submit_path
        state = run_submitted(submit_dir, parsl_settings_from(workflow.config))
        if state != RunState.SUCCEEDED:
            raise WorkflowFailedError(failure_summary(submit_dir))
        print(f"All jobs succeeded; logs are in {os.path.join(submit_dir, 'logs')}")
        return workflow


def run_submitted(submit_dir: str, settings: ParslSettings) -> RunState:
    """Run every unfinished job of the run in ``submit_dir``."""
    store = JobStateStore.in_dir(submit_dir, writable=True)
    try:
        return GraphRunner(store, settings, submit_dir).run()
    finally:
        store.close()
