"""Benchmark: planning a large synthetic workflow and reading its status.

Builds a GenericWorkflow shaped like the demo DRP pipeline (per visit and
detector: isr -> characterizeImage -> calibrate; per visit: visitSummary; one
globalTable), plans it into a job-state store, then times
`ParslGraph.status` and the store's counts, medians of several runs.
Prints figures; asserts nothing.

    python -m desc.gen3_workflow.benchmarks.bench_status --jobs 100000
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import tempfile
import time

from lsst.ctrl.bps import BpsConfig

from ..parsl_graph import ParslGraph
from ..plan.workflow import plan_workflow
from ..settings.parsl_section import ParslSettings
from ..store.job_store import JobStateStore
from ..store.records import RunInfo
from ..testing.synthetic_workflow import synthetic_workflow


def _median_seconds(func, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


__all__ = ["main"]


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100_000, help="approximate number of jobs")
    parser.add_argument("--repeat", type=int, default=7, help="timed repetitions of status()")
    args = parser.parse_args()

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    workflow = synthetic_workflow(args.jobs)
    build = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as submit_dir:
        config = BpsConfig({})
        start = time.perf_counter()
        plan = plan_workflow(config, workflow, submit_dir)
        planning = time.perf_counter() - start
        start = time.perf_counter()
        with JobStateStore.open(submit_dir, writable=True) as store:
            store.write_plan("bench", submit_dir, RunInfo(), plan)
        writing = time.perf_counter() - start
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size_mb = os.path.getsize(os.path.join(submit_dir, "gen3_workflow.sqlite3")) / 1e6

        graph = ParslGraph(submit_dir, config, ParslSettings())
        status = _median_seconds(lambda: graph.status(file=io.StringIO()), args.repeat)
        get_failed = _median_seconds(lambda: graph.get_jobs("isr", status="failed"), args.repeat)

    print(f"jobs: {len(plan)}, edges: {len(plan.edges)}")
    print(f"GenericWorkflow built by this script: {build:.2f} s (ctrl_bps's part, not ours)")
    print(f"plan_workflow (commands, order, edges): {planning:.2f} s")
    print(f"write_plan to the store:                {writing:.2f} s; store {size_mb:.1f} MB")
    print(f"peak RSS growth while planning: {(rss1 - rss0) / 1024:.0f} MiB")
    print(f"ParslGraph.status(): median {status * 1000:.1f} ms over {args.repeat} runs")
    print(f"ParslGraph.get_jobs('isr', 'failed'): median {get_failed * 1000:.1f} ms")


if __name__ == "__main__":
    main()
