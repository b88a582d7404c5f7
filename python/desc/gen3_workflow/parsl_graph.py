"""`ParslGraph`: drive, inspect and resume a run from Python.

A ParslGraph is a handle on one submit directory.  Everything it knows about
jobs comes from the run's job-state store, so a graph restored in another
process (or after the submitting one died) sees the same jobs and states,
and ``bps submit`` / ``bps restart`` run through the very same `run`.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from types import FrameType
from typing import IO, Any

from lsst.ctrl.bps import BpsConfig

from .constants import SERVICE_CLASS, SERVICE_VARIABLE
from .errors import RunInProgressError, RunNotFoundError
from .execution.job_io.cancel import clear_cancel_marks
from .execution.job_io.processes import kill_processes, kill_run_processes, run_processes
from .execution.runner.scheduler import with_ancestors
from .reporting.failures import retried_lines
from .reporting.progress import ProgressReporter
from .reporting.text import format_status_table
from .settings.parsl_section import ParslSettings
from .store.job_store import JobStateStore
from .store.liveness import Liveness, liveness
from .store.records import AttemptRecord, JobRecord, JobState, RunState

__all__ = ["ParslGraph", "start_pipeline"]

_LOG = logging.getLogger(__name__)


def start_pipeline(config_file: str, **kwargs: Any) -> ParslGraph:
    """Prepare a run from a bps file, launching nothing.

    ctrl_bps's own acquire, cluster, transform and prepare steps build the
    QuantumGraph and the submit directory, exactly as ``bps submit`` would.

    Parameters
    ----------
    config_file : `str`
        The bps file.
    **kwargs
        What ``bps submit`` takes on its command line (``input``,
        ``output_run``, ``data_query``, ...).

    Returns
    -------
    graph : `ParslGraph`
        The prepared run; call `ParslGraph.run` to execute it.
    """
    from lsst.ctrl.bps.drivers import prepare_driver

    kwargs.setdefault("wms_service", SERVICE_CLASS)
    config, workflow = prepare_driver(config_file, **kwargs)
    return ParslGraph(workflow.submit_path, config, ParslSettings.from_bps_config(config))


class ParslGraph:
    """One run of a workflow, as planned in its submit directory.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory (holding ``gen3_workflow.sqlite3``).
    config : `lsst.ctrl.bps.BpsConfig`
        The run's bps configuration.
    settings : `ParslSettings`
        How to run jobs (validated ``parsl_config``).
    """

    def __init__(self, submit_dir: str, config: BpsConfig, settings: ParslSettings) -> None:
        self.submit_dir = submit_dir
        self.config = config
        self.settings = settings
        self._thread: threading.Thread | None = None
        self._outcome: RunState | BaseException | None = None
        self._interrupted = threading.Event()
        self.interrupted_by: int | None = None
        """The signal that interrupted the last run, if one did."""

    @classmethod
    def restore(cls, submit_dir: str, parsl_config: Mapping[str, Any] | None = None) -> ParslGraph:
        """Re-attach to an existing run.

        Parameters
        ----------
        submit_dir : `str`
            The run's submit directory.
        parsl_config : `~collections.abc.Mapping`, optional
            A ``parsl_config`` section to use instead of the run's own, e.g.
            ``{"executor": "ThreadPool"}`` to finish a run on a login node.

        Returns
        -------
        graph : `ParslGraph`
            A graph whose `run` runs only what has not succeeded.
        """
        submit_dir = os.path.abspath(submit_dir)
        with JobStateStore.open(submit_dir) as store:
            run = store.run()
        saved = sorted(glob.glob(os.path.join(submit_dir, "*_config.yaml")))
        if not saved:
            raise RunNotFoundError(f"No saved bps config (*_config.yaml) in {submit_dir}")
        config = BpsConfig(saved[0])
        settings = ParslSettings.from_mapping(
            parsl_config if parsl_config is not None else run.info.parsl_config
        )
        return cls(submit_dir, config, settings)

    # --- inspecting --------------------------------------------------------

    def status(self, file: IO[str] | None = sys.stdout) -> dict[str, dict[str, int]]:
        """Print and return job counts per task label and state.

        Parameters
        ----------
        file : file-like or `None`
            Where to print the table; `None` prints nothing.

        Returns
        -------
        counts : `dict` [`str`, `dict` [`str`, `int`]]
            Label -> state name (``pending`` ... ``dep_fail``) -> count, labels
            in pipeline order.
        """
        with JobStateStore.open(self.submit_dir) as store:
            counts = store.counts()
            retried = retried_lines(store) if file is not None else []
            executors = store.label_executors()
        if file is not None:
            print(format_status_table(counts, executors), file=file)
            for line in retried:
                print(line, file=file)
        return {
            label: {state.value: n for state, n in by_state.items()} for label, by_state in counts.items()
        }

    def attempts(self, job_name: str) -> list[AttemptRecord]:
        """How each attempt of the job called ``job_name`` ended (exit
        code, memory request, message, the host that ran it), oldest first."""
        with JobStateStore.open(self.submit_dir) as store:
            job = store.job(job_name)
            if job is None:
                raise KeyError(job_name)
            return store.attempts_of([job.seq]).get(job.seq, [])

    def get_jobs(self, task_label: str | None = None, status: str | None = None) -> list[str]:
        """Names of the jobs of one task label, optionally in one state."""
        states = None if status is None else [JobState(status)]
        with JobStateStore.open(self.submit_dir) as store:
            jobs = store.jobs(states=states)
        return [job.name for job in jobs if task_label is None or job.label == task_label]

    def __getitem__(self, job_name: str) -> JobRecord:
        """The job called ``job_name``: state, command line, log files."""
        with JobStateStore.open(self.submit_dir) as store:
            job = store.job(job_name)
        if job is None:
            raise KeyError(job_name)
        return job

    def copy_exec_butler_files(self) -> list[str]:
        """Pre-stage the files jobs need before they start.

        With the quantum-backed butler of current ctrl_bps, on a shared
        filesystem, every job reads the QuantumGraph and the repository in
        place: there is nothing to copy, and this says so.

        Returns
        -------
        staged : `list` [`str`]
            Files copied (none here).
        """
        print(
            "Nothing to stage: jobs read the QuantumGraph and the butler repository in place "
            "(quantum-backed butler on a shared filesystem)."
        )
        return []

    # --- running -----------------------------------------------------------

    def run(self, block: bool = True, jobs: Iterable[str] | None = None) -> RunState | None:
        """Run every job that has not succeeded yet, then the final job.

        Parameters
        ----------
        block : `bool`
            Wait for the end (and return the run's state); with `False`,
            return at once and let `status` follow the run (`wait` joins it).
        jobs : iterable of `str`, optional
            Run only these jobs and what they depend on; the final job does not
            run after such a partial run.

        Returns
        -------
        state : `RunState` or `None`
            How the run ended, if ``block``.
        """
        if self._thread is not None and self._thread.is_alive():
            raise RunInProgressError(f"{self.submit_dir} is already running in this process")
        self._check_not_running_elsewhere()
        # parsl is loaded here, by the calling thread, before the run's thread
        # starts (status, report and cancel never load it); two threads
        # importing it at once deadlock.
        from .execution.runner import graph_runner  # noqa: F401

        selected = None if jobs is None else self._with_ancestors(jobs)
        self._outcome = None
        self._interrupted.clear()
        self.interrupted_by = None
        self._thread = threading.Thread(target=self._execute, args=(selected,), name="gen3_workflow-run")
        self._thread.start()
        return self.wait() if block else None

    def wait(self) -> RunState:
        """Wait for a run started with ``block=False``; return how it ended.

        Waiting in the main thread, SIGTERM, SIGINT and SIGHUP (a pilot
        job's walltime end, Ctrl-C, a closed terminal) interrupt the run:
        its workers, blocks and runners are stopped, it ends INTERRUPTED,
        and ``bps restart`` (or `restore` and `run`) resumes it.  A second
        signal does not wait for parsl's shutdown: the run's blocks are
        cancelled, its processes on this machine killed, and this process
        ends by that signal (the run then reads as interrupted too).
        """
        if self._thread is None:
            raise RuntimeError("run() has not been called")
        with self._signals_interrupt():
            while self._thread.is_alive():
                self._thread.join(timeout=0.5)
        if isinstance(self._outcome, BaseException):
            raise self._outcome
        assert self._outcome is not None
        return self._outcome

    def shutdown(self) -> None:
        """Wait for a running `run` to end and release parsl.

        parsl itself is stopped by each run as it ends; this only makes sure
        none is left going when a session closes.
        """
        if self._thread is not None:
            self._thread.join()

    @contextlib.contextmanager
    def _signals_interrupt(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # (loaded by `run`; a signal handler must not import)
        from .execution.bridge.parsl_session import force_stop

        caught = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {signum: signal.getsignal(signum) for signum in caught}

        def interrupt(signum: int, frame: FrameType | None) -> None:
            if self._interrupted.is_set():
                _LOG.warning(
                    "Received %s again: killing the run's workers and jobs now; resume it with: "
                    "bps restart --id %s",
                    signal.Signals(signum).name,
                    self.submit_dir,
                )
                force_stop(self.submit_dir)
                logging.shutdown()
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
                return
            _LOG.warning(
                "Received %s: stopping the run's jobs and workers; resume it with: bps restart --id %s",
                signal.Signals(signum).name,
                self.submit_dir,
            )
            self.interrupted_by = signum
            self._interrupted.set()

        for signum in caught:
            signal.signal(signum, interrupt)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _execute(self, selected: set[int] | None) -> None:
        from .execution.runner.graph_runner import GraphRunner  # (loaded by `run`)

        # The store connection belongs to this thread: sqlite3 objects must
        # not cross threads.
        try:
            with JobStateStore.open(self.submit_dir, writable=True) as store:
                # Jobs of an earlier attempt whose submitting process was
                # killed may still run here; they must not race their own
                # re-runs.
                kill_run_processes(self.submit_dir)
                kill_processes(run_processes(self.submit_dir, SERVICE_VARIABLE))
                store.reset_unfinished()
                clear_cancel_marks(self.submit_dir)
                progress = functools.partial(ProgressReporter.from_settings, self.submit_dir, self.settings)
                runner = GraphRunner(
                    store, self.settings, self.submit_dir, selected, self._interrupted, progress
                )
                self._outcome = runner.run()
        except BaseException as exc:  # re-raised by wait()
            self._outcome = exc

    def _with_ancestors(self, names: Iterable[str]) -> set[int]:
        names = list(names)
        with JobStateStore.open(self.submit_dir) as store:
            by_name = store.seqs_named(names)
            edges = store.edge_arrays()
        missing = [name for name in names if name not in by_name]
        if missing:
            raise KeyError(f"No such job(s): {', '.join(missing)}")
        return with_ancestors(edges, [by_name[name] for name in names])

    def _check_not_running_elsewhere(self) -> None:
        with JobStateStore.open(self.submit_dir) as store:
            run = store.run()
        alive = liveness(run)
        if alive == Liveness.ELSEWHERE:
            raise RunInProgressError(
                f"{self.submit_dir} is marked running by pid {run.pid} on host {run.host}; "
                "run it from there, or cancel it first"
            )
        if alive == Liveness.ALIVE and run.pid not in (None, os.getpid()):
            raise RunInProgressError(f"{self.submit_dir} is being run by pid {run.pid} on this host")
