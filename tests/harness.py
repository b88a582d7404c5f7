"""What the end-to-end tests share: bps files for the demo pipeline, real
``bps`` commands (waited for, or in the background), one way to poll, and
reads of a run's store and of the butler.

Every ``bps`` a test starts goes through `run_bps` or `BackgroundBps`, and
every wait through `wait_for`: each has a time limit, and a background
``bps submit`` runs in a session of its own, so that a run that hangs is
killed with everything it started (parsl's interchange, workers, jobs).

`requires_work_queue` marks the tests that need Work Queue's Python
bindings, which not every interpreter has (none for Python 3.12 here).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from desc.gen3_workflow.constants import SERVICE_CLASS
from desc.gen3_workflow.execution.bridge.availability import work_queue_missing
from desc.gen3_workflow.execution.job_io.processes import run_processes
from desc.gen3_workflow.reporting.outputs import output_counts
from desc.gen3_workflow.store.job_store import UNREADABLE, JobStateStore
from desc.gen3_workflow.store.records import JobKind, JobRecord, JobState, RunRecord

__all__ = [
    "BPS",
    "SERVICE_ENV",
    "WORK_QUEUE_MISSING",
    "BackgroundBps",
    "BpsResult",
    "expected_outputs",
    "find_submit_dir",
    "job_states",
    "jobs",
    "pids_matching",
    "quanta_per_label",
    "registered_outputs",
    "requires_work_queue",
    "run_bps",
    "run_processes",
    "run_record",
    "wait_for",
    "wait_for_jobs",
    "write_bps_file",
]

PIPELINES = Path(__file__).resolve().parents[1] / "config" / "pipelines"
BPS = str(Path(sys.prefix) / "bin" / "bps")
SERVICE_ENV = {"BPS_WMS_SERVICE_CLASS": SERVICE_CLASS}
"""What selects the plug-in for bps commands that read no bps file."""

# Datasets one quantum of each demo task writes (besides metadata and logs).
OUTPUTS_PER_QUANTUM = {
    "isr": ["postISRCCD"],
    "characterizeImage": ["icExp", "icSrc"],
    "calibrate": ["calexp", "src"],
    "visitSummary": ["visitSummary"],
    "globalTable": ["objectTable"],
}

_T = TypeVar("_T")

WORK_QUEUE_MISSING = work_queue_missing()
"""Why this interpreter cannot use Work Queue, or `None` if it can."""

requires_work_queue = pytest.mark.skipif(
    WORK_QUEUE_MISSING is not None, reason=f"needs Work Queue: {WORK_QUEUE_MISSING}"
)
"""Skips a test that runs Work Queue when its Python bindings are missing."""


def quanta_per_label(n_visits: int, n_detectors: int) -> dict[str, int]:
    """Quanta of each demo task, in pipeline order, for a repository size."""
    return {
        "isr": n_visits * n_detectors,
        "characterizeImage": n_visits * n_detectors,
        "calibrate": n_visits * n_detectors,
        "visitSummary": n_visits,
        "globalTable": 1,
    }


def expected_outputs(n_visits: int, n_detectors: int, labels: list[str]) -> Counter[str]:
    """Output dataset counts of a complete run of the demo pipeline."""
    quanta = quanta_per_label(n_visits, n_detectors)
    counts: Counter[str] = Counter()
    for label in labels:
        for dataset_type in OUTPUTS_PER_QUANTUM[label]:
            counts[dataset_type] += quanta[label]
    return counts


def write_bps_file(
    directory: Path,
    repo: str,
    parsl_config: dict[str, Any] | None,
    pipeline: str = "demo_drp",
    payload_name: str = "e2e",
    **extra: Any,
) -> Path:
    """A bps file for the demo pipeline on ``repo``; ``extra`` adds
    top-level keys (``finalJob``, ``extraQgraphOptions``, ...)."""
    content: dict[str, Any] = {
        "wmsServiceClass": SERVICE_CLASS,
        "pipelineYaml": str(PIPELINES / f"{pipeline}.yaml"),
        "operator": "tester",
        "payload": {
            "payloadName": payload_name,
            "butlerConfig": repo,
            "inCollection": "DemoCam/defaults",
            "dataQuery": "instrument = 'DemoCam'",
        },
        **extra,
    }
    if parsl_config is not None:
        content["parsl_config"] = parsl_config
    path = directory / "bps.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def _submit_dir_in(output: str) -> str:
    match = re.search(r"^Submit dir: (.+)$", output, re.MULTILINE)
    assert match, f"no submit dir in bps output:\n{output}"
    return match.group(1).strip()


def _bps_env(cwd: Path, env: dict[str, str] | None) -> dict[str, str]:
    # ctrl_bps's submitPath is ${PWD}/submit/...: PWD must follow cwd.
    return {**os.environ, "PWD": str(cwd), **(env or {})}


@dataclasses.dataclass
class BpsResult:
    """A finished ``bps`` command."""

    returncode: int
    output: str

    @property
    def submit_dir(self) -> str:
        """The submit directory bps printed."""
        return _submit_dir_in(self.output)


def run_bps(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    log_tty: bool = False,
    cgroup: str | None = None,
    launcher: tuple[str, ...] = (),
) -> BpsResult:
    """Run the real ``bps`` CLI and wait for it.

    Parameters
    ----------
    *args : `str`
        The bps command and its arguments.
    cwd : `~pathlib.Path`
        Where to run it (submit directories go under ``cwd/submit``).
    env : `dict`, optional
        Variables added to this process's environment.
    timeout : `float`
        Seconds before it is killed (and the test fails).
    log_tty : `bool`
        Keep bps's log on the terminal (``bps ping`` and ``bps status``
        say everything through it); ``--no-log-tty`` otherwise.
    cgroup : `str`, optional
        A cgroup directory to run bps (and all it starts) in.
    launcher : `tuple` [`str`], optional
        A command that runs bps (e.g. ``("salloc", "-N", "3")``).
    """
    options = [] if log_tty else ["--no-log-tty"]

    def enter_cgroup() -> None:
        if cgroup is not None:
            Path(cgroup, "cgroup.procs").write_text(str(os.getpid()))

    proc = subprocess.run(
        [*launcher, BPS, *options, *args],
        cwd=cwd,
        env=_bps_env(cwd, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        preexec_fn=enter_cgroup if cgroup is not None else None,
    )
    return BpsResult(proc.returncode, proc.stdout)


class BackgroundBps:
    """``bps submit`` running in the background, in a session of its own,
    its output in ``cwd/submit.log``.

    Parameters
    ----------
    cwd : `~pathlib.Path`
        Where to run it.
    bps_file : `~pathlib.Path`
        The bps file to submit.
    env : `dict`, optional
        Variables added to this process's environment.
    launcher : `tuple` [`str`], optional
        A command that runs bps (e.g. ``("salloc", "-N", "3")``).
    """

    def __init__(
        self,
        cwd: Path,
        bps_file: Path,
        env: dict[str, str] | None = None,
        launcher: tuple[str, ...] = (),
    ) -> None:
        self.cwd = cwd
        self.log = cwd / "submit.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [*launcher, BPS, "--no-log-tty", "submit", str(bps_file)],
                cwd=cwd,
                env=_bps_env(cwd, env),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        """What bps printed so far."""
        return self.log.read_text(errors="replace")

    @property
    def submit_dir(self) -> str:
        """The submit directory bps printed."""
        return _submit_dir_in(self.output)

    def wait(self, timeout: float = 300) -> int:
        """Wait for the end and return the exit status; a run still going
        after ``timeout`` is killed, with its whole session, and fails the
        test."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_session()
            raise AssertionError(f"bps submit did not end in {timeout} s:\n{self.output}") from None

    def signal(self, sig: int) -> None:
        """Send a signal to the bps process alone."""
        self.proc.send_signal(sig)

    def kill_session(self) -> None:
        """SIGKILL bps and everything in its session; never raises."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def __enter__(self) -> BackgroundBps:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.proc.poll() is None:
            self.kill_session()


def wait_for(
    condition: Callable[[], _T | None],
    what: str | Callable[[], str],
    timeout: float = 240,
    period: float = 0.5,
) -> _T:
    """Poll ``condition`` until it returns something true; fail the test
    after ``timeout`` seconds.

    Parameters
    ----------
    condition : callable
        Returns the awaited value, or something false while it is not there.
    what : `str` or callable
        What was awaited (or a function giving it, e.g. a log), for the
        failure message.
    timeout, period : `float`
        Seconds to wait in all, and between two polls.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen in {timeout} s: {what() if callable(what) else what}")
        time.sleep(period)


def find_submit_dir(root: Path) -> str | None:
    """The submit directory of the (first) run under ``root``, once planned."""
    stores = sorted(root.glob("submit/**/gen3_workflow.sqlite3"))
    return str(stores[0].parent) if stores else None


def wait_for_jobs(
    submit: BackgroundBps, label: str, state: JobState, count: int = 1, timeout: float = 240
) -> str:
    """The submit directory of a background run once ``count`` jobs of
    ``label`` are in ``state``."""

    def reached() -> str | None:
        submit_dir = find_submit_dir(submit.cwd)
        try:
            if submit_dir and job_states(submit_dir, kind=None).get(label, {}).get(state, 0) >= count:
                return submit_dir
        except UNREADABLE:  # prepare is still writing it
            pass
        return None

    return wait_for(reached, lambda: f"{count} {label} job(s) {state.value}:\n{submit.output}", timeout)


def run_record(submit_dir: str) -> RunRecord:
    """The run as its store records it."""
    with JobStateStore.open(submit_dir) as store:
        return store.run()


def jobs(
    submit_dir: str, kind: JobKind | None = None, states: list[JobState] | None = None
) -> list[JobRecord]:
    """Jobs of a run, from its store."""
    with JobStateStore.open(submit_dir) as store:
        return store.jobs(kind=kind, states=states)


def job_states(submit_dir: str, kind: JobKind | None = JobKind.QUANTUM) -> dict[str, dict[JobState, int]]:
    """Job counts per label and state from the store (of one kind of job,
    or of all)."""
    with JobStateStore.open(submit_dir) as store:
        if kind is not None:
            return store.counts(kind)
        return {label: n for k in JobKind for label, n in store.counts(k).items()}


def registered_outputs(submit_dir: str) -> Counter[str]:
    """Datasets registered in the run's output collection, by type, leaving
    out task metadata, logs and configs (counted separately by the butler)."""
    info = run_record(submit_dir).info
    assert info.butler_config and info.output_run
    counts = output_counts(info.butler_config, info.output_run)
    return Counter(
        {
            k: v
            for k, v in counts.items()
            if not k.endswith(("_metadata", "_log", "_config")) and k != "packages"
        }
    )


def pids_matching(pattern: str) -> set[int]:
    """Pids of processes whose command line matches ``pattern`` (pgrep -f)."""
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()} - {os.getpid()}
