"""Benchmark: who should hold Work Queue jobs to their memory request?

Runs null jobs through the real plug-in on Work Queue (`testing.null_run`)
with each memory monitor: the job supervisor (``resource_monitor:
supervisor``), Work Queue's own resource monitor (``work_queue``), and none
(``enforce_resources: false``), alternating, and prints per monitor:

- the cost: jobs per second of trivial jobs (``true``), and the ratio to no
  monitor, medians of ``--runs`` runs;
- hangs: tasks the watchdog had to kill because their payload had ended but
  Work Queue did not return them;
- misses: of ``--hogs`` jobs that each hold ``--hog-mb`` MB (over the
  2048 MB request) for ``--hog-seconds``, how many ran to their end
  undetected.

    python -m desc.gen3_workflow.benchmarks.bench_monitors --jobs 400 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from ..testing import null_run

__all__ = ["main"]

MONITORS = {
    "supervisor": ["--set=resource_monitor=supervisor"],
    "work_queue": ["--set=resource_monitor=work_queue"],
    "none": ["--set=enforce_resources=false"],
}


def _null_run(workdir: str, jobs: int, command: str, options: list[str]) -> dict:
    args = [sys.executable, "-m", null_run.__name__, f"--jobs={jobs}", "--detectors=10"]
    args += [f"--workdir={workdir}", f"--command={command}", "--set=executor=WorkQueue"]
    args += ["--set=worker_options=--cores=2 --memory=8000", "--set=return_grace=10", *options]
    env = {**os.environ, "GEN3WF_RUN_INDEX": os.path.join(workdir, "runs.txt")}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _hangs(figures: dict) -> int:
    return sum(n for message, n in figures["messages"].items() if "did not return the task" in message)


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=400, help="null jobs per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per monitor (alternating)")
    parser.add_argument("--hogs", type=int, default=31, help="memory hogs per monitor")
    parser.add_argument("--hog-mb", type=int, default=2600, help="MB each hog holds (request: 2048)")
    parser.add_argument("--hog-seconds", type=float, default=3.0, help="how long each hog holds it")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in MONITORS}
    hangs = dict.fromkeys(MONITORS, 0)
    tasks = dict.fromkeys(MONITORS, 0)
    with tempfile.TemporaryDirectory(prefix="gen3wf_bench_monitors_") as workdir:
        for run in range(args.runs):
            for name, options in MONITORS.items():
                figures = _null_run(workdir, args.jobs, "true", options)
                rates[name].append(figures["jobs_per_second"])
                hangs[name] += _hangs(figures)
                tasks[name] += figures["jobs"]
                print(f"run {run + 1} {name:<11} {figures['jobs']} jobs {figures['jobs_per_second']} jobs/s")
        hog = (
            f'{sys.executable} -c "import time; d = bytearray([1]) * ({args.hog_mb} * 2**20); '
            f'time.sleep({args.hog_seconds})"'
        )
        missed = {}
        for name, options in MONITORS.items():
            figures = _null_run(workdir, args.hogs, hog, options)
            missed[name] = figures["states"].get("exec_done", 0), figures["jobs"]
            hangs[name] += _hangs(figures)
            tasks[name] += figures["jobs"]
    base = statistics.median(rates["none"])
    print(f"\n{'monitor':<12}{'jobs/s':>9}{'ratio':>8}{'hangs':>8}{'tasks':>8}{'missed hogs':>14}")
    for name in MONITORS:
        rate = statistics.median(rates[name])
        done, total = missed[name]
        missed_hogs = f"{done}/{total}"
        print(f"{name:<12}{rate:>9.1f}{rate / base:>8.2f}{hangs[name]:>8}{tasks[name]:>8}{missed_hogs:>14}")


if __name__ == "__main__":
    main()
