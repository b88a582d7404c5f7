"""Benchmark: how the plug-in scales with the number of jobs.

Null jobs (``/bin/sh -c true``; on ThreadPool behind the bash-builtin
wrapper, no supervisor) of a DRP-shaped synthetic workflow go through the
real plug-in (`desc.gen3_workflow.testing.null_run`: ``ParslService.prepare``
then ``submit``, as ``bps submit`` does after building the QuantumGraph), one
submitting process per run, for each executor (``--executors``) and size
(``--jobs``), ``--runs`` times.  Per executor and size it prints medians
across runs of:

- ``jobs/s``: jobs over the wall time of ``prepare`` plus the run;
- against parsl alone (`~.parsl_alone`: the same workflow as parsl bash
  apps with their parents' futures as inputs, the same executor settings,
  a process of its own, run after each of ours so that noise hits both):
  ours over the quanta's run only (first handed to parsl to last end),
  parsl's over its first submit to its last result, and their ratio, per
  pair of runs (sizes up to ``--parsl-alone-up-to``; with
  ``--parsl-alone-wrapped`` parsl's jobs run behind the plug-in's
  bash-builtin wrapper too, so that only the submitting side differs);
- ``peak MB``: peak RSS of the submitting process; ``KB/job``: that peak
  minus the peak before ``prepare`` (the GenericWorkflow is ctrl_bps's, not
  ours), per job; ``run RSS MB``: its RSS once planned and the most seen
  while the run went (sampled each second: planning or running?);
- ``status ms``: `ParslGraph.status` (``file=None``) timed every second from
  this process while the run goes, median and p95; ``report ms``:
  ``bps report --id`` (`detailed_report`) every ``--report-every`` seconds;
- with ``--kill-restart``, a second run that is killed (``kill -9`` of the
  submitting process) once ``--kill-at`` of its jobs are done, then resumed
  (``null_run --restart``: `ParslGraph.restore` and ``run``): seconds from
  the restart to its first job launched, and to its end;
- with ``--restart-half-done``, the restart of a planned run whose store
  records its first half done (`half_done_restart`): seconds to its first
  job launched (``--runs 0`` skips the full runs);
- what grows with the run: the size of ``parsl.log`` and of the store, the
  most files in one directory of the submit dir (``logs/<label>/``), and
  the most ``status/`` markers seen at once;

then the ratios of each size to the smallest (per-job RSS should stay flat).
With ``--quanta N`` it also runs the demo DRP pipeline (about ``N`` quanta:
``--detectors`` per visit, visits to fit) with real ``bps submit`` and the
default execution mode on each executor, and prints the same figures plus
the final job's time, and per quantum (`quanta_span`): the quanta's span
(first start to last end), core-ms per quantum over this machine's cores,
and the wait from the init job's end to the first quantum.  The machine may
be shared: figures are noisy, and nothing is asserted.

    python -m desc.gen3_workflow.benchmarks.bench_scale --jobs 10000 100000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..testing import null_run as null_run_module
from ..testing.null_run import kill_session
from . import parsl_alone
from .scale_pipeline import pipeline_run
from .scale_probes import Poller, final_job_seconds, growth, rss_mb, run_only
from .scale_tables import fmt, print_ratios, print_restarts, print_run, print_table, print_vs_parsl, summary

__all__ = ["main"]

EXECUTORS = ("ThreadPool", "HighThroughput")
SETTLE_SECONDS = 65.0
"""After removing the files of many runs, how long to wait before the next
size's runs (see ``deferred`` in `main`)."""


def _null_run_command(
    submit_dir: str, jobs: int, executor: str, restart: bool = False, settings: Sequence[str] = ()
) -> list[str]:
    """``null_run``'s command line; ``settings``: more ``parsl_config`` keys
    (``KEY=VALUE``; a restart takes the run's own)."""
    command = [sys.executable, "-m", null_run_module.__name__]
    if restart:
        return [*command, f"--restart={submit_dir}"]
    keys = [f"--set={item}" for item in ("executor=" + executor, *settings)]
    return [*command, f"--jobs={jobs}", f"--submit-dir={submit_dir}", *keys]


@contextlib.contextmanager
def _session(command: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A process in a session of its own, killed with everything it started
    on the way out."""
    with open(log, "w") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        kill_session(proc.pid)
        proc.wait()


def _last_json(log: Path) -> dict[str, Any]:
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no figures in {log}:\n{log.read_text(errors='replace')[-2000:]}")


def _first_launch_after(submit_dir: str, since: float) -> float | None:
    from ..store.job_store import JobStateStore
    from ..store.records import JobKind

    with JobStateStore.open(submit_dir) as store:
        jobs = store.jobs(kind=JobKind.QUANTUM)
    starts = [t for j in jobs for t in (j.t_launched, j.t_end) if t is not None and t >= since]
    return min(starts) - since if starts else None


def null_run(
    workdir: Path,
    executor: str,
    jobs: int,
    report_every: float,
    kill_at: float | None,
    settings: Sequence[str] = (),
) -> dict[str, Any]:
    """One null run (killed and resumed if ``kill_at``); its figures."""
    submit_dir = str(workdir / f"{executor}_{jobs}_{time.strftime('%H%M%S')}")
    env = {**os.environ, "GEN3WF_RUN_INDEX": str(workdir / "runs.txt")}
    log = Path(submit_dir + ".log")
    figures: dict[str, Any] = {}
    with _session(_null_run_command(submit_dir, jobs, executor, settings=settings), log, env) as proc:
        with Poller(submit_dir, report_every, proc.pid) as poller:
            if kill_at is None:
                proc.wait()
            else:
                while proc.poll() is None and poller.done < kill_at * jobs:
                    time.sleep(0.2)
                if proc.poll() is not None:
                    raise RuntimeError(f"{executor} {jobs}: the run ended before it could be killed")
                os.kill(proc.pid, signal.SIGKILL)
                _, _, usage = os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL
                figures["killed_after"] = poller.done
                figures["killed_peak_rss_mb"] = usage.ru_maxrss / 1024
        first = poller
    if kill_at is not None:
        restart_log = Path(submit_dir + ".restart.log")
        command = _null_run_command(submit_dir, jobs, executor, restart=True)
        since = time.time()
        with _session(command, restart_log, env) as proc, Poller(submit_dir, report_every) as poller:
            proc.wait()
        restarted = _last_json(restart_log)
        figures["restart_seconds"] = restarted["ended"] - since
        figures["restart_first_job_seconds"] = _first_launch_after(submit_dir, since)
        figures["restart_states"] = restarted["states"]
        figures["restart_peak_rss_mb"] = restarted["peak_rss_mb"]
        figures["restart_rss_before_mb"] = restarted["rss_before_prepare_mb"]
        figures["status_seconds"] = first.status_seconds + poller.status_seconds
        figures["report_seconds"] = first.report_seconds + poller.report_seconds
        figures["max_markers"] = max(first.max_markers, poller.max_markers)
        figures["jobs"] = restarted["jobs"]
    else:
        result = _last_json(log)
        figures.update(result)
        figures["status_seconds"] = first.status_seconds
        figures["report_seconds"] = first.report_seconds
        if first.rss_mb:
            figures["run_rss_first_mb"] = first.rss_mb[0]
            figures["run_rss_max_mb"] = max(first.rss_mb)
        figures["max_markers"] = first.max_markers
        figures["kb_per_job"] = (
            (result["peak_rss_mb"] - result["rss_before_prepare_mb"]) * 1024 / result["jobs"]
        )
        figures["final_job_seconds"] = final_job_seconds(submit_dir)
        figures.update(run_only(submit_dir))
    figures["growth"] = growth(submit_dir)
    figures["submit_dir"] = submit_dir
    return figures


def half_done_restart(
    workdir: Path, executor: str, jobs: int, settings: Sequence[str] = ()
) -> dict[str, Any]:
    """Restart of a run planned with ``jobs`` jobs whose first half (the init
    job and a prefix of the quanta in ``seq`` order, which is topological:
    every done job's parents are done) the store records as done, written
    through the runner's own `JobStateStore.apply`: seconds from the restart
    to its first job launched, and the restarting process's RSS then.  The
    restart is killed at that point.  Cheaper than running half of a 10^6-job
    workflow first (``--kill-restart``), and the same store to restart from."""
    from ..store.job_store import UNREADABLE, JobStateStore
    from ..store.records import JobKind, JobState, JobUpdate

    submit_dir = str(workdir / f"{executor}_{jobs}_half_{time.strftime('%H%M%S')}")
    env = {**os.environ, "GEN3WF_RUN_INDEX": str(workdir / "runs.txt")}
    prepare = [*_null_run_command(submit_dir, jobs, executor, settings=settings), "--prepare-only"]
    subprocess.run(prepare, env=env, check=True, stdout=subprocess.DEVNULL)
    now = time.time()
    with JobStateStore.open(submit_dir, writable=True) as store:
        quanta = store.seqs(kind=JobKind.QUANTUM)
        done = [*store.seqs(kind=JobKind.INIT), *quanta[: len(quanta) // 2]]
        store.apply(JobUpdate(seq, JobState.EXEC_DONE, now, attempts=1, exit_code=0) for seq in done)
    del quanta
    with JobStateStore.open(submit_dir) as store:
        done_quanta = sum(c[JobState.EXEC_DONE] for c in store.counts(JobKind.QUANTUM).values())
    figures: dict[str, Any] = {"jobs": len(done) * 2, "done_before": len(done), "submit_dir": submit_dir}
    log = Path(submit_dir + ".restart.log")
    since = time.time()
    with _session(_null_run_command(submit_dir, jobs, executor, restart=True), log, env) as proc:
        first = None
        while proc.poll() is None and time.time() - since < 600:
            with contextlib.suppress(*UNREADABLE), JobStateStore.open(submit_dir) as store:
                counts = store.counts(JobKind.QUANTUM)
                moving = sum(c[JobState.LAUNCHED] + c[JobState.RUNNING] for c in counts.values())
                if moving or sum(c[JobState.EXEC_DONE] for c in counts.values()) > done_quanta:
                    first = time.time() - since
                    figures["restart_rss_mb"] = rss_mb(proc.pid)
                    break
            time.sleep(0.2)
    figures["restart_first_job_seconds"] = first
    return figures


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--jobs", type=int, nargs="*", default=[10_000, 100_000], help="null workflow sizes (none: skip)"
    )
    parser.add_argument("--executors", nargs="+", default=list(EXECUTORS), choices=EXECUTORS)
    parser.add_argument("--runs", type=int, default=1, help="runs per executor and size")
    parser.add_argument("--kill-restart", action="store_true", help="also time a kill -9 and restart")
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of jobs done at the kill")
    parser.add_argument(
        "--restart-half-done",
        action="store_true",
        help="also time the restart of a store whose first half is recorded done (no run first)",
    )
    parser.add_argument("--quanta", type=int, default=0, help="demo DRP pipeline quanta (0: skip)")
    parser.add_argument("--detectors", type=int, default=20, help="detectors per visit of that pipeline")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds between timed reports")
    parser.add_argument("--workdir", help="keep runs here (default: a temporary directory, removed)")
    parser.add_argument("--json", help="also write every run's figures to this file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a parsl_config key of every null run"
    )
    parser.add_argument(
        "--parsl-alone-up-to",
        type=int,
        default=200_000,
        help="largest size also run by parsl alone (0: none)",
    )
    parser.add_argument(
        "--parsl-alone-wrapped",
        action="store_true",
        help="parsl alone runs jobs behind the plug-in's wrapper",
    )
    args = parser.parse_args(argv)
    # SIGTERM (a pkill) unwinds like Ctrl-C, so that each run's session is killed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gen3wf_bench_scale_")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Working in {workdir} on {os.cpu_count()} cores; null jobs {args.jobs}, {args.runs} run(s) each")
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    restarts: dict[tuple[str, int], dict[str, Any]] = {}
    everything: list[dict[str, Any]] = []
    cleanup: Callable[[str], None] = (lambda path: None) if args.workdir else _remove
    # The files of runs measured against parsl alone are removed once every
    # run of their size is done, not between runs: on ext4 without a
    # journal (as on the machine the figures come from) a file made within
    # a minute of many others being removed costs up to ~0.6 ms of system
    # time (the allocator passes over every inode freed in that minute), and
    # the run right after a removal would pay for the one before it.
    deferred: list[tuple[str, Callable[[str], None]]] = []
    try:
        for jobs in sorted(args.jobs):
            if deferred:
                for path, remove in deferred:
                    remove(path)
                deferred = []
                time.sleep(SETTLE_SECONDS)
            for executor in args.executors:
                runs = []
                for run in range(args.runs):
                    figures = null_run(workdir, executor, jobs, args.report_every, None, args.set)
                    figures.update(executor=executor, kind="null")
                    print_run(executor, run, figures)
                    everything.append(figures)
                    if set(figures.get("states") or ()) != {"exec_done"}:
                        # Not a measurement: left out of the medians, its
                        # submit directory and log kept to see why.
                        print(f"    run {run} did not finish: see {figures['submit_dir']}.log", flush=True)
                        continue
                    if jobs <= args.parsl_alone_up_to:
                        deferred.append((figures["submit_dir"], cleanup))
                        alone = parsl_alone.measure(
                            str(workdir), executor, jobs, args.set, args.parsl_alone_wrapped, keep=True
                        )
                        deferred.append((alone["run_dir"], _remove))
                        figures.update(parsl_jobs_per_second=alone["jobs_per_second"])
                        wrapper = " (jobs behind the plug-in's wrapper)" if args.parsl_alone_wrapped else ""
                        print(f"    parsl alone{wrapper}: {alone['jobs_per_second']:.1f} jobs/s", flush=True)
                    else:
                        cleanup(figures["submit_dir"])
                    runs.append(figures)
                if runs:  # --runs 0: only the restarts
                    rows[(executor, jobs)] = summary(runs)
                if args.kill_restart:
                    figures = null_run(workdir, executor, jobs, args.report_every, args.kill_at, args.set)
                    figures.update(executor=executor, kind="restart")
                    everything.append(figures)
                    restarts[(executor, jobs)] = figures
                    print(
                        f"  {executor} {jobs}: killed after {figures['killed_after']} done, restart "
                        f"{figures['restart_seconds']:.1f} s (first job after "
                        f"{fmt(figures['restart_first_job_seconds'], '.1f')} s)",
                        flush=True,
                    )
                    cleanup(figures["submit_dir"])
                if args.restart_half_done:
                    figures = half_done_restart(workdir, executor, jobs, args.set)
                    figures.update(executor=executor, kind="half_done_restart")
                    everything.append(figures)
                    print(
                        f"  {executor} {jobs}: restart of a half-done store ({figures['done_before']} done): "
                        f"first job after {fmt(figures['restart_first_job_seconds'], '.1f')} s, "
                        f"RSS then {fmt(figures.get('restart_rss_mb'), '.0f')} MB",
                        flush=True,
                    )
                    cleanup(figures["submit_dir"])
        pipeline_rows = {}
        if args.quanta:
            for executor in args.executors:
                figures = pipeline_run(workdir, executor, args.quanta, args.detectors, args.report_every)
                figures.update(executor=executor, kind="pipeline")
                everything.append(figures)
                print_run(executor, 0, figures)
                print(
                    f"  {executor} quanta: span {fmt(figures['quanta_span_seconds'], '.1f')} s, "
                    f"{fmt(figures['core_ms_per_quantum'], '.0f')} core-ms/quantum "
                    f"on {os.cpu_count()} cores, "
                    f"init end -> first quantum {fmt(figures['init_to_first_seconds'], '.2f')} s, "
                    f"final job {fmt(figures['final_job_seconds'], '.1f')} s",
                    flush=True,
                )
                pipeline_rows[(executor, figures["jobs"])] = summary([figures])
    finally:
        for path, remove in deferred:
            remove(path)
        if args.json:
            Path(args.json).write_text(json.dumps(everything, indent=1, default=str))
        if not args.workdir:
            _remove(str(workdir))
    if rows:
        print_table("Null jobs (medians across runs):", rows)
        print_vs_parsl(rows)
    if len(rows) > 1:
        print_ratios(rows)
    if restarts:
        print_restarts(restarts)
    if pipeline_rows:
        print_table(
            f"Demo DRP pipeline, bps submit, default execution mode (about {args.quanta} quanta):",
            pipeline_rows,
        )


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        for suffix in (".log", ".restart.log"):
            os.remove(path + suffix)


if __name__ == "__main__":
    main()
