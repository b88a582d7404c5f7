"""parsl for the length of a run, started and stopped out of the way.

Starting parsl (Work Queue's master, the first block of workers) takes a few
seconds, and so does its shutdown; a runner importing the middleware takes
a few more.  None of it has to wait for the init job, and the final job
does not have to wait for parsl's shutdown: `ParslSession` loads parsl in a
thread while the init job runs, starts the warm runners that live on this
machine (`warm_up`) or, with HighThroughput, sends each worker an app that
starts its runner, and shuts parsl down in a thread while the final job
runs.

Everything parsl starts on this machine for the run carries
``GEN3WF_SERVICE_RUN_DIR`` (set in this process's environment for the
length of the session), so that what parsl's shutdown leaves behind, or a
second signal's forced stop (`force_stop`), finds it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker

import parsl

from ...constants import SERVICE_VARIABLE
from ...settings.parsl_section import ParslSettings
from ..job_io import run_secrets
from ..job_io.processes import kill_processes, run_forks, run_processes
from ..warm import node_runner
from ..warm.in_process import prestart_node_runner, prestart_runners, stop_runners, warm_worker
from ..warm.local_fork import can_fork
from .modes import ExecutionMode, RunnerPlace, mode_for
from .parsl_factory import ParslRunConfig, make_parsl_config
from .parsl_logging import route_parsl_logging, unroute_parsl_logging

__all__ = ["ParslSession", "force_stop", "spawn_without_main_script"]

_MOST_WARM_UPS = 256
"""At most this many warm-up apps (they hold a worker half a second each)."""

CLOSE_SECONDS = 120.0
"""How long parsl's shutdown may take before what it started is killed."""

_LOG = logging.getLogger(__name__)

_ACTIVE: dict[str, ParslSession] = {}
"""Open sessions by submit directory (for `force_stop`)."""


class ParslSession:
    """parsl, loaded in the background from construction until `close`.

    Parameters
    ----------
    settings : `ParslSettings`
        Validated ``parsl_config``.
    submit_dir : `str`
        The run's submit directory.
    workflow_name : `str`
        The run's name (parsl's run directory and Slurm job names).
    """

    def __init__(self, settings: ParslSettings, submit_dir: str, workflow_name: str) -> None:
        self.settings = settings
        self.modes = [mode_for(entry) for entry in settings.executor_list()]
        self._warm_places = {mode.warm_runner for mode in self.modes}
        self.submit_dir = submit_dir
        self._workflow_name = workflow_name
        self._run_config: ParslRunConfig | None = None
        self._error: BaseException | None = None
        self._log_handler: logging.Handler | None = None
        self._dfk: parsl.DataFlowKernel | None = None
        self._closing: threading.Thread | None = None
        # SPT_NOENV: parsl renames its processes (setproctitle), which would
        # otherwise overwrite their environment, the mark with it.
        self._previous_env = {name: os.environ.get(name) for name in (SERVICE_VARIABLE, "SPT_NOENV")}
        # multiprocessing's resource tracker is this process's, for as long
        # as it lives: started after the mark below, it would carry it, and
        # `close` would stop it, so that the semaphores parsl's queues
        # unregister at exit reach a new tracker that never saw them (one
        # KeyError traceback each on the terminal).
        resource_tracker.ensure_running()
        os.environ[SERVICE_VARIABLE] = submit_dir
        os.environ.setdefault("SPT_NOENV", "1")
        _ACTIVE[submit_dir] = self
        # A fresh Work Queue password and runner key for this session.
        run_secrets.create(submit_dir)
        # Runners first: ThreadPool's are forks of this process, made before
        # parsl starts its threads.
        self.warm_up()
        self._loading = threading.Thread(target=self._load, name="gen3wf-parsl-load", daemon=True)
        self._loading.start()

    def _load(self) -> None:
        try:
            self._run_config = make_parsl_config(self.settings, self.submit_dir, self._workflow_name)
            self._log_handler = route_parsl_logging(self.submit_dir, self.settings.log_level)
            with spawn_without_main_script():
                self._dfk = parsl.load(self._run_config.config)
            for label, mode in self._run_config.executors:
                self._say_where_workers_connect(self._dfk, label)
                if mode.warm_runner is RunnerPlace.EACH_WORKER:
                    self._warm_workers(label, mode)
        except BaseException as exc:  # re-raised by `ready` in the run's thread
            self._error = exc

    def _say_where_workers_connect(self, dfk: parsl.DataFlowKernel, label: str) -> None:
        """Log how to add a Work Queue worker by hand (its manager's port is
        chosen when it starts)."""
        executor = dfk.executors.get(label)
        password = getattr(executor, "project_password_file", None)
        port = getattr(executor, "_chosen_port", None)
        if password and port:
            host = getattr(executor, "address", None) or "HOST"
            command = shlex.join(["work_queue_worker", "--password", password, host, str(port)])
            # Printed, as "Submit dir:" is: an operator adds workers from it.
            which = f" of executor {label}" if len(self.modes) > 1 else ""
            print(f"Work Queue manager{which} on port {port}; to add a worker: {command}", flush=True)

    def _warm_workers(self, label: str, mode: ExecutionMode) -> None:
        """One `warm_worker` app per worker slot: each worker starts its
        runner as soon as it is up, not when its first job comes."""
        from parsl.app.app import python_app

        app = python_app(executors=[label])(warm_worker)
        # The workers of the blocks started at once; later blocks warm up on their first job.
        settings = mode.settings
        first_blocks = mode.worker_slots() // settings.max_blocks * max(settings.init_blocks, 1)
        for _ in range(min(first_blocks, _MOST_WARM_UPS)):
            app(self.submit_dir, self.settings.max_quanta_per_worker)

    def warm_up(self) -> None:
        """Start the warm runners that live on this machine, so that they
        import the middleware while the init job runs."""
        here = [mode for mode in self.modes if mode.warm_runner is RunnerPlace.THIS_PROCESS]
        if here:
            slots = sum(mode.worker_slots() for mode in here)
            prestart_runners(self.submit_dir, self.settings.max_quanta_per_worker, slots, can_fork())
        if any(mode.node_runner_here for mode in self.modes):
            try:
                prestart_node_runner(self.submit_dir, self.settings.max_quanta_per_worker, can_fork())
            except Exception as exc:  # the first task starts one then
                _LOG.debug("Could not start the node's runner ahead: %s", exc)

    def ready(self) -> ParslRunConfig:
        """The loaded configuration, once parsl has started.

        Raises
        ------
        Exception
            Whatever stopped parsl from starting.
        """
        self._loading.join()
        if self._error is not None:
            raise self._error
        assert self._run_config is not None
        return self._run_config

    def close_in_background(self) -> None:
        """Start shutting parsl down; `close` waits for the end of it."""
        if self._closing is None:
            self._closing = threading.Thread(target=self._shut_down, name="gen3wf-parsl-close", daemon=True)
            self._closing.start()

    def close(self) -> None:
        """Shut parsl down (or wait for `close_in_background` to end), at
        most `CLOSE_SECONDS`, then stop whatever parsl started for the run
        on this machine and is still there."""
        self.close_in_background()
        assert self._closing is not None
        self._closing.join(timeout=CLOSE_SECONDS)
        if self._closing.is_alive():
            _LOG.warning("parsl did not shut down within %.0f s; stopping what it started", CLOSE_SECONDS)
        left = run_processes(self.submit_dir, SERVICE_VARIABLE)
        if self._closing.is_alive() and RunnerPlace.EACH_NODE in self._warm_places:
            # A shutdown stuck on threads that wait for this machine's
            # runner (HighThroughput on Local): ending it ends their waits.
            left += _node_runners(self.submit_dir)
        if left:
            _LOG.debug("Stopping %d process(es) parsl's shutdown left: %s", len(left), left)
            kill_processes(left, timeout=3.0)
        if _ACTIVE.pop(self.submit_dir, None) is not None:
            for name, value in self._previous_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def cancel_blocks(self) -> None:
        """Ask the providers to cancel the executors' blocks (batch jobs) now."""
        if self._dfk is None or self._run_config is None:
            return
        for label, _ in self._run_config.executors:
            executor = self._dfk.executors.get(label)
            job_ids = list(getattr(executor, "blocks_to_job_id", {}).values())
            provider = getattr(executor, "provider", None)
            if job_ids and provider is not None:
                with contextlib.suppress(Exception):
                    provider.cancel(job_ids)

    def _shut_down(self) -> None:
        self._loading.join()
        try:
            if self._dfk is not None:
                self._dfk.cleanup()
                parsl.clear()
        finally:
            if self._log_handler is not None:
                unroute_parsl_logging(self._log_handler)
            if self._warm_places - {RunnerPlace.NONE}:
                # ThreadPool runners live in this process; Work Queue's node
                # runners on this machine end with their workers, or here.
                stop_runners(self.submit_dir)
                if RunnerPlace.EACH_NODE in self._warm_places:
                    with contextlib.suppress(Exception):
                        kill_processes(_node_runners(self.submit_dir))


_MAIN_NAMES = ("__file__", "__spec__")


@contextlib.contextmanager
def spawn_without_main_script() -> Iterator[None]:
    """Processes started with multiprocessing's *spawn* meanwhile do not
    re-run this process's main script.

    parsl starts Work Queue's submit process and monitoring's router and
    database manager with spawn, which runs the parent's main script again
    in each child unless ``__main__`` names none: for ``bps``, ctrl_bps's
    whole command line, about 2 s of imports here (measured: Work Queue's
    executor took 3.5 s to start, most of it that and parsl's own imports),
    while nothing those processes run comes from ``__main__``.
    """
    main = sys.modules["__main__"]
    saved = {name: main.__dict__[name] for name in _MAIN_NAMES if name in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        for name in _MAIN_NAMES:
            if name in saved:
                main.__dict__[name] = saved[name]
            else:
                main.__dict__.pop(name, None)


def force_stop(submit_dir: str) -> None:
    """Stop a run's parsl pieces at once, without parsl's shutdown: cancel
    its blocks, kill its processes on this machine (a second SIGTERM or
    SIGINT of ``bps submit``)."""
    session = _ACTIVE.get(submit_dir)
    if session is not None:
        session.cancel_blocks()
    kill_processes(
        set(run_processes(submit_dir, SERVICE_VARIABLE)) | set(run_processes(submit_dir)), timeout=1.0
    )


def _node_runners(submit_dir: str) -> list[int]:
    """This machine's node runners of the run (they carry its directory, or
    are forks of this process)."""
    import psutil

    found = run_forks(submit_dir, "node_runner")
    for pid in run_processes(submit_dir):
        with contextlib.suppress(psutil.Error):
            if node_runner.__name__ in psutil.Process(pid).cmdline():
                found.append(pid)
    return sorted(set(found))
