"""Checks of a bps configuration made before anything is built or run.

ctrl_bps would otherwise find these problems minutes later, deep inside
QuantumGraph generation, with a usage message from ``pipetask`` (a
``payloadName`` holding ``;`` becomes stray command-line words) or a
traceback.  Each check raises a one-line `~desc.gen3_workflow.errors.SubmissionCheckError` naming the
key and what it accepts.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..errors import SubmissionCheckError

if TYPE_CHECKING:
    pass

__all__ = [
    "check_batch_submission",
    "check_submission",
    "check_workflow_nodes",
]

# Collection names and submit paths are built from these; keep them to
# characters that are safe in both (and never meaningful to a shell).
_NAME_KEYS = ("payloadName", "operator", "project", "campaign")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.+\-/]+$")


def check_batch_submission(config: Any) -> None:
    """Refuse ctrl_bps's batch submission (``bpsBatchSubmission: true``,
    ctrl_bps 30.2026.4300 and newer): it runs the submission stages as a
    control workflow of ``LAZY_GROUP`` nodes, which this plug-in does not run.

    Raises
    ------
    SubmissionCheckError
        If batch submission is on.
    """
    value = _value(config, "bpsBatchSubmission")
    if value is True or str(value).strip().lower() in ("true", "yes", "1"):
        raise SubmissionCheckError(
            "bpsBatchSubmission: true is not supported by gen3_workflow (it cannot run ctrl_bps's "
            "LAZY_GROUP control workflow); remove it or set it to false: bps submit already builds "
            "the QuantumGraph and runs the jobs in one process"
        )


def check_workflow_nodes(generic_workflow: Any) -> None:
    """Refuse a GenericWorkflow with nodes other than payload jobs and
    no-ops (e.g. batch submission's ``LAZY_GROUP``), naming the first one.

    Parameters
    ----------
    generic_workflow : `lsst.ctrl.bps.GenericWorkflow`
        The workflow ctrl_bps hands to ``prepare``.

    Raises
    ------
    SubmissionCheckError
        On the first node of another type.
    """
    from lsst.ctrl.bps import GenericWorkflowJob
    from lsst.ctrl.bps.generic_workflow import GenericWorkflowNodeType

    runnable = {GenericWorkflowNodeType.PAYLOAD, GenericWorkflowNodeType.NOOP}
    # Through networkx's node data, with payload jobs recognized by their
    # class (node_type is a property): 0.07 s per 10^5 jobs, against 0.58 s
    # through get_job and node_type.
    for name, job in generic_workflow.nodes(data="job"):
        if type(job) is GenericWorkflowJob:
            continue
        node_type = job.node_type
        if node_type not in runnable:
            type_name = getattr(node_type, "name", str(node_type))
            hint = (
                " (bpsBatchSubmission: true makes these; set it to false)"
                if type_name == "LAZY_GROUP"
                else ""
            )
            raise SubmissionCheckError(
                f"gen3_workflow cannot run workflow node {name} of type {type_name}{hint}; "
                "it runs payload jobs and no-op nodes only"
            )


def _value(config: Any, key: str) -> Any:
    found, value = config.search(key, opt={"default": None})
    return value if found else None


def _is_local_path(value: str) -> bool:
    return "://" not in value or value.startswith("file://")


def check_submission(config: Any) -> None:
    """Refuse a configuration whose names or paths cannot work.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig`
        The configuration ``bps submit`` is about to use.

    Raises
    ------
    SubmissionCheckError
        On the first problem found, naming the key.
    """
    check_batch_submission(config)
    for key in _NAME_KEYS:
        value = _value(config, key)
        if value is not None and not _SAFE_NAME.match(str(value)):
            raise SubmissionCheckError(
                f"{key}: {str(value)!r} cannot be used in collection names and paths; "
                "allowed: letters, digits and _ . + - /"
            )
    if _value(config, "qgraphFile") is None:
        pipeline = _value(config, "pipelineYaml")
        if pipeline is None:
            raise SubmissionCheckError("pipelineYaml: missing; give the pipeline to run (or qgraphFile)")
        path = str(pipeline).split("#", 1)[0].removeprefix("file://")
        if _is_local_path(str(pipeline)) and not os.path.isfile(path):
            raise SubmissionCheckError(f"pipelineYaml: no such file {path!r}")
    butler = _value(config, "butlerConfig")
    if butler is None:
        raise SubmissionCheckError("butlerConfig: missing; give the butler repository to use")
    butler_path = str(butler).removeprefix("file://")
    if _is_local_path(str(butler)) and not os.path.exists(butler_path):
        raise SubmissionCheckError(f"butlerConfig: no butler repository at {butler_path!r}")
    submit_path = _value(config, "submitPath")
    if submit_path is not None:
        _check_writable("submitPath", str(submit_path))


def _check_writable(key: str, path: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable directory."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not (os.path.isdir(parent) and os.access(parent, os.W_OK | os.X_OK)):
        raise SubmissionCheckError(f"{key}: cannot create {path!r}: {parent!r} is not a writable directory")
