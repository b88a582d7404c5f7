"""parsl alone on the null workflow `bench_scale` runs through the plug-in:
the rate the plug-in is measured against.

``python -m desc.gen3_workflow.benchmarks.parsl_alone --jobs N --workdir DIR
[--set KEY=VALUE ...]`` builds the same DRP-shaped synthetic workflow
(`~desc.gen3_workflow.testing.synthetic_workflow.synthetic_workflow`) and
runs every job as a parsl bash app of its command (``/bin/sh -c 'true'``,
as `~desc.gen3_workflow.testing.null_run` gives it), writing its stdout
and stderr to a file of its own as the plug-in's jobs do, with its parents'
futures as ``inputs``: parsl's DataFlowKernel holds the whole DAG and
launches each job once its parents are done.  parsl's configuration is the
plug-in's for the same ``parsl_config`` keys (`make_parsl_config`: the same
executor, provider, workers and threads; retries, checkpointing, monitoring
and app caching off; parsl's log routed as the plug-in routes it), so that
only the plug-in's own work differs.

It prints one JSON line: the jobs, ``seconds`` from the first submit to the
last result (parsl's start and shutdown are not in it; ``load_seconds`` is
the start), and ``jobs_per_second`` over that.  One process per
measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import yaml

__all__ = ["NULL_COMMAND", "main", "measure", "run_parsl_alone"]

NULL_COMMAND = "/bin/sh -c 'true'"
"""What every null job runs (`~desc.gen3_workflow.testing.null_run`'s default)."""


def _null_line(command: str, stdout: str, stderr: str, inputs: list[Any]) -> str:
    return command


def run_parsl_alone(
    jobs: int,
    workdir: str,
    parsl_config: dict[str, Any],
    detectors: int = 189,
    job_logs: bool = True,
    wrapped: bool = False,
) -> dict[str, Any]:
    """Run the null workflow of about ``jobs`` jobs with parsl alone.

    Parameters
    ----------
    jobs : `int`
        About how many jobs (`synthetic_workflow`'s ``n_jobs``).
    workdir : `str`
        Where parsl's files and the jobs' logs go (made if missing).
    parsl_config : `dict`
        ``parsl_config`` keys, as a bps file gives them.
    detectors : `int`
        Detectors per visit.
    job_logs : `bool`
        Whether each job's stdout and stderr go to files of its own (as the
        plug-in's do), or to ``/dev/null``.
    wrapped : `bool`
        Whether each job runs behind the plug-in's bash-builtin wrapper
        (`~desc.gen3_workflow.execution.bridge.submitters.wrapped_command`:
        the job's start and exit records in ``workdir/status``), so that
        only the submitting side differs from the plug-in's null jobs.

    Returns
    -------
    figures : `dict`
        ``jobs``, ``seconds`` (first submit to last result),
        ``jobs_per_second``, ``load_seconds`` (parsl's start), ``failed``.
    """
    import networkx
    import parsl
    from parsl.app.app import bash_app

    from ..execution.bridge.parsl_factory import make_parsl_config
    from ..execution.bridge.parsl_logging import route_parsl_logging
    from ..execution.bridge.submitters import wrapped_command
    from ..execution.job_io import markers
    from ..host.environment import prepare_environment
    from ..settings.parsl_section import ParslSettings
    from ..testing.synthetic_workflow import synthetic_workflow

    prepare_environment()  # as the plug-in's runner does: parsl's scripts on PATH
    settings = ParslSettings.from_mapping(parsl_config)
    os.makedirs(workdir, exist_ok=True)
    workflow = synthetic_workflow(jobs, detectors, executable="/bin/sh", arguments="-c 'true'")
    order = list(networkx.topological_sort(workflow))
    os.makedirs(os.path.join(workdir, markers.STATUS_DIR), exist_ok=True)
    logs: dict[str, str] = {}
    for i, name in enumerate(order if job_logs else ()):  # buckets of 1,000 jobs, as the plug-in's
        directory = os.path.join(workdir, "logs", workflow.get_job(name).label, f"{i // 1000:04d}")
        os.makedirs(directory, exist_ok=True)
        logs[name] = os.path.join(directory, name)
    run_config = make_parsl_config(settings, workdir, "parsl_alone")
    route_parsl_logging(workdir, settings.log_level)
    start = time.monotonic()
    dfk = parsl.load(run_config.config)
    load_seconds = time.monotonic() - start
    app = bash_app(executors=[run_config.executor_label], cache=False)(_null_line)
    try:
        start = time.monotonic()
        futures: dict[str, Any] = {}
        for seq, name in enumerate(order):
            command = wrapped_command(NULL_COMMAND, workdir, seq) if wrapped else NULL_COMMAND
            parents = [futures[parent] for parent in workflow.predecessors(name)]
            stdout, stderr = (
                (logs[name] + ".stdout", logs[name] + ".stderr") if job_logs else (os.devnull,) * 2
            )
            futures[name] = app(command, stdout=stdout, stderr=stderr, inputs=parents)
        failed = sum(1 for future in futures.values() if future.exception() is not None)
        seconds = time.monotonic() - start
    finally:
        dfk.cleanup()
        parsl.clear()
    return {
        "jobs": len(order),
        "seconds": round(seconds, 3),
        "jobs_per_second": round(len(order) / seconds, 1),
        "load_seconds": round(load_seconds, 2),
        "failed": failed,
    }


def measure(
    workdir: str,
    executor: str,
    jobs: int,
    settings: Sequence[str] = (),
    wrapped: bool = False,
    keep: bool = False,
) -> dict[str, Any]:
    """One measurement in a process of its own (as the plug-in's null runs
    are): its figures.  ``settings``: more ``parsl_config`` keys
    (``KEY=VALUE``); ``wrapped``: jobs behind the plug-in's wrapper;
    ``keep``: leave its files (``run_dir`` in the figures) for the caller
    to remove."""
    run_dir = tempfile.mkdtemp(prefix=f"parsl_alone_{executor}_{jobs}_", dir=workdir)
    command = [sys.executable, "-m", __name__, f"--jobs={jobs}", f"--workdir={run_dir}"]
    command += [f"--set={item}" for item in (f"executor={executor}", *settings)]
    command += ["--wrapped"] if wrapped else []
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            raise RuntimeError(
                f"parsl alone failed ({done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}"
            )
        return {**json.loads(lines[-1]), "run_dir": run_dir}
    finally:
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run the null workflow with parsl alone and print its figures;
    return 0 if every job succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, required=True, help="about how many jobs")
    parser.add_argument("--detectors", type=int, default=189, help="detectors per visit")
    parser.add_argument("--workdir", required=True, help="where parsl's files and the jobs' logs go")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a parsl_config key")
    parser.add_argument("--no-job-logs", action="store_true", help="jobs' stdout and stderr to /dev/null")
    parser.add_argument(
        "--wrapped", action="store_true", help="jobs behind the plug-in's bash-builtin wrapper"
    )
    args = parser.parse_args(argv)
    parsl_config: dict[str, Any] = {"progress": False, "execution": "process"}
    for item in args.set:
        key, _, value = item.partition("=")
        parsl_config[key] = yaml.safe_load(value)
    figures = run_parsl_alone(
        args.jobs, args.workdir, parsl_config, args.detectors, not args.no_job_logs, args.wrapped
    )
    print(json.dumps(figures), flush=True)
    return 1 if figures["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
