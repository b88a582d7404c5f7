"""How a quantum job is handed to parsl: one attempt, no dependencies (the
runner submits a job once its parents have succeeded).

``execution: process``: a bash app that runs the job's command behind a
prefix that exports the run's directory and the job's ``seq`` and refuses
to start after a cancel.  Where jobs run out of the runner's reach (Work
Queue workers, Slurm blocks) or must be held to a memory request or a
walltime, the command runs under the job supervisor
(`desc.gen3_workflow.execution.worker.supervise`); elsewhere a few bash builtins
do the supervisor's bookkeeping (the exit record, not running again a
payload that succeeded) at no cost, and the runner stops jobs itself.
``execution: in_process``: a python app that hands the job to the worker's
warm runner (see `desc.gen3_workflow.execution.warm.in_process`).  Either way the
job carries its resource request where the executor takes one (Work Queue).
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import Any

from parsl.app.app import bash_app, python_app
from parsl.dataflow.futures import AppFuture

from ...store.records import JobRecord, walltime_seconds
from ..job_io import markers, run_secrets
from ..job_io.cancel import job_prefix
from ..job_io.processes import JOB_VARIABLE
from ..warm.in_process import run_quantum_job
from ..worker import supervise
from ..worker.bash_app import bash_line
from .modes import ExecutionMode, RunnerPlace

__all__ = ["Submitter", "supervised", "wq_resource_spec", "wrapped", "wrapped_command"]

# Work Queue insists on cores, memory and disk together; ctrl_bps's default
# memory request is 2048 MB, disk is often left unset.  A job's sandbox
# holds parsl's function and result files (~2 MB, measured): with
# enforce_resources on, the disk default must leave room for them.
_DEFAULT_MEMORY_MB = 2048
_DEFAULT_DISK_MB = 100


def wq_resource_spec(resources: dict[str, Any], memory: int | None = None) -> dict[str, int]:
    """Work Queue's resource specification for a job's request (``memory``
    replaces the job's own request after a memory failure)."""
    return {
        "cores": int(resources.get("cpus") or 1),
        "memory": int(memory or resources.get("memory") or _DEFAULT_MEMORY_MB),
        "disk": int(resources.get("disk") or _DEFAULT_DISK_MB),
    }


# Builtins only; $EPOCHREALTIME is bash 5 (date on older ones), with a
# decimal point whatever the locale.  The host is the kernel's name for this
# node ($HOSTNAME may be inherited from the submitting host), with anything
# but [A-Za-z0-9._-] made a '?' so that it cannot break the JSON.
#
# One file per job, the job's record: made as the payload starts, holding
# its start record (when, on which host), and written over with the exit
# record when it ends (`markers`).  Making a file is the costly part of a
# null job's bookkeeping (0.6 ms of system time on the benchmarks' ext4,
# which has no journal and so passes over every inode freed in the last
# minute, against 0.04 ms to write over one; a shared file system asks its
# metadata server), so the start has no file of its own, and an earlier
# record is read only if there is one.  The payload cannot be exec'd: its
# end is recorded after it.
_WRAPPER = r"""{prefix}export {job_variable}={seq}
if [[ -e {record} ]] && {{ read -r done < {record}; }} 2>/dev/null &&
    [[ $done == *'"code": 0,'*'"reason": ""'* ]]; then
  echo "gen3_workflow: the payload of this job already succeeded; not run again" >&2; exit 0; fi
gen3wf_start=${{EPOCHREALTIME:-$(date +%s)}}; gen3wf_start=${{gen3wf_start/,/.}}
if [[ -r /proc/sys/kernel/hostname ]]; then read -r gen3wf_host < /proc/sys/kernel/hostname
else gen3wf_host=$(uname -n); fi
gen3wf_host=${{gen3wf_host//[^A-Za-z0-9._-]/?}}
printf '{{"start": %s, "host": "%s"}}\n' "$gen3wf_start" "$gen3wf_host" > {record}
{command}
rc=$?; now=${{EPOCHREALTIME:-$(date +%s)}}
{{ printf '{{"code": %d, "time": %s, "start": %s, "reason": "", "detail": "", "host": "%s"}}\n' \
    "$rc" "${{now/,/.}}" "$gen3wf_start" "$gen3wf_host"; times; }} > {record}
exit $rc"""


def wrapped(job: JobRecord, submit_dir: str) -> str:
    """The bash lines that run a job's command and record how it ended,
    starting no process besides the payload.

    As the supervisor does, it records when and on which host the payload
    starts and how it ended (a `markers.ExitRecord`, as JSON, with the
    payload's CPU time as bash's ``times`` after it), and a job whose record
    says it succeeded exits 0 at once.  Both records go to one file, the
    exit record over the start record (`markers.read_started` reads the
    start from either).
    """
    return wrapped_command(job.command.shell(), submit_dir, job.seq)


def wrapped_command(command: str, submit_dir: str, seq: int) -> str:
    """`wrapped` for a shell command line and a job's ``seq``."""
    return _WRAPPER.format(
        prefix=job_prefix(submit_dir),
        job_variable=JOB_VARIABLE,
        seq=seq,
        record=shlex.quote(os.path.join(submit_dir, markers.STATUS_DIR, f"{seq}.exit")),
        command=command,
    )


def supervised(job: JobRecord, submit_dir: str, memory_limit: int | None) -> str:
    """The bash line that runs a job's command under its supervisor.

    Parameters
    ----------
    job : `JobRecord`
        The job.
    submit_dir : `str`
        The run's submit directory.
    memory_limit : `int` or `None`
        The memory (MB) the supervisor holds the job to, if any.
    """
    words = [sys.executable, "-m", supervise.__name__]
    words += ["--submit-dir", submit_dir, "--seq", str(job.seq)]
    if memory_limit:
        words += ["--memory", str(memory_limit)]
    walltime = walltime_seconds(job.resources.get("walltime"))
    if walltime is not None:
        words += ["--walltime", str(walltime)]
    return job_prefix(submit_dir) + "exec " + shlex.join([*words, "--", job.command.shell()])


class Submitter:
    """Submits attempts of quantum jobs of one run to parsl.

    Parameters
    ----------
    mode : `~.modes.ExecutionMode`
        How the run's jobs run (``execution``, ``max_quanta_per_worker``,
        where warm runners live, what holds jobs to their memory).
    executor_label : `str`
        The parsl executor that runs quantum jobs.
    submit_dir : `str`
        The run's submit directory.
    """

    def __init__(self, mode: ExecutionMode, executor_label: str, submit_dir: str) -> None:
        settings = mode.settings
        self.mode = mode
        self.submit_dir = submit_dir
        self.takes_resource_spec = mode.takes_resource_spec
        self.in_process = settings.in_process
        self.max_quanta = settings.max_quanta_per_worker
        if self.in_process:
            self._app = python_app(executors=[executor_label])(run_quantum_job)
        else:
            self._app = bash_app(executors=[executor_label])(bash_line)
        self.memory_limit = mode.supervisor_memory()
        self.node_runner = mode.warm_runner is RunnerPlace.EACH_NODE
        self.relay = mode.relays_locally
        self.enforces_memory = mode.node_runner_memory()
        run_secrets.owner_writable_dir(os.path.join(submit_dir, markers.STATUS_DIR))

    def supervises(self, job: JobRecord) -> bool:
        """Whether the job runs under a supervisor on its node (Work Queue's
        node runner is one for in-process jobs)."""
        if self.in_process:
            return self.node_runner
        return self.mode.supervises(walltime_seconds(job.resources.get("walltime")))

    def __call__(self, job: JobRecord, memory: int | None = None) -> AppFuture:
        """Submit one attempt of ``job``; return its future.

        Parameters
        ----------
        job : `JobRecord`
            The job.
        memory : `int`, optional
            This attempt's memory request (MB), if not the job's own
            (raised after a memory failure).
        """
        memory = memory or job.resources.get("memory")
        resources: dict[str, Any] = {}
        if self.takes_resource_spec:
            resources["parsl_resource_specification"] = wq_resource_spec(job.resources, memory)
        if self.in_process:
            if self.node_runner:
                resources.update(
                    node_runner=True,
                    memory=memory if self.enforces_memory else None,
                    walltime=walltime_seconds(job.resources.get("walltime")),
                    relay=self.relay,
                )
            return self._app(
                job.command, job.stdout, job.stderr, self.submit_dir, job.seq, self.max_quanta, **resources
            )
        if self.supervises(job):
            command = supervised(job, self.submit_dir, memory if self.memory_limit else None)
        else:
            command = wrapped(job, self.submit_dir)
        return self._app(command, stdout=job.stdout, stderr=job.stderr, **resources)
