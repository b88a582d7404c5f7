"""Run the jobs of a store through parsl, recording every state change.

The init job runs first, locally, once; then the quantum jobs, which the
runner hands to parsl itself, a bounded number at a time: a job goes to
parsl only once all its parents have succeeded (`Scheduler`), as one
*attempt* with no dependencies, so that parsl holds what is in flight and
not the whole workflow.  The runner decides retries; the `Watchdog` finds
attempts that do not come back.  The final job runs last, locally, whatever
happened before it (it registers what did succeed), unless the run was
interrupted by a signal.

Callbacks from parsl's threads only enqueue finished attempts; the
submitting thread alone touches the store, in batches, and sleeps only
until the next attempt finishes or the next check is due.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ...host.environment import prepare_environment
from ...settings.parsl_section import ParslSettings
from ...store.job_store import JobStateStore
from ...store.records import JobKind, JobRecord, JobState, JobUpdate, RunState
from ..bridge.parsl_session import ParslSession
from ..job_io import markers
from ..job_io.cancel import take_cancel_request
from ..job_io.oom import RecentOomKills
from ..job_io.processes import kill_run_processes
from ..warm.local_fork import ForkedJob
from .admission import Admission
from .attempts import Attempt, attempt_record, outcome, seen_running, with_oom_kill
from .in_flight import InFlight
from .local_jobs import final_job_held, prepare_forks, run_and_record
from .retry_rules import RetryBook
from .routing import Router, router_for
from .scheduler import Scheduler, has_pending_quanta, scheduler_for
from .store_batch import StoreBatch
from .watchdog import CHECK_SECONDS, Watchdog

__all__ = ["GraphRunner", "ProgressDisplay"]

_LOG = logging.getLogger(__name__)

POLL_SECONDS = 1.0
"""Longest sleep between two looks at the run (cancel requests, starts)."""
FLUSH_SECONDS = 0.25
"""Longest time a state change waits before it is written to the store."""
CANCEL_DRAIN_SECONDS = 30.0
"""After a cancel or a signal, how long to wait for parsl to give back the
attempts whose processes were killed."""


class ProgressDisplay(Protocol):
    """What shows a run's progress while its quantum jobs run (the
    reporting layer's `~desc.gen3_workflow.reporting.progress.ProgressReporter`)."""

    def maybe_report(self) -> object:
        """Report if it is time to."""

    def close(self) -> None:
        """The last report."""


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
    interrupted : `threading.Event`, optional
        Set (by a signal handler) to stop the run; it can be resumed with
        ``bps restart``.
    progress : callable, optional
        Called when the quantum jobs start; returns what shows their
        progress (asked to report after each pass of the loop, closed at
        the end), or `None` for nothing.
    """

    def __init__(
        self,
        store: JobStateStore,
        settings: ParslSettings,
        submit_dir: str,
        selected: set[int] | None = None,
        interrupted: threading.Event | None = None,
        progress: Callable[[], ProgressDisplay | None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.submit_dir = submit_dir
        self.selected = selected
        self.interrupted = interrupted or threading.Event()
        self._cancelled = False
        self._forks: dict[int, ForkedJob] = {}
        self._progress: ProgressDisplay | None = None
        self._make_progress = progress
        self._in_flight = InFlight(submit_dir)
        # The limit of memory-scaled retries is the executors' (`_run_quanta`).
        self._retries = RetryBook(settings.retries, None)
        self._batch = StoreBatch(store, submit_dir)
        self._marked: set[int] = set()
        """Jobs with files of an earlier submission (see `_submit_ready`)."""
        self._oom_kills = RecentOomKills(FLUSH_SECONDS)
        self._router: Router
        """The run's executors (set when the quantum jobs start)."""
        self._label_executors: set[tuple[str, str]] = set()
        """(task label, executor) pairs recorded in the store."""

    def run(self) -> RunState:
        """Run every job that has not succeeded yet, then the final job.

        Returns
        -------
        state : `RunState`
            SUCCEEDED if every job and the final job succeeded, CANCELLED
            after a ``bps cancel``, INTERRUPTED after a signal, else FAILED.
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
        init_jobs = self.store.jobs(kind=JobKind.INIT, states=[JobState.PENDING])
        session: ParslSession | None = None
        if self.settings.in_process:
            # Made before parsl's threads exist; the final job's waits for its turn.
            final_jobs = self.store.jobs(kind=JobKind.FINAL, states=[JobState.PENDING])
            self._forks = prepare_forks(init_jobs + final_jobs, self.submit_dir)

        def start_session() -> None:
            # parsl and the warm runners start while the init job runs (once
            # it is started: a fork of this process must not see parsl's threads).
            nonlocal session
            if session is None and has_pending_quanta(self.store, self.selected):
                session = ParslSession(self.settings, self.submit_dir, self.store.run().name)

        try:
            init_ok = all(self._run_local(job, start_session) for job in init_jobs)
            if init_ok:
                start_session()  # no init job left (a restart)
            if init_ok and session is not None:
                self._run_quanta(session)
            elif not init_ok:
                now = time.time()
                pending = self.store.jobs(kind=JobKind.QUANTUM, states=[JobState.PENDING])
                self.store.apply(
                    JobUpdate(job.seq, JobState.DEP_FAIL, now, message="init job failed") for job in pending
                )
            if session is not None:
                session.close_in_background()  # while the final job runs
            if self.interrupted.is_set():
                return RunState.INTERRUPTED
            if self.selected is not None:
                # A partial run: the rest of the graph is still to come, so no
                # final job yet, and the run is not over.
                return RunState.FAILED if self.store.jobs(states=[JobState.FAILED]) else RunState.PREPARED
            final_ok = all(
                self._run_final(job) for job in self.store.jobs(kind=JobKind.FINAL, states=[JobState.PENDING])
            )
        finally:
            for fork in self._forks.values():
                fork.discard()
            if session is not None:
                session.close()
        if self._cancelled or self.interrupted.is_set():
            # Whatever survived parsl's shutdown (a job started just before it).
            kill_run_processes(self.submit_dir)
        if self._cancelled:
            return RunState.CANCELLED
        if self.interrupted.is_set():
            return RunState.INTERRUPTED
        unfinished = self.store.jobs(states=[s for s in JobState if s != JobState.EXEC_DONE])
        return RunState.SUCCEEDED if (final_ok and not unfinished) else RunState.FAILED

    def _run_final(self, job: JobRecord) -> bool:
        if (why := final_job_held(self.store, job, self._cancelled)) is not None:
            _LOG.warning("%s %s", job.name, why)
            self.store.apply([JobUpdate(job.seq, JobState.DEP_FAIL, time.time(), message=why)])
            return False
        return self._run_local(job)

    def _run_local(self, job: JobRecord, started: Callable[[], None] = lambda: None) -> bool:
        _LOG.info("Running %s locally", job.name)
        stop = lambda: self._take_cancel() or self.interrupted.is_set()  # noqa: E731
        return run_and_record(self.store, job, stop, self._forks.pop(job.seq, None), started)

    # --- the quantum jobs -------------------------------------------------

    def _run_quanta(self, session: ParslSession) -> None:
        scheduler = scheduler_for(self.store, self.selected)
        if not scheduler.pending:
            return
        run_config = session.ready()
        self._progress = self._make_progress() if self._make_progress is not None else None
        watchdog = Watchdog(
            self.submit_dir,
            "/".join(sorted({mode.executor for _, mode in run_config.executors})),
            self.settings.return_grace,
            self.settings.stuck_factor,
            self.settings.stuck_min_seconds,
        )
        try:
            router = router_for(run_config.executors, self.submit_dir)
            self._retries.node_memory = router.memory_cap()
            self._marked = markers.marked_jobs(self.submit_dir)
            self._loop(scheduler, router, watchdog)
        finally:
            if self._progress is not None:
                self._progress.close()
        if self._cancelled or self.interrupted.is_set():
            session.close()
            # Whatever survived parsl's shutdown (a job started just before it).
            kill_run_processes(self.submit_dir)
            message = "cancelled" if self._cancelled else "interrupted"
            now = time.time()
            self._batch.record(
                JobUpdate(a.job.seq, JobState.FAILED, now, a.number, message=message)
                for a in self._in_flight.attempts.values()
            )
            self._in_flight.attempts.clear()
            self._batch.flush()
        for attempt in list(self._in_flight.returning):  # parsl's shutdown stops their tasks
            self._settle(attempt)
        self._batch.flush()

    def _loop(
        self,
        scheduler: Scheduler,
        router: Router,
        watchdog: Watchdog,
    ) -> None:
        """Until nothing is left to run (or a cancel has drained): submit
        what is ready, record what ended, watch what is in flight.  Work
        per pass is proportional to what changed; looks at every attempt in
        flight happen once per `POLL_SECONDS` (starts) and `CHECK_SECONDS`
        (the watchdog)."""
        next_poll = next_check = time.monotonic()
        next_flush = next_poll + FLUSH_SECONDS
        drain_deadline: float | None = None
        admission = Admission(self.store, scheduler, router, self._retries.memory)
        self._router = router
        while self._in_flight or ((scheduler.ready or admission.held) and drain_deadline is None):
            if drain_deadline is None:
                self._submit_ready(admission, scheduler)
            self._in_flight.wait(max(min(next_poll, next_flush) - time.monotonic(), 0.0))
            now = time.time()
            self._handle_finished(scheduler, watchdog, now)
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + POLL_SECONDS
                if drain_deadline is None and (self._take_cancel() or self.interrupted.is_set()):
                    drain_deadline = time.monotonic() + CANCEL_DRAIN_SECONDS
                if drain_deadline is not None:
                    kill_run_processes(self.submit_dir)
                    if time.monotonic() > drain_deadline:
                        break
                started = seen_running(self._in_flight.attempts.values(), now, self.submit_dir)
                self._batch.record(JobUpdate(seq, JobState.RUNNING, now, started=t) for seq, t in started)
                # A worker starts its next job only once its last one ended:
                # what ended while starts were read is recorded in the same
                # batch, so that no more jobs show running than run.  Read
                # after the starts, so that any job seen starting on a worker
                # is seen with its predecessor's end.
                self._handle_finished(scheduler, watchdog, now)
                for attempt in self._in_flight.ended_by_record():
                    self._conclude(attempt, None, scheduler, watchdog, now)
                if self._progress is not None:
                    self._progress.maybe_report()
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + CHECK_SECONDS
                self._watch(watchdog, now)
            if time.monotonic() >= next_flush:
                next_flush = time.monotonic() + FLUSH_SECONDS
                self._batch.flush()
        self._batch.flush()

    def _submit_ready(self, admission: Admission, scheduler: Scheduler) -> None:
        now = time.time()
        for job, memory in admission.unroutable:
            self._batch.record(
                JobUpdate(job.seq, JobState.FAILED, now, message=self._router.why_none(memory))
            )
            self._batch.record(
                JobUpdate(seq, JobState.DEP_FAIL, now, 0, message="a job it depends on failed")
                for seq in scheduler.failed(job.seq)
            )
        admission.unroutable.clear()
        for job, memory, lane in admission.take():
            submit = lane.submit
            number = self._retries.started(job)
            # Only a retry, or a job an earlier submission left files of,
            # has any to clear: not 10^6 misses on the file system.
            if number > 1 or job.seq in self._marked:
                markers.prepare_attempt(self.submit_dir, job.seq)
            supervised = submit.supervises(job)
            attempt = Attempt(job, number, submit(job, memory), now, memory=memory, supervised=supervised)
            attempt.executor = lane.name
            if (job.label, lane.name) not in self._label_executors:
                self._label_executors.add((job.label, lane.name))
                self.store.note_label_executor(job.label, lane.name)
            if not supervised and not submit.mode.remote:
                attempt.oom_kills = self._oom_kills()
            self._in_flight.add(attempt)
            self._batch.record(JobUpdate(job.seq, JobState.LAUNCHED, now, attempts=number))

    def _handle_finished(self, scheduler: Scheduler, watchdog: Watchdog, now: float) -> None:
        for attempt in self._in_flight.came_back():
            if attempt.ended is not None:
                self._settle(attempt)
                continue
            # An attempt given up on may not have come back at all.
            error = attempt.future.exception() if attempt.future.done() else None
            self._conclude(attempt, error, scheduler, watchdog, now)

    def _settle(self, attempt: Attempt) -> None:
        """The task of an attempt concluded from its job's record came back
        (or was given up on): the job's files go, and what the watchdog did
        about the task goes with the job."""
        self._in_flight.settle(attempt)
        self._batch.succeeded(attempt.job.seq)
        if attempt.note and attempt.ended is not None:
            update = JobUpdate(
                attempt.job.seq, JobState.EXEC_DONE, attempt.ended, attempt.number, 0, attempt.note
            )
            self._batch.record(update)

    def _conclude(
        self,
        attempt: Attempt,
        error: BaseException | None,
        scheduler: Scheduler,
        watchdog: Watchdog,
        now: float,
    ) -> None:
        """Record how an attempt ended; release, retry or block what follows."""
        job = attempt.job
        self._in_flight.conclude(attempt)
        self._router.by_name[attempt.executor].release(attempt.memory)
        record = markers.read_exit(self.submit_dir, job.seq)
        result = with_oom_kill(outcome(attempt, error, record, self._cancelled), attempt)
        job.attempts = attempt.number
        ended = attempt_record(attempt, result, record, now, self.submit_dir)
        self._batch.ended(ended)
        message, start, end = ended.message, ended.start, ended.end
        if result.succeeded:
            # Its record goes once the store says exec_done: a kill -9 in
            # between must not make a restart run it again (a returning
            # task's, once it is back).
            if attempt.ended is None:
                self._batch.succeeded(job.seq)
            self._retries.forget(job.seq)
            if start is not None or attempt.running is not None:
                watchdog.succeeded(job.label, end - (start or attempt.running or end))
            self._batch.record(
                JobUpdate(job.seq, JobState.EXEC_DONE, end, attempt.number, 0, message, started=start)
            )
            scheduler.succeeded(job.seq)
            return
        markers.clear(self.submit_dir, job.seq)
        decision = self._retries.failed(job, result.exit_code, result.exceeded)
        if result.retry and decision.retry and not self.interrupted.is_set():
            if decision.memory:
                message = f"{message}; the next attempt asks for {decision.memory} MB"
            _LOG.info("%s attempt %d failed (%s); trying again", job.name, attempt.number, message)
            self._batch.record(
                JobUpdate(job.seq, JobState.PENDING, now, attempt.number, result.exit_code, message)
            )
            scheduler.put_back(job.seq)
            return
        self._retries.forget(job.seq)
        if result.retry and decision.why_not:
            message = f"{message}; not tried again: {decision.why_not}"
        self._batch.record(
            JobUpdate(job.seq, JobState.FAILED, end, attempt.number, result.exit_code, message, started=start)
        )
        self._batch.record(
            JobUpdate(seq, JobState.DEP_FAIL, now, 0, message="a job it depends on failed")
            for seq in scheduler.failed(job.seq)
        )

    def _watch(self, watchdog: Watchdog, now: float) -> None:
        for attempt in watchdog.act(self._in_flight.watched(), now):
            self._in_flight.give_up(attempt)
        if medians := watchdog.medians():
            self.store.set_typical_durations(medians)

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
