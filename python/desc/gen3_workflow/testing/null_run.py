"""Null jobs through the real plug-in, for scale and soak tests.

``python -m desc.gen3_workflow.testing.null_run --jobs N --workdir DIR
[--command CMD] [--set KEY=VALUE ...]`` hands a DRP-shaped synthetic
workflow (`synthetic_workflow`) whose every job runs ``CMD`` (``true`` by
default) to `ParslService.prepare` and `ParslService.submit`, exactly as
``bps submit`` would after building a QuantumGraph, with ``parsl_config``
keys from ``--set`` (YAML values: ``--set executor=WorkQueue --set
return_grace=10``).  It prints one JSON line: the jobs, seconds, jobs per
second, peak RSS before ``prepare`` and at the end, job states, and the
messages jobs ended with; its exit status is 0 if every job succeeded.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import sys
import time

import yaml

__all__ = ["main"]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Run the null workflow; return 0 if every job succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, required=True, help="about how many jobs")
    parser.add_argument("--detectors", type=int, default=189, help="detectors per visit")
    parser.add_argument("--workdir", required=True, help="where the submit directory goes")
    parser.add_argument("--command", default="true", help="what every job runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a parsl_config key")
    args = parser.parse_args(argv)

    from lsst.ctrl.bps import BpsConfig

    from ..service import ParslService
    from ..store.job_store import JobStateStore
    from .synthetic_workflow import synthetic_workflow

    parsl_config = {"progress": False}
    for item in args.set:
        key, _, value = item.partition("=")
        parsl_config[key] = yaml.safe_load(value)
    workflow = synthetic_workflow(
        args.jobs, args.detectors, executable="/bin/sh", arguments=f"-c '{args.command}'"
    )
    submit_dir = os.path.join(os.path.abspath(args.workdir), f"null_{time.strftime('%Y%m%dT%H%M%S')}")
    os.makedirs(submit_dir)
    config = BpsConfig({"operator": "null", "payloadName": "null", "parsl_config": parsl_config})
    service = ParslService(config)
    rss_before = _peak_rss_mb()
    start = time.monotonic()
    prepared = service.prepare(config, workflow, submit_dir)
    planned = time.monotonic() - start
    status = 0
    try:
        service.submit(prepared)
    except Exception as exc:  # a failed run: counted below
        print(str(exc).splitlines()[0], file=sys.stderr)
        status = 1
    seconds = time.monotonic() - start
    with JobStateStore.open(submit_dir) as store:
        jobs = store.jobs()
    states = collections.Counter(job.state.value for job in jobs)
    messages = collections.Counter(job.message for job in jobs if job.message)
    print(
        json.dumps(
            {
                "jobs": len(jobs),
                "submit_dir": submit_dir,
                "plan_seconds": round(planned, 2),
                "seconds": round(seconds, 2),
                "jobs_per_second": round(len(jobs) / seconds, 1),
                "rss_before_prepare_mb": round(rss_before, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "states": dict(states),
                "messages": dict(messages.most_common(10)),
            }
        )
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
