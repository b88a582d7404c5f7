"""How a quantum job is handed to parsl.

``execution: process``: a bash app running the job's command, behind a
prefix that exports the run's directory and refuses to start after a
cancel.  ``execution: in_process``: a python app that hands the job to the
worker's warm runner (see `desc.gen3_workflow.execution.in_process`).
Either way the job carries its resource request where the executor takes
one (Work Queue).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from parsl.app.app import bash_app, python_app
from parsl.dataflow.futures import AppFuture

from ..settings.parsl_section import ParslSettings
from ..store.records import JobRecord
from .bash_app import bash_line
from .cancel import job_prefix
from .in_process import run_quantum_job

__all__ = ["Submitter", "make_submitter", "wq_resource_spec"]

Submitter = Callable[[JobRecord, list[AppFuture]], AppFuture]
"""Submit one job, given its parents' futures; return its future."""

# Work Queue insists on cores, memory and disk together; ctrl_bps's default
# memory request is 2048 MB, disk is often left unset.  A job's sandbox
# holds parsl's function and result files (~2 MB, measured): with
# enforce_resources on, the disk default must leave room for them.
_DEFAULT_MEMORY_MB = 2048
_DEFAULT_DISK_MB = 100


def wq_resource_spec(resources: dict[str, Any]) -> dict[str, int]:
    """Work Queue's resource specification for a job's request."""
    return {
        "cores": int(resources.get("cpus") or 1),
        "memory": int(resources.get("memory") or _DEFAULT_MEMORY_MB),
        "disk": int(resources.get("disk") or _DEFAULT_DISK_MB),
    }


def make_submitter(
    settings: ParslSettings, executor_label: str, takes_resource_spec: bool, submit_dir: str
) -> Submitter:
    """The function that submits quantum jobs of a run to parsl.

    Parameters
    ----------
    settings : `ParslSettings`
        Validated ``parsl_config`` (``execution``, ``max_quanta_per_worker``).
    executor_label : `str`
        The parsl executor that runs quantum jobs.
    takes_resource_spec : `bool`
        Whether that executor takes per-task resource specifications.
    submit_dir : `str`
        The run's submit directory.
    """

    def resources(job: JobRecord) -> dict[str, Any]:
        if not takes_resource_spec:
            return {}
        return {"parsl_resource_specification": wq_resource_spec(job.resources)}

    if settings.execution == "in_process":
        in_process_app = python_app(executors=[executor_label])(run_quantum_job)
        max_quanta = settings.max_quanta_per_worker

        def in_process(job: JobRecord, inputs: list[AppFuture]) -> AppFuture:
            return in_process_app(
                job.command, job.stdout, job.stderr, submit_dir, max_quanta, inputs=inputs, **resources(job)
            )

        return in_process
    app = bash_app(executors=[executor_label])(bash_line)
    prefix = job_prefix(submit_dir)

    def process(job: JobRecord, inputs: list[AppFuture]) -> AppFuture:
        command = prefix + job.command.shell()
        return app(command, stdout=job.stdout, stderr=job.stderr, inputs=inputs, **resources(job))

    return process
