"""The floors `bench` compares the plug-in's per-quantum cost against.

- `middleware_floor`: the same quanta run by the middleware alone, in one
  warm process that reads the QuantumGraph once (``pipetask run-qbb`` of the
  whole graph with ``-j 1``: pipe_base's ``SingleQuantumExecutor`` on a
  quantum-backed butler, one quantum after another).  Its cost per quantum
  is the span of the quanta's own times divided by their number, on one
  core: what executing a quantum costs with no workflow system at all.
- `work_queue_task_floor`: what a Work Queue task of parsl costs by itself,
  an empty python app, with parsl's own task script and with the plug-in's
  faster start of it (`desc.gen3_workflow.execution.worker.wq_task`).

``python -m desc.gen3_workflow.benchmarks.bench_floors --tasks 60`` prints
the second alone.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["LABELS", "middleware_floor", "noop", "parsl_modules", "quantum_times", "work_queue_task_floor"]


LABELS = ("isr", "characterizeImage", "calibrate", "visitSummary", "globalTable")
"""The demo pipeline's task labels, in pipeline order."""


def quantum_times(
    repo: Path, collection: str
) -> dict[tuple[str, int | None, int | None], tuple[float, float]]:
    """(label, visit, detector) -> (prep, end) from the task metadata."""
    from lsst.daf.butler import Butler

    def utc(value: Any) -> float:
        text = value[-1] if isinstance(value, list) else value
        return datetime.datetime.fromisoformat(text).timestamp()

    butler = Butler.from_config(str(repo))
    times: dict[tuple[str, Any, Any], tuple[float, float]] = {}
    for label in LABELS:
        for ref in butler.query_datasets(f"{label}_metadata", collections=collection, explain=False):
            quantum = butler.get(ref)["quantum"]
            key = (label, ref.dataId.get("visit"), ref.dataId.get("detector"))
            times[key] = (utc(quantum["prepUtc"]), utc(quantum["endUtc"]))
    butler.close()
    return times


def noop(**kwargs: object) -> int:
    """An empty app (importable by workers: it is one of the plug-in's)."""
    return 0


def parsl_modules() -> list[str]:
    """The parsl modules a task's process has imported (an app for tests)."""
    return sorted(name for name in sys.modules if name == "parsl" or name.startswith("parsl."))


def _tool(name: str) -> str:
    return shutil.which(name, path=os.path.join(sys.prefix, "bin")) or name


def middleware_floor(repo: Path, pipeline: Path, collection: str, workdir: Path) -> dict[str, float]:
    """Run the demo pipeline's quanta with the middleware alone (see the
    module documentation); return ``quanta``, ``per_quantum`` (seconds of
    one core) and ``wall`` (of ``run-qbb``, imports included)."""
    qgraph = workdir / f"{collection.replace('/', '_')}.qg"
    common = ["--long-log", "--log-level=WARNING"]
    subprocess.run(
        [_tool("pipetask"), *common, "qgraph", "-b", str(repo), "-i", "DemoCam/defaults", "-o", collection]
        + ["-p", str(pipeline), "-d", "instrument = 'DemoCam'", "--save-qgraph", str(qgraph)],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [_tool("pipetask"), *common, "pre-exec-init-qbb", str(repo), str(qgraph)],
        check=True,
        capture_output=True,
    )
    start = time.perf_counter()
    subprocess.run([_tool("pipetask"), *common, "run-qbb", str(repo), str(qgraph), "-j", "1"], check=True)
    wall = time.perf_counter() - start
    subprocess.run(
        [_tool("butler"), "aggregate-graph", str(qgraph), str(repo), "--register-dataset-types"],
        check=True,
        capture_output=True,
    )
    times = quantum_times(repo, collection)
    span = max(e for _, e in times.values()) - min(p for p, _ in times.values())
    return {"quanta": len(times), "per_quantum": span / len(times), "wall": wall}


def work_queue_task_floor(tasks: int, cores: int, fast: bool) -> float:
    """Seconds of one core per empty Work Queue task of parsl (``tasks``
    tasks on one local worker of ``cores`` cores)."""
    import parsl
    from parsl.app.app import python_app
    from parsl.config import Config
    from parsl.executors import WorkQueueExecutor
    from parsl.providers import LocalProvider

    from ..execution.bridge.executors import fast_task_start

    # parsl's script runs as "python3": this environment's.
    os.environ["PATH"] = os.path.join(sys.prefix, "bin") + os.pathsep + os.environ["PATH"]
    with tempfile.TemporaryDirectory(prefix="gen3wf_wqfloor_") as run_dir:
        executor = WorkQueueExecutor(
            label="wq",
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1),
            working_dir=os.path.join(run_dir, "wq"),
            port=0,
            shared_fs=True,
            worker_options=f"--cores={cores}",
        )
        if fast:
            fast_task_start(executor)
        dfk = parsl.load(Config(executors=[executor], run_dir=run_dir, strategy="none"))
        try:
            # By its module's name even when this module runs as __main__:
            # a function of __main__ is pickled by value, and unpickling that
            # costs each task most of a second more than the empty call.
            from .bench_floors import noop as importable_noop

            app = python_app(executors=["wq"])(importable_noop)
            # One core each, as the plug-in's jobs ask (a task asking for
            # nothing takes a whole worker).
            spec = {"cores": 1, "memory": 100, "disk": 10}
            app(parsl_resource_specification=spec).result(timeout=300)  # the worker is up
            start = time.perf_counter()
            for future in [app(parsl_resource_specification=spec) for _ in range(tasks)]:
                future.result(timeout=600)
            wall = time.perf_counter() - start
        finally:
            dfk.cleanup()
            parsl.clear()
    return wall * cores / tasks


def work_queue_task_floors(tasks: int, cores: int, runs: int) -> dict[str, float]:
    """Median core-seconds per empty task, parsl's script (``parsl``) and
    the plug-in's start (``wq_task``), alternately, each run in a fresh
    interpreter (parsl is loaded once per process)."""
    figures: dict[str, list[float]] = {"parsl": [], "wq_task": []}
    for run in range(runs):
        for how in figures:
            command = [
                sys.executable,
                "-m",
                __name__,
                "--tasks",
                str(tasks),
                "--cores",
                str(cores),
                "--one",
                how,
            ]
            seconds = float(
                subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1]
            )
            figures[how].append(seconds)
            print(f"  empty Work Queue task, run {run}, {how:>7}: {seconds * 1000:6.0f} core-ms", flush=True)
    return {how: statistics.median(values) for how, values in figures.items()}


def main() -> None:
    """Print the Work Queue task floor, both ways, alternately."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", choices=("parsl", "wq_task"), help="one measurement, printed alone")
    args = parser.parse_args()
    if args.one:
        print(work_queue_task_floor(args.tasks, args.cores, fast=args.one == "wq_task"))
        return
    floors = work_queue_task_floors(args.tasks, args.cores, args.runs)
    print(
        f"Empty Work Queue task, core-ms each (median of {args.runs}): parsl's script "
        f"{floors['parsl'] * 1000:.0f}, the plug-in's start {floors['wq_task'] * 1000:.0f} "
        f"(x{floors['parsl'] / floors['wq_task']:.1f})"
    )


if __name__ == "__main__":
    main()
