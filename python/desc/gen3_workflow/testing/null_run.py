"""Null jobs through the real plug-in, for scale and soak tests.

``python -m desc.gen3_workflow.testing.null_run --jobs N --workdir DIR
[--command CMD] [--set KEY=VALUE ...]`` hands a DRP-shaped synthetic
workflow (`synthetic_workflow`) whose every job runs ``CMD`` (``true`` by
default) to `ParslService.prepare` and `ParslService.submit`, exactly as
``bps submit`` would after building a QuantumGraph, with ``parsl_config``
keys from ``--set`` (YAML values: ``--set executor=WorkQueue --set
return_grace=10``; ``execution`` is ``process`` unless set). ``CMD`` runs
under ``/bin/sh -c`` and sees the job's ``seq`` as ``$GEN3WF_JOB``
(``--command 'echo $GEN3WF_JOB >> ran.txt'`` counts how often each job's
payload ran); ``--prepare-only`` stops after ``prepare``. ``--submit-dir``
names the submit directory instead of a new one under ``--workdir``; the
run's bps config is saved there, so that ``bps restart --id`` (or
``--restart SUBMIT_DIR``, which restores the run with `ParslGraph.restore`
and runs what did not succeed) can resume it.

It prints one JSON line before ``prepare`` (the peak RSS so far), and one
at the end: the jobs, seconds, jobs per second, peak RSS
before ``prepare`` (or the restore) and at the end, when the run started
and ended (seconds since the epoch), job states, and the messages jobs
ended with; its exit status is 0 if every job succeeded.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import signal
import sys
import time

import yaml

__all__ = ["kill_session", "main", "session_processes"]


def session_processes(sid: int) -> list[int]:
    """Pids of the processes in session ``sid`` (a process started with
    ``start_new_session``, and all it started that did not leave it: parsl's
    worker pools get process groups of their own, so ``killpg`` misses
    them)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session ...; comm may hold spaces.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def kill_session(sid: int) -> int:
    """SIGKILL every process of session ``sid``; how many there were."""
    pids = session_processes(sid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Run the null workflow (or resume one); return 0 if every job succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="about how many jobs")
    parser.add_argument("--detectors", type=int, default=189, help="detectors per visit")
    parser.add_argument("--workdir", help="where the submit directory goes")
    parser.add_argument("--submit-dir", help="the submit directory itself (instead of one in --workdir)")
    parser.add_argument("--command", default="true", help="what every job runs (no single quotes)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a parsl_config key")
    parser.add_argument("--restart", metavar="SUBMIT_DIR", help="resume this run instead")
    parser.add_argument("--prepare-only", action="store_true", help="plan the run, do not submit it")
    args = parser.parse_args(argv)
    if args.restart is None and (args.jobs is None or not (args.workdir or args.submit_dir)):
        parser.error("--jobs and --workdir (or --submit-dir) are required, unless --restart")

    from lsst.ctrl.bps import BpsConfig

    from ..parsl_graph import ParslGraph
    from ..service import ParslService
    from ..store.job_store import JobStateStore
    from ..store.records import JobKind, RunState
    from .synthetic_workflow import synthetic_workflow

    # Null jobs are no quanta: a warm runner brings them nothing but a hop.
    parsl_config: dict = {"progress": False, "execution": "process"}
    for item in args.set:
        key, _, value = item.partition("=")
        parsl_config[key] = yaml.safe_load(value)
    status = 0
    planned = 0.0
    if args.restart is not None:
        submit_dir = os.path.abspath(args.restart)
        rss_before = _peak_rss_mb()
        started = time.time()
        start = time.monotonic()
        graph = ParslGraph.restore(submit_dir, parsl_config if args.set else None)
        try:
            if graph.run(block=True) != RunState.SUCCEEDED:
                status = 1
        except Exception as exc:  # a failed run: counted below
            print(str(exc).splitlines()[0], file=sys.stderr)
            status = 1
    else:
        workflow = synthetic_workflow(
            args.jobs, args.detectors, executable="/bin/sh", arguments=f"-c '{args.command}'"
        )
        if args.submit_dir:
            submit_dir = os.path.abspath(args.submit_dir)
        else:
            submit_dir = os.path.join(os.path.abspath(args.workdir), f"null_{time.strftime('%Y%m%dT%H%M%S')}")
        os.makedirs(submit_dir)
        name = os.path.basename(submit_dir)
        config = BpsConfig(
            {
                "operator": "null",
                "payloadName": "null",
                "uniqProcName": name,
                "parsl_config": parsl_config,
            }
        )
        # What `bps submit` leaves in the submit directory for `bps restart`.
        with open(os.path.join(submit_dir, f"{name}_config.yaml"), "w") as fh:
            config.dump(fh)
        service = ParslService(config)
        rss_before = _peak_rss_mb()
        # For whoever kills this process before it prints its figures.
        print(json.dumps({"rss_before_prepare_mb": round(rss_before, 1)}), flush=True)
        started = time.time()
        start = time.monotonic()
        prepared = service.prepare(config, workflow, submit_dir)
        planned = time.monotonic() - start
        try:
            if not args.prepare_only:
                service.submit(prepared)
        except Exception as exc:  # a failed run: counted below
            print(str(exc).splitlines()[0], file=sys.stderr)
            status = 1
    seconds = time.monotonic() - start
    # From the store's counts: reading 10^6 job records here would be most
    # of the peak RSS this prints.
    states: collections.Counter[str] = collections.Counter()
    with JobStateStore.open(submit_dir) as store:
        for kind in JobKind:
            for by_state in store.counts(kind).values():
                states.update({state.value: n for state, n in by_state.items() if n})
        messages = store.message_counts(10)
    print(
        json.dumps(
            {
                "jobs": sum(states.values()),
                "submit_dir": submit_dir,
                "plan_seconds": round(planned, 2),
                "seconds": round(seconds, 2),
                "jobs_per_second": round(sum(states.values()) / seconds, 1),
                "rss_before_prepare_mb": round(rss_before, 1),
                "peak_rss_mb": round(_peak_rss_mb(), 1),
                "started": started,
                "ended": time.time(),
                "states": dict(states),
                "messages": dict(messages),
            }
        )
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
