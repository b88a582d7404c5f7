"""Run the jobs of a store through parsl, recording every state change.

The init job runs first, locally, once; the quantum jobs go to parsl as
bash apps, each depending on its parents' futures; the final job runs last,
locally, whatever happened before it (it registers what did succeed).
Callbacks from parsl's threads only enqueue `JobUpdate`s; the submitting
thread alone writes them to the store, in batches.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import parsl
from parsl.app.app import bash_app, python_app
from parsl.app.errors import BashExitFailure
from parsl.dataflow.errors import DependencyError
from parsl.dataflow.futures import AppFuture
from parsl.dataflow.states import States

from .bash_job import job_command
from .environment import prepare_environment
from .in_process import run_quantum_job, stop_runners
from .logging_setup import route_parsl_logging, unroute_parsl_logging
from .parsl_config import make_parsl_config
from .parsl_settings import ParslSettings
from .progress import ProgressReporter
from .run_control import job_prefix, kill_run_processes, take_cancel_request
from .state_store import JobRecord, JobState, JobStateStore, JobUpdate, RunState

__all__ = ["GraphRunner", "wq_resource_spec"]

_LOG = logging.getLogger(__name__)

# How often the submitting thread writes queued updates and looks at the
# jobs parsl has launched.
POLL_SECONDS = 1.0
# After a cancel, how long to wait for parsl to report the killed jobs.
CANCEL_DRAIN_SECONDS = 30.0
# Between SIGTERM and SIGKILL for a local job stopped by a cancel.
CANCEL_GRACE_SECONDS = 5.0
# Work Queue insists on cores, memory and disk together; ctrl_bps's default
# memory request is 2048 MB, disk is often left unset.  A job's sandbox
# holds parsl's function and result files (~2 MB, measured): with
# enforce_resources on, the disk default must leave room for them.
_DEFAULT_MEMORY_MB = 2048
_DEFAULT_DISK_MB = 100


def wq_resource_spec(resources: dict) -> dict[str, int]:
    """Work Queue's resource specification for a job's request."""
    return {
        "cores": int(resources.get("cpus") or 1),
        "memory": int(resources.get("memory") or _DEFAULT_MEMORY_MB),
        "disk": int(resources.get("disk") or _DEFAULT_DISK_MB),
    }


def _launch_state(future: AppFuture) -> JobState | None:
    status = future.task_record.get("status")
    if status in (States.launched, States.fail_retryable, States.running):
        return JobState.LAUNCHED
    return None


def _failure(exc: BaseException) -> tuple[JobState, int | None, str]:
    if isinstance(exc, DependencyError):
        return JobState.DEP_FAIL, None, "a job it depends on failed"
    if isinstance(exc, BashExitFailure):
        return JobState.FAILED, exc.exitcode, exit_message(exc.exitcode)
    return JobState.FAILED, None, f"{type(exc).__name__}: {exc}".strip()[:2000]


def exit_message(exit_code: int) -> str:
    """Say how a job ended, naming the signal that killed it if one did.

    A process killed by signal N shows as -N to its parent (subprocess) or as
    128+N through a shell; an OOM kill is a SIGKILL.
    """
    number = -exit_code if exit_code < 0 else exit_code - 128 if 128 < exit_code < 128 + 65 else 0
    try:
        name = signal.Signals(number).name if number else None
    except ValueError:
        name = None
    if name is None:
        return f"exit code {exit_code}"
    return f"exit code {exit_code} (killed by signal {number}, {name})"


def run_local_job(job: JobRecord, should_stop: Callable[[], bool] = lambda: False) -> int:
    """Run an init or final job in a subprocess of the submitting process.

    Parameters
    ----------
    job : `JobRecord`
        The job.
    should_stop : callable, optional
        Asked every `POLL_SECONDS`; when it returns `True` the job's process
        group is terminated (a ``bps cancel`` while the final job runs).

    Returns
    -------
    exit_code : `int`
        The job's exit code (negative for a signal, as subprocess reports).
    """
    os.makedirs(os.path.dirname(job.stdout), exist_ok=True)
    with open(job.stdout, "a") as out, open(job.stderr, "a") as err:
        print(f"--> executable follows <--\n{job.command}\n--> end executable <--", file=err, flush=True)
        # Its own session, so that stopping it reaches the butler command it starts.
        process = subprocess.Popen(
            ["/bin/bash", "-c", job.command], stdout=out, stderr=err, start_new_session=True
        )
        while True:
            try:
                return process.wait(timeout=POLL_SECONDS)
            except subprocess.TimeoutExpired:
                if should_stop():
                    _LOG.warning("Stopping %s", job.name)
                    return _stop_group(process)


def _stop_group(process: subprocess.Popen) -> int:
    """SIGTERM a local job's process group, SIGKILL it after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return process.wait(timeout=CANCEL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            continue
    return process.wait()


class GraphRunner:
    """Execute one run's pending jobs.

    Parameters
    ----------
    store : `JobStateStore`
        The run's store, open for writing.
    settings : `ParslSettings`
        Validated ``parsl_config``.
    submit_dir : `str`
        The run's submit directory.
    selected : `set` [`int`], optional
        Run only the quantum jobs with these ``seq`` (a partial run, after
        which the final job does not run).
    """

    def __init__(
        self, store: JobStateStore, settings: ParslSettings, submit_dir: str, selected: set[int] | None = None
    ) -> None:
        self.store = store
        self.settings = settings
        self.submit_dir = submit_dir
        self.selected = selected
        self._updates: queue.SimpleQueue[JobUpdate] = queue.SimpleQueue()
        self._cancelled = False
        self._progress: ProgressReporter | None = None

    def run(self) -> RunState:
        """Run every job that has not succeeded yet, then the final job.

        Returns
        -------
        state : `RunState`
            SUCCEEDED if every job and the final job succeeded, CANCELLED
            after a ``bps cancel``, else FAILED.
        """
        prepare_environment()
        self.store.start_run()
        state = RunState.FAILED
        try:
            state = self._run_all()
        finally:
            self.store.end_run(state)
        return state

    def _run_all(self) -> RunState:
        init_ok = all(self._run_local(job) for job in self.store.jobs(kind="init", states=[JobState.PENDING]))
        if init_ok:
            self._run_quanta()
        else:
            now = time.time()
            pending = self.store.jobs(kind="quantum", states=[JobState.PENDING])
            self.store.apply(
                JobUpdate(job.seq, JobState.DEP_FAIL, now, message="init job failed") for job in pending
            )
        if self.selected is not None:
            # A partial run: the rest of the graph is still to come, so no
            # final job yet, and the run is not over.
            return RunState.FAILED if self.store.jobs(states=[JobState.FAILED]) else RunState.PREPARED
        final_ok = all(
            self._run_local(job) for job in self.store.jobs(kind="final", states=[JobState.PENDING])
        )
        if self._cancelled:
            return RunState.CANCELLED
        unfinished = self.store.jobs(states=[s for s in JobState if s != JobState.EXEC_DONE])
        return RunState.SUCCEEDED if (final_ok and not unfinished) else RunState.FAILED

    def _run_local(self, job: JobRecord) -> bool:
        _LOG.info("Running %s locally", job.name)
        start = time.time()
        self.store.apply([JobUpdate(job.seq, JobState.RUNNING, start, attempts=job.attempts + 1)])
        stopped = False

        def stop_requested() -> bool:
            nonlocal stopped
            stopped = self._take_cancel()
            return stopped

        exit_code = run_local_job(job, stop_requested)
        state = JobState.EXEC_DONE if exit_code == 0 else JobState.FAILED
        message = None if exit_code == 0 else "cancelled" if stopped else exit_message(exit_code)
        self.store.apply([JobUpdate(job.seq, state, time.time(), exit_code=exit_code, message=message)])
        return exit_code == 0

    def _run_quanta(self) -> None:
        jobs = self.store.jobs(kind="quantum", states=[JobState.PENDING])
        if self.selected is not None:
            jobs = [job for job in jobs if job.seq in self.selected]
        if not jobs:
            return
        run_config = make_parsl_config(self.settings, self.submit_dir, self.store.run_info()["name"])
        log_handler = route_parsl_logging(self.submit_dir, self.settings.log_level)
        dfk = parsl.load(run_config.config)
        self._progress = ProgressReporter.from_settings(self.store, self.settings)
        try:
            submit = self._job_submitter(run_config.executor_label)
            parents = self.store.parents()
            futures: dict[int, AppFuture] = {}
            for job in jobs:
                kwargs: dict[str, object] = {}
                if run_config.takes_resource_spec:
                    kwargs["parsl_resource_specification"] = wq_resource_spec(job.resources)
                # Parents that already succeeded (or ran locally) have no future.
                inputs = [futures[p] for p in parents.get(job.seq, ()) if p in futures]
                future = submit(job, inputs, kwargs)
                future.add_done_callback(lambda f, job=job: self._on_done(job, f))
                futures[job.seq] = future
            self._wait(jobs, futures)
        finally:
            if self._progress is not None:
                self._progress.close()
            dfk.cleanup()
            parsl.clear()
            unroute_parsl_logging(log_handler)
            if self.settings.execution == "in_process":
                # ThreadPool runners live in this process; others ended with their workers.
                stop_runners(self.submit_dir)
        if self._cancelled:
            # Whatever survived parsl's shutdown (a job started just before it).
            kill_run_processes(self.submit_dir)
            now = time.time()
            stopped = self.store.jobs(kind="quantum", states=[JobState.LAUNCHED, JobState.RUNNING])
            self.store.apply(JobUpdate(job.seq, JobState.FAILED, now, message="cancelled") for job in stopped)

    def _job_submitter(self, executor_label: str) -> Callable[[JobRecord, list, dict], Any]:
        """How a quantum job goes to parsl: a bash app running its command
        (``execution: process``) or a python app handing it to the worker's
        in-process runner (``execution: in_process``, see `in_process`)."""
        if self.settings.execution == "in_process":
            in_process_app = python_app(executors=[executor_label])(run_quantum_job)
            max_quanta = self.settings.max_quanta_per_worker

            def in_process(job: JobRecord, inputs: list, kwargs: dict) -> Any:
                return in_process_app(
                    job.command, job.stdout, job.stderr, self.submit_dir, max_quanta, inputs=inputs, **kwargs
                )

            return in_process
        app = bash_app(executors=[executor_label])(job_command)
        prefix = job_prefix(self.submit_dir)

        def process(job: JobRecord, inputs: list, kwargs: dict) -> Any:
            return app(prefix + job.command, stdout=job.stdout, stderr=job.stderr, inputs=inputs, **kwargs)

        return process

    def _on_done(self, job: JobRecord, future: AppFuture) -> None:
        # Runs in a parsl thread: only enqueue.
        attempts = int(future.task_record.get("try_id", 0)) + 1
        exc = future.exception()
        if exc is None:
            self._updates.put(
                JobUpdate(job.seq, JobState.EXEC_DONE, time.time(), attempts=attempts, exit_code=0)
            )
            return
        state, exit_code, message = _failure(exc)
        if state == JobState.DEP_FAIL:
            attempts = 0
        elif self._cancelled:
            message = "cancelled"
        self._updates.put(JobUpdate(job.seq, state, time.time(), attempts, exit_code, message))

    def _wait(self, jobs: list[JobRecord], futures: dict[int, AppFuture]) -> None:
        """Until every future is done: record launches, starts and ends.

        After a cancel request, kill the run's job processes at every poll and
        give up waiting after `CANCEL_DRAIN_SECONDS`.
        """
        waiting = {job.seq: job for job in jobs}
        launched: dict[int, float] = {}
        running: set[int] = set()
        drain_deadline = float("inf")
        while waiting and time.monotonic() < drain_deadline:
            time.sleep(POLL_SECONDS)
            if self._take_cancel():
                drain_deadline = time.monotonic() + CANCEL_DRAIN_SECONDS
            if self._cancelled:
                kill_run_processes(self.submit_dir)
            now = time.time()
            updates = self._drain()
            for update in updates:
                waiting.pop(update.seq, None)
                launched.pop(update.seq, None)
            for seq, job in waiting.items():
                if seq not in launched and _launch_state(futures[seq]) is JobState.LAUNCHED:
                    launched[seq] = now
                    updates.append(JobUpdate(seq, JobState.LAUNCHED, now))
                elif seq in launched and seq not in running and _started_since(job.stderr, launched[seq]):
                    running.add(seq)
                    updates.append(JobUpdate(seq, JobState.RUNNING, now))
            self.store.apply(_in_order(updates))
            if self._progress is not None:
                self._progress.maybe_report()
        self.store.apply(_in_order(self._drain()))

    def _take_cancel(self) -> bool:
        """Whether a cancel request arrived just now (acknowledging it).

        A second request, while the final job registers what the first
        one left, stops the final job too.
        """
        if not take_cancel_request(self.submit_dir):
            return False
        _LOG.warning("Run %s cancelled", self.submit_dir)
        self._cancelled = True
        return True

    def _drain(self) -> list[JobUpdate]:
        updates = []
        while True:
            try:
                updates.append(self._updates.get_nowait())
            except queue.Empty:
                return updates


def _started_since(stderr: str, since: float) -> bool:
    """parsl writes the command to stderr as a job starts; a write after the
    launch means this attempt is running."""
    try:
        return os.stat(stderr).st_mtime >= since - 1.0
    except FileNotFoundError:
        return False


def _in_order(updates: list[JobUpdate]) -> list[JobUpdate]:
    # A job that ends within one poll must not be left 'running' by a launch
    # or start recorded in the same batch: final states are written last.
    return sorted(updates, key=lambda u: u.state.is_final)
