"""Planning a synthetic workflow, against its floors.

For each size it builds the DRP-shaped synthetic GenericWorkflow once, then
times, alternately, ``--runs`` times each:

- ``walk``: the least any planner does with ctrl_bps's objects: read each
  job's name, label, data-ID tags, command values and parents, in the order
  the planner walks them.  The floor of planning from a GenericWorkflow;
- ``plan``: the planner alone, its rows dropped (`stream_plan` into a sink
  that keeps nothing);
- ``write``: the plan's rows, made beforehand and held in memory, written by
  `~desc.gen3_workflow.store.plan_writer.StorePlanWriter` in this process:
  SQLite's share (rows, indexes, commit), no pipe;
- ``prepare``: what ``bps submit`` does, `stream_plan` into the store's
  writer process until it has committed.

It prints medians, ratios to the walk and to plan + write, the extra peak
RSS of the first ``prepare`` (run before anything else is held), and
optionally cProfile's view of the planner.
Never a pass/fail test: figures on a shared machine are noisy.

Run ``python -m desc.gen3_workflow.benchmarks.bench_plan --jobs 1000000``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lsst.ctrl.bps import BpsConfig, GenericWorkflow

from ..plan.workflow import WorkflowPlan, node_items, plan_workflow, stream_plan
from ..store.job_store import JobStateStore
from ..store.plan_process import PlanWriterProcess
from ..store.records import RunInfo
from ..store.templates import EdgeBlock, JobTemplate, PlanRow
from ..testing.synthetic_workflow import synthetic_workflow

__all__ = ["main", "plan_figures"]

STEPS = ("walk", "plan", "write", "prepare")


class _Dropped:
    """A plan sink that keeps nothing (the planner's own time)."""

    def add_rows(self, rows: list[PlanRow]) -> None:
        pass

    def add_edges(self, edges: EdgeBlock) -> None:
        pass

    def add_templates(self, templates: list[JobTemplate]) -> None:
        pass

    def reset(self) -> None:
        pass


def walk(workflow: GenericWorkflow) -> int:
    """Reach what every planner must of each job (its name, label, tags,
    command values and parents), as the planner reaches them; return a sum
    of their sizes."""
    total = 0
    for (_, data), parents in node_items(workflow, kahn=False):
        gwjob = data["job"]
        total += len(gwjob.name) + len(gwjob.label) + len(parents)
        total += len(gwjob.tags or ()) + len(gwjob.cmdvals or ())
    return total


def _timed(step: Callable[[str], Any]) -> float:
    with tempfile.TemporaryDirectory() as submit_dir:
        start = time.perf_counter()
        step(submit_dir)
        return time.perf_counter() - start


def _prepare(workflow: GenericWorkflow, submit_dir: str) -> None:
    with PlanWriterProcess(submit_dir, "bench", RunInfo()) as writer:
        stream_plan(BpsConfig({}), workflow, submit_dir, writer)
        writer.commit(timeout=3600)


def _write(plan: WorkflowPlan, submit_dir: str) -> None:
    with JobStateStore.open(submit_dir, writable=True) as store:
        store.write_plan("bench", submit_dir, RunInfo(), plan)


def plan_figures(n_jobs: int, runs: int = 1, top: int = 0) -> dict[str, float]:
    """Time each step of planning a synthetic ``n_jobs`` workflow, print
    the figures, and return each step's median (seconds)."""
    workflow = synthetic_workflow(n_jobs)
    n = len(workflow)
    held: dict[str, WorkflowPlan] = {}
    steps: dict[str, Callable[[str], Any]] = {
        "walk": lambda _: walk(workflow),
        "plan": lambda submit_dir: stream_plan(BpsConfig({}), workflow, submit_dir, _Dropped()),
        "write": lambda submit_dir: _write(held["plan"], submit_dir),
        "prepare": lambda submit_dir: _prepare(workflow, submit_dir),
    }
    seconds: dict[str, list[float]] = {step: [] for step in STEPS}
    # The first prepare before anything else is held, for its extra peak RSS.
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds["prepare"].append(_timed(steps["prepare"]))
    extra_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    with tempfile.TemporaryDirectory() as submit_dir:
        held["plan"] = plan_workflow(BpsConfig({}), workflow, submit_dir)
    for run in range(runs):
        for step in STEPS:
            if not (step == "prepare" and run == 0):
                seconds[step].append(_timed(steps[step]))
    medians = {step: statistics.median(values) for step, values in seconds.items()}
    print(f"\nPlanning {n} jobs, median of {runs} run(s) (every run, in order, in brackets):")
    for step in STEPS:
        each = ", ".join(f"{value:.2f}" for value in seconds[step])
        ratio = medians[step] / medians["walk"]
        print(f"  {step:<8} {medians[step]:6.2f} s  x{ratio:.1f} the walk  ({each})")
    print(
        f"  prepare / (plan + write): x{medians['prepare'] / (medians['plan'] + medians['write']):.2f}; "
        f"the first prepare added {extra_mb:.0f} MB to this process's peak RSS"
    )
    if top:
        profile = cProfile.Profile()
        profile.enable()
        _timed(steps["plan"])
        profile.disable()
        print(f"Where the planner's time goes (cProfile, top {top} by own time):")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(top)
    return medians


def main(argv: list[str] | None = None) -> None:
    """Print the planning figures of each size asked for."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, nargs="+", default=[100_000], help="synthetic workflow sizes")
    parser.add_argument("--runs", type=int, default=3, help="runs of each step, alternately")
    parser.add_argument("--profile-top", type=int, default=0, help="cProfile's top entries of the planner")
    args = parser.parse_args(argv)
    for n_jobs in args.jobs:
        plan_figures(n_jobs, args.runs, args.profile_top)


if __name__ == "__main__":
    main()
