"""``bps ping``: can this machine run the configured executor and provider?

ctrl_bps gives the service an empty configuration for ``bps ping``, so the
settings to check come from ``--pass-thru``: a bps file (its
``parsl_config`` section) or ``key=value`` words such as
``"executor=WorkQueue provider=Slurm"``; without either, the defaults
(ThreadPool).  What the settings need must work; what they do not need is
only described.  Commands run from argument lists, never through a shell,
each with a time limit.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import shlex
import shutil
import subprocess
from typing import Any

import yaml

from ...errors import ParslConfigError
from ...host.environment import prepare_environment
from ...reporting.executors import executor_descriptions
from ...settings.parsl_section import ParslSettings
from ...store.run_index import index_path
from ..job_io.run_secrets import WORK_QUEUE_PASSWORD
from .availability import (
    launch_problem,
    launcher_description,
    work_queue_missing,
    work_queue_unusable_message,
)
from .modes import ExecutionMode, MemoryEnforcement, RunnerPlace, mode_for
from .worker_address import worker_address

__all__ = ["Check", "ping", "service_ping", "settings_for_ping"]

# A Slurm controller that does not answer makes its clients retry for a long
# time; ping must say so rather than hang.
COMMAND_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    ok: bool
    detail: str
    required: bool = True
    """Whether a failure makes the ping fail (the settings need it)."""
    unused: bool = False
    """The settings do not use this (it is reported for information)."""

    def line(self) -> str:
        """One line for the report."""
        tag = "ok" if self.ok else ("FAIL" if self.required else "warn")
        suffix = " (not used by these settings)" if self.unused else ""
        return f"  {tag:<5}{self.name}: {self.detail}{suffix}"


def settings_for_ping(config: Any, pass_thru: str | None) -> tuple[ParslSettings, str]:
    """The settings to check and where they came from.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig` or `dict`
        The service's configuration (ctrl_bps passes ``{}`` to ping).
    pass_thru : `str`, optional
        A bps file, or ``key=value`` parsl_config settings.

    Returns
    -------
    settings : `ParslSettings`
        Validated settings.
    origin : `str`
        Where they came from, for the report.

    Raises
    ------
    ParslConfigError
        If the settings are invalid or ``pass_thru`` cannot be understood.
    """
    pass_thru = (pass_thru or "").strip()
    if pass_thru and os.path.isfile(os.path.expanduser(pass_thru)):
        from lsst.ctrl.bps import BpsConfig

        path = os.path.expanduser(pass_thru)
        bps_config = BpsConfig(path)
        return ParslSettings.from_bps_config(bps_config), _origin(path, bps_config)
    if pass_thru:
        section: dict[str, Any] = {}
        for word in shlex.split(pass_thru):
            key, sep, value = word.partition("=")
            if not sep:
                raise ParslConfigError(
                    f"--pass-thru: expected a bps file or parsl_config key=value words, got {word!r}"
                )
            # YAML typing, as in a bps file: retries=1 is an integer, monitoring=true a bool.
            section[key] = yaml.safe_load(value) if value else ""
        return ParslSettings.from_mapping(section), "--pass-thru"
    if hasattr(config, "search"):
        return ParslSettings.from_bps_config(config), _origin("the bps configuration", config)
    return ParslSettings(), "defaults (give a bps file or key=value settings with --pass-thru)"


def _origin(where: str, config: Any) -> str:
    """``where``, and the ctrl_bps_parsl site the settings were translated
    from, if any (e.g. ``bps.yaml, site.hpc (lsst.ctrl.bps.parsl.sites.Slurm)``)."""
    from ...settings.ctrl_bps_parsl_reading import origin_line, site_translation

    translation = site_translation(config)
    if translation is None:
        return where
    _, own = config.search("parsl_config", opt={"default": None})
    return f"{where}, {origin_line(translation, own)}"


def ping(settings: ParslSettings | None = None, origin: str = "defaults") -> tuple[int, str]:
    """Check what an executor and provider need.

    Parameters
    ----------
    settings : `ParslSettings`, optional
        The settings to check; `None` for the defaults (ThreadPool).
    origin : `str`, optional
        Where the settings came from, for the report.

    Returns
    -------
    status : `int`
        0 if everything the settings need works, 1 otherwise.
    message : `str`
        One line per check.
    """
    settings = settings or ParslSettings()
    # Jobs and workers find parsl's scripts through this PATH; check that one.
    prepare_environment()
    modes = [mode_for(entry) for entry in settings.executor_list()]
    needed = {need for mode in modes for need in mode.needs()}
    needs = {
        check_work_queue: "work_queue" in needed,
        check_high_throughput: "high_throughput" in needed,
        check_slurm: "slurm" in needed,
    }
    if "torque" in needed:
        needs[check_torque] = True
    checks = [check_parsl()]
    for check, is_needed in needs.items():
        result = check(is_needed)
        checks.append(dataclasses.replace(result, required=is_needed, unused=not is_needed))
    checks.append(check_run_index())
    several = len(modes) > 1
    described = dict(executor_descriptions(settings.as_dict()))
    for mode in modes:
        name = mode.settings.executor_name
        # Each executor's own checks, named after it when there are several.
        own = [check_memory_requests(mode), check_authentication(mode)]
        if (launcher := check_launcher(mode.settings)) is not None:
            own.append(launcher)
        if mode.remote and not mode.relays_locally:
            own.append(Check("Worker address", True, worker_address(mode.settings).line()))
        if several:
            checks.append(Check(f"Executor {name}", True, described[name]))
            own = [dataclasses.replace(c, name=f"{c.name} ({name})") for c in own]
        checks += own
    status = 1 if any(c.required and not c.ok for c in checks) else 0
    if several:
        what = "executors " + ", ".join(mode.settings.executor_name for mode in modes)
    else:
        provider = f", provider {settings.provider}" if modes[0].needs() != () else ""
        what = f"executor {settings.executor}{provider}"
    header = f"gen3_workflow ping for {what} (settings from {origin}):"
    return status, "\n".join([header, *(c.line() for c in checks)])


def check_memory_requests(mode: ExecutionMode) -> Check:
    """What becomes of jobs' ``requestMemory`` with these settings (for
    information: never a failure)."""
    name = "Memory requests"
    enforcement = mode.memory_enforcement
    budget = mode.memory_budget()
    if enforcement is MemoryEnforcement.NONE:
        detail = "ignored (enforce_resources: false)"
        if mode.takes_resource_spec:
            detail = f"not enforced (enforce_resources: false); {mode.executor} still packs by them"
    elif enforcement in (MemoryEnforcement.SUPERVISOR, MemoryEnforcement.WORK_QUEUE):
        by = (
            "each job's supervisor" if enforcement is MemoryEnforcement.SUPERVISOR else "Work Queue's monitor"
        )
        detail = (
            f"packed by {mode.executor}, enforced by {by}; a job over its request is retried with "
            "memoryMultiplier times more"
        )
    elif budget is None:
        detail = f"{mode.executor} cannot honour them: not measured, and no node memory known (mem_per_node)"
    else:
        detail = (
            f"{mode.executor} does not measure jobs' memory; the runner dispatches jobs while their "
            f"requests fit in {budget} MB; a job the kernel kills for memory is retried with more"
        )
    return Check(name, True, detail, required=False)


def check_launcher(settings: ParslSettings) -> Check | None:
    """How each block starts its workers, and whether it can here (`None`
    when the settings start no blocks)."""
    problem = launch_problem(settings)
    if problem is not None:
        return Check("Launcher", False, problem)
    description = launcher_description(settings)
    return None if description is None else Check("Launcher", True, description)


def check_authentication(mode: ExecutionMode) -> Check:
    """Who can reach the run's workers and runners with these settings
    (see "Security on shared nodes" in the user guide)."""
    name = "Authentication"
    runners = (
        "; node runners take jobs only from this user, signed with the run's key"
        if mode.warm_runner is RunnerPlace.EACH_NODE
        else ""
    )
    if "work_queue" in mode.needs():
        missing = _worker_password_missing()
        if missing is not None:
            return Check(name, False, missing)
        detail = (
            "Work Queue workers authenticate with a password made for each run "
            f"(secrets/{WORK_QUEUE_PASSWORD} in the submit directory, mode 0600)"
        )
        return Check(name, True, detail + runners)
    if mode.relays_locally:
        return Check(name, True, "no worker pool: threads of bps submit hand the jobs over" + runners)
    if "high_throughput" in mode.needs():
        import zmq

        if not zmq.has("curve"):
            return Check(name, False, "this pyzmq has no CurveZMQ: HighThroughput cannot encrypt its traffic")
        return Check(name, True, "HighThroughput's interchange and workers talk over CurveZMQ (encrypted)")
    return Check(name, True, "nothing listens: jobs run in threads of bps submit", required=False)


def _worker_password_missing() -> str | None:
    """Why Work Queue's workers could not be given a password, if they could not."""
    worker = shutil.which("work_queue_worker")
    if worker is None:
        return "cannot tell: work_queue_worker is not on PATH"
    try:
        proc = subprocess.run([worker, "--help"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot tell: {worker} --help failed ({exc})"
    if "--password" not in proc.stdout + proc.stderr:
        return f"{worker} has no --password option: workers could not authenticate"
    return None


def service_ping(config: Any, pass_thru: str | None) -> tuple[int, str]:
    """`ping` with the settings `settings_for_ping` finds: what
    ``BaseWmsService.ping`` should return.

    Parameters
    ----------
    config : `lsst.ctrl.bps.BpsConfig` or `dict`
        The service's configuration.
    pass_thru : `str`, optional
        A bps file, or ``key=value`` parsl_config settings.

    Returns
    -------
    status : `int`
        0 if everything the settings need works, 1 otherwise.
    message : `str`
        One line per check, or why the settings could not be read.
    """
    try:
        settings, origin = settings_for_ping(config, pass_thru)
    except (ParslConfigError, OSError, ValueError, yaml.YAMLError) as exc:
        return 1, f"gen3_workflow ping: cannot read the settings to check: {exc}"
    return ping(settings, origin)


def check_parsl() -> Check:
    """parsl itself."""
    try:
        parsl = importlib.import_module("parsl")
    except ImportError as exc:
        return Check("parsl", False, f"cannot import parsl ({exc})")
    return Check("parsl", True, f"version {parsl.__version__}")


def check_work_queue(required: bool) -> Check:
    """Work Queue's Python bindings and worker program."""
    name = "Work Queue"
    missing = work_queue_missing()
    if missing is not None:
        # The same line bps submit refuses the settings with.
        detail = work_queue_unusable_message(missing) if required else missing
        return Check(name, False, detail, required)
    worker = shutil.which("work_queue_worker")
    if worker is None:
        return Check(name, False, "work_queue_worker is not on PATH", required)
    ok, output = _run([worker, "--version"])
    if not ok:
        return Check(name, False, f"{worker} --version failed: {output}", required)
    return Check(name, True, f"ndcctools.work_queue importable; {output}", required)


def check_high_throughput(required: bool) -> Check:
    """The scripts parsl's HighThroughputExecutor starts through PATH."""
    missing = [s for s in ("process_worker_pool.py", "interchange.py") if shutil.which(s) is None]
    if missing:
        return Check("HighThroughput", False, f"not on PATH: {', '.join(missing)}", required)
    return Check("HighThroughput", True, "process_worker_pool.py and interchange.py on PATH", required)


def check_slurm(required: bool) -> Check:
    """Slurm's clients, and (when the settings use Slurm) its controller."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        return Check("Slurm", False, "sbatch is not on PATH", required)
    ok, version = _run([sbatch, "--version"])
    if not ok:
        return Check("Slurm", False, f"sbatch --version failed: {version}", required)
    if not required:
        # Asking the controller can take long when there is none; only a run
        # that uses Slurm needs it.
        return Check("Slurm", True, version, required)
    squeue = shutil.which("squeue")
    if squeue is None:
        return Check("Slurm", False, "squeue is not on PATH", required)
    ok, output = _run([squeue, "--noheader", "--me", "--format=%i"])
    if not ok:
        return Check("Slurm", False, f"the controller does not answer squeue: {output}", required)
    jobs = len(output.split()) if output else 0
    return Check("Slurm", True, f"{version}; controller answers ({jobs} job(s) of yours queued)", required)


def check_torque(required: bool) -> Check:
    """PBS/Torque's clients (``qsub``, ``qstat``), which parsl's TorqueProvider runs."""
    missing = [command for command in ("qsub", "qstat", "qdel") if shutil.which(command) is None]
    if missing:
        return Check("Torque", False, f"not on PATH: {', '.join(missing)}", required)
    return Check("Torque", True, "qsub, qstat and qdel on PATH", required)


def check_run_index() -> Check:
    """Whether new runs can be listed for ``bps report`` (never fatal:
    ``bps report --id`` works without the index)."""
    path = index_path()
    directory = os.path.dirname(path)
    while directory and not os.path.exists(directory):
        directory = os.path.dirname(directory)
    target = path if os.path.exists(path) else directory
    ok = bool(target) and os.access(target, os.W_OK)
    detail = f"{path} is writable" if ok else f"cannot write {path}; bps report lists runs only with --id"
    return Check("run index", ok, detail, required=False)


def _run(args: list[str]) -> tuple[bool, str]:
    """Run a command; whether it succeeded and its first line of output."""
    try:
        proc = subprocess.run(
            args, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        return False, f"no answer in {COMMAND_TIMEOUT:.0f} s"
    except OSError as exc:
        return False, str(exc)
    lines = [line.strip() for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    if proc.returncode != 0:
        # The last line of a failing Slurm client is its "fatal:" reason.
        return False, f"exit status {proc.returncode}: {lines[-1] if lines else 'no output'}"
    return True, proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
