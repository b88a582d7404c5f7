"""Run the jobs of a store through parsl, recording every state change.

The init job runs first, locally, once; the quantum jobs go to parsl as
bash apps, each depending on its parents' futures; the final job runs last,
locally, whatever happened before it (it registers what did succeed).
Callbacks from parsl's threads only enqueue `JobUpdate`s; the submitting
thread alone writes them to the store, in batches.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import time

import parsl
from parsl.app.errors import BashExitFailure
from parsl.dataflow.errors import DependencyError
from parsl.dataflow.futures import AppFuture
from parsl.dataflow.states import States

from ..reporting.progress import ProgressReporter
from ..settings.parsl_factory import make_parsl_config
from ..settings.parsl_section import ParslSettings
from ..store.job_store import JobStateStore
from ..store.records import JobKind, JobRecord, JobState, JobUpdate, RunState
from .cancel import take_cancel_request
from .environment import prepare_environment
from .in_process import stop_runners
from .local_jobs import exit_message, run_local_job
from .parsl_logging import route_parsl_logging, unroute_parsl_logging
from .processes import kill_run_processes
from .submitters import make_submitter

__all__ = ["GraphRunner"]

_LOG = logging.getLogger(__name__)

# How often the submitting thread writes queued updates and looks at the
# jobs parsl has launched.
POLL_SECONDS = 1.0
# After a cancel, how long to wait for parsl to report the killed jobs.
CANCEL_DRAIN_SECONDS = 30.0


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
        init_ok = all(
            self._run_local(job) for job in self.store.jobs(kind=JobKind.INIT, states=[JobState.PENDING])
        )
        if init_ok:
            self._run_quanta()
        else:
            now = time.time()
            pending = self.store.jobs(kind=JobKind.QUANTUM, states=[JobState.PENDING])
            self.store.apply(
                JobUpdate(job.seq, JobState.DEP_FAIL, now, message="init job failed") for job in pending
            )
        if self.selected is not None:
            # A partial run: the rest of the graph is still to come, so no
            # final job yet, and the run is not over.
            return RunState.FAILED if self.store.jobs(states=[JobState.FAILED]) else RunState.PREPARED
        final_ok = all(
            self._run_local(job) for job in self.store.jobs(kind=JobKind.FINAL, states=[JobState.PENDING])
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
        jobs = self.store.jobs(kind=JobKind.QUANTUM, states=[JobState.PENDING])
        if self.selected is not None:
            jobs = [job for job in jobs if job.seq in self.selected]
        if not jobs:
            return
        run_config = make_parsl_config(self.settings, self.submit_dir, self.store.run().name)
        log_handler = route_parsl_logging(self.submit_dir, self.settings.log_level)
        dfk = parsl.load(run_config.config)
        self._progress = ProgressReporter.from_settings(self.submit_dir, self.settings)
        try:
            submit = make_submitter(
                self.settings, run_config.executor_label, run_config.takes_resource_spec, self.submit_dir
            )
            parents = self.store.parents()
            futures: dict[int, AppFuture] = {}
            for job in jobs:
                # Parents that already succeeded (or ran locally) have no future.
                inputs = [futures[p] for p in parents.get(job.seq, ()) if p in futures]
                future = submit(job, inputs)
                future.add_done_callback(functools.partial(self._on_done, job))
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
            stopped = self.store.jobs(kind=JobKind.QUANTUM, states=[JobState.LAUNCHED, JobState.RUNNING])
            self.store.apply(JobUpdate(job.seq, JobState.FAILED, now, message="cancelled") for job in stopped)

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
