"""``bps report``, ``bps status`` and the run listing behind ``bps cancel
--user``, read from the runs' job-state stores.

Nothing here talks to parsl: a store says everything, whether the run is
going, has ended, or its submitting process was killed, and whether parsl
monitoring was on or off.  The one thing a store cannot say is that its
writer died; a run marked running whose submitting process is gone from
this host is reported as FAILED (interrupted).
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from lsst.ctrl.bps import WmsJobReport, WmsRunReport, WmsSpecificInfo, WmsStates

from ..store.job_store import UNREADABLE, JobStateStore
from ..store.liveness import Liveness, liveness
from ..store.records import JobKind, JobRecord, JobState, RunRecord, RunState
from ..store.run_index import index_path, last_write, resolve_run, run_owner, submitted_runs
from .executors import executor_lines
from .failures import final_job_notes, last_hosts, tried_again_lines
from .text import (
    MAX_LISTED,
    SLOW_FACTOR,
    SLOW_MIN_SECONDS,
    format_clock,
    format_duration,
    format_failed_job,
    format_slow_job,
)

__all__ = [
    "JOB_STATES",
    "RUN_REPORT_HAS_SITE",
    "RUN_STATES",
    "active_runs",
    "detailed_report",
    "quick_status",
    "run_site",
    "run_state",
    "summary_reports",
]

JOB_STATES: dict[JobState, WmsStates] = {
    JobState.PENDING: WmsStates.UNREADY,
    JobState.LAUNCHED: WmsStates.PENDING,
    JobState.RUNNING: WmsStates.RUNNING,
    JobState.EXEC_DONE: WmsStates.SUCCEEDED,
    JobState.FAILED: WmsStates.FAILED,
    JobState.DEP_FAIL: WmsStates.PRUNED,
}

RUN_STATES: dict[RunState, WmsStates] = {
    RunState.PREPARED: WmsStates.UNREADY,
    RunState.RUNNING: WmsStates.RUNNING,
    RunState.SUCCEEDED: WmsStates.SUCCEEDED,
    RunState.FAILED: WmsStates.FAILED,
    RunState.CANCELLED: WmsStates.DELETED,
    RunState.INTERRUPTED: WmsStates.FAILED,
}

_DAY = 86400.0

RUN_REPORT_HAS_SITE = "site" in {f.name for f in dataclasses.fields(WmsRunReport)}
"""Whether this ctrl_bps's `~lsst.ctrl.bps.WmsRunReport` has ``site`` (the
SITE column of ``bps report``, new in ctrl_bps 30.2026.4300).  The class has
``__slots__``: setting a field it lacks is an error."""


def run_state(run: RunRecord) -> tuple[WmsStates, str]:
    """The WMS state of a run, from its store's run record.

    Parameters
    ----------
    run : `RunRecord`
        The run.

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The run's state; FAILED for a run marked running whose submitting
        process is gone from this host.
    note : `str`
        Why the state is not simply the recorded one, or empty.
    """
    alive = liveness(run)
    if alive == Liveness.ELSEWHERE:
        return RUN_STATES[run.state], (
            f"run by pid {run.pid} on host {run.host}: this is its last recorded state; "
            "whether that process still runs can only be checked there"
        )
    if alive == Liveness.GONE:
        return WmsStates.FAILED, (
            f"interrupted: the submitting process (pid {run.pid}) is gone without recording an end; "
            "jobs still marked running may be orphans. Finish the run with: "
            f"bps restart --id {run.submit_dir}"
        )
    return RUN_STATES[run.state], ""


def _label_counts(store: JobStateStore) -> dict[str, dict[WmsStates, int]]:
    """Jobs per label and WMS state, every state present, labels in
    pipeline order with pipetaskInit first and finalJob last."""
    summary: dict[str, dict[WmsStates, int]] = {}
    # In the order ctrl_bps lists them: pipetaskInit, tasks, finalJob.
    for kind in JobKind:
        for label, by_state in store.counts(kind).items():
            counts = summary.setdefault(label, dict.fromkeys(WmsStates, 0))
            for state, count in by_state.items():
                counts[JOB_STATES[state]] += count
    return summary


def _base_report(
    submit_dir: str, run: RunRecord, state: WmsStates, summary: dict[str, dict[WmsStates, int]]
) -> WmsRunReport:
    info = run.info
    state_counts = dict.fromkeys(WmsStates, 0)
    for counts in summary.values():
        for wms_state, count in counts.items():
            state_counts[wms_state] += count
    # ctrl_bps's tables cannot hold None: every text field gets a string.
    extra: dict[str, Any] = {"site": run_site(run)} if RUN_REPORT_HAS_SITE else {}
    return WmsRunReport(
        **extra,
        wms_id=submit_dir,
        global_wms_id=f"{run.host}:{submit_dir}" if run.host else submit_dir,
        path=submit_dir,
        label=run.name,
        run=info.output_run or run.name,
        project=info.project or "",
        campaign=info.campaign or "",
        payload=info.payload_name or "",
        operator=info.operator or run_owner(submit_dir),
        run_summary=";".join(f"{label}:{sum(counts.values())}" for label, counts in summary.items()),
        state=state,
        total_number_jobs=sum(state_counts.values()),
        job_state_counts=state_counts,
    )


def run_site(run: RunRecord) -> str:
    """What the SITE column shows for a run: its bps ``computeSite`` when
    the store recorded one, else where parsl ran its jobs (the provider:
    ``Local`` or ``Slurm``; ThreadPool runs them locally)."""
    if run.info.compute_site:
        return run.info.compute_site
    # A store from before the site was recorded: its provider.
    return run.info.site or str((run.info.parsl_config or {}).get("provider") or "Local")


def summary_reports(
    user: str | None = None, hist: float | None = 0, now: float | None = None
) -> tuple[list[WmsRunReport], str]:
    """One brief report per indexed run (ctrl_bps sorts them by id).

    Parameters
    ----------
    user : `str`, optional
        Only runs whose operator, or the owner of whose store, is this user.
    hist : `float`, optional
        Also runs that ended (or were last written) within this many days;
        running runs are always included.
    now : `float`, optional
        The time to measure ``hist`` from (default: now).

    Returns
    -------
    reports : `list` [`lsst.ctrl.bps.WmsRunReport`]
        The runs, with state, job counts and run summary (for ``%S``).
    message : `str`
        Notes on interrupted runs and runs on other hosts, or a hint when
        nothing matched.
    """
    now = time.time() if now is None else now
    reports: list[WmsRunReport] = []
    notes: list[str] = []
    known = 0
    for submit_dir in submitted_runs(user):
        try:
            with JobStateStore.open(submit_dir) as store:
                run = store.run()
                known += 1
                if user and user not in (run.info.operator, run_owner(submit_dir)):
                    continue
                state, note = run_state(run)
                if not _within(submit_dir, run, state, hist or 0, now):
                    continue
                reports.append(_base_report(submit_dir, run, state, _label_counts(store)))
                if note:
                    notes.append(f"{submit_dir}: {note}")
        except UNREADABLE:
            continue
    if not reports and not notes:
        who = f" of user {user}" if user else ""
        days = f"in the last {hist:g} day(s)" if hist else "still running"
        notes.append(
            f"No gen3_workflow runs{who} {days} among the {known} listed in {index_path()}; "
            "--hist DAYS includes runs that ended, --id SUBMIT_DIR reports on any one run."
        )
    return reports, "\n".join(notes)


def _within(submit_dir: str, run: RunRecord, state: WmsStates, hist: float, now: float) -> bool:
    if state == WmsStates.RUNNING:
        return True
    # Runs that never started, or were interrupted, have no end time: their
    # last write stands for it.
    ended = run.end_time or last_write(submit_dir)
    return hist > 0 and now - ended <= hist * _DAY


def detailed_report(wms_id: str) -> tuple[list[WmsRunReport], str]:
    """The full report of one run, as ``bps report --id`` shows it.

    Parameters
    ----------
    wms_id : `str`
        The submit directory (or its tail as listed in the run index).

    Returns
    -------
    reports : `list` [`lsst.ctrl.bps.WmsRunReport`]
        One report with per-label counts (``job_summary``), the failed and
        running jobs (``jobs``), exit codes per label and a description of
        the failures (``specific_info``); empty if the id names no run.
    message : `str`
        Why there is no report, or empty.
    """
    submit_dir, message = _resolve_one(wms_id)
    if submit_dir is None:
        return [], message
    try:
        with JobStateStore.open(submit_dir) as store:
            run = store.run()
            summary = _label_counts(store)
            failed = store.jobs(states=[JobState.FAILED])
            running = store.jobs(states=[JobState.RUNNING])
            slow_jobs = store.slow_jobs(time.time(), SLOW_FACTOR, SLOW_MIN_SECONDS)
            retried = tried_again_lines(store)
            final_notes = final_job_notes(store, [JobState.FAILED, JobState.DEP_FAIL])
            hosts = last_hosts(store, [job.seq for job in failed[:MAX_LISTED]])
            executors = executor_lines(store.run().info.parsl_config, store.label_executors())
        slow = {job.seq: median for job, median in slow_jobs}
    except UNREADABLE as exc:
        return [], f"Cannot read the job-state store of {submit_dir}: {exc}"
    state, note = run_state(run)
    report = _base_report(submit_dir, run, state, summary)
    report.job_summary = summary
    report.jobs = [
        WmsJobReport(wms_id=str(job.seq), name=job.name, label=job.label, state=JOB_STATES[job.state])
        for job in failed + running
    ]
    exit_codes: dict[str, list[int]] = {label: [] for label in summary}
    for job in failed:
        if job.exit_code:  # a job lost without an exit code has none to show
            exit_codes[job.label].append(job.exit_code)
    report.exit_code_summary = exit_codes
    report.specific_info = _specific_info(
        submit_dir, run, state, note, failed, running, slow, executors + final_notes + retried, hosts
    )
    return [report], ""


def _specific_info(
    submit_dir: str,
    run: RunRecord,
    state: WmsStates,
    note: str,
    failed: list[JobRecord],
    running: list[JobRecord],
    slow: dict[int, float],
    more: list[str],
    hosts: dict[int, str],
) -> WmsSpecificInfo:
    """What ctrl_bps prints between the run's line and its table (``hosts``:
    where the failed jobs' last attempts ran)."""
    info = WmsSpecificInfo()
    parsl = run.info.parsl_config
    recorded = run.state.value
    several = [entry.get("name", "?") for entry in parsl.get("executors") or []]
    info.add_message(
        "Run {run_name}: {run_state}; {executors}",
        run_name=run.name,
        run_state=recorded if not note else f"{recorded} ({note})",
        executors=f"executors {', '.join(several)}"
        if several
        else f"executor {parsl.get('executor', '?')}, provider {parsl.get('provider', '?')}",
    )
    if run.start_time:
        end = run.end_time
        elapsed = (end or time.time()) - run.start_time
        info.add_message(
            "Submitted by pid {pid} on {host}; started {started}, {ended}",
            pid=run.pid,
            host=run.host,
            started=format_clock(run.start_time),
            ended=f"ended {format_clock(end)} ({format_duration(elapsed)})"
            if end
            else f"{format_duration(elapsed)} ago",
        )
    now = time.time()
    # Launched jobs only wait in the executor's queue: the table counts them.
    for kind, jobs in (("failed", failed), ("running", running)):
        if jobs:
            info.add_message(f"{{{kind}_count}} job(s) {kind}:", {f"{kind}_count": len(jobs)})
        for i, job in enumerate(jobs[:MAX_LISTED], 1):
            if kind == "failed":
                words = (job.label, job.data_id, job.exit_code, job.message, job.stderr)
                line = format_failed_job(*words, host=hosts.get(job.seq))
            elif job.seq in slow:
                line = format_slow_job(job, slow[job.seq], now)
            else:
                running_for = format_duration(now - (job.t_running or now))
                line = f"RUNNING {job.label} {job.data_id} for {running_for}; log: {job.stderr}"
            # Context keys are shared by all messages: number them per job.
            info.add_message(f"  {{{kind}{i}}}", {f"{kind}{i}": line})
        if len(jobs) > MAX_LISTED:
            info.add_message(f"  ... and {{{kind}_more}} more", {f"{kind}_more": len(jobs) - MAX_LISTED})
    # The final job's fate, then the jobs tried more than once.
    for i, line in enumerate(more, 1):
        info.add_message(f"{{more{i}}}", {f"more{i}": line})
    info.add_message(
        "Job logs: {logs}; parsl log: {parsl_log}",
        logs=os.path.join(submit_dir, "logs"),
        parsl_log=os.path.join(submit_dir, "parsl.log"),
    )
    if state in (WmsStates.FAILED, WmsStates.DELETED) and not note:  # an interruption note says it
        info.add_message(
            "Run what did not succeed again with: bps restart --id {restart_id}", restart_id=submit_dir
        )
    return info


def quick_status(wms_id: str) -> tuple[WmsStates, str]:
    """``bps status``: the run's state from its run row alone.

    Parameters
    ----------
    wms_id : `str`
        The submit directory (or its tail as listed in the run index).

    Returns
    -------
    state : `lsst.ctrl.bps.WmsStates`
        The run's state; UNKNOWN if the id names no readable run.
    message : `str`
        Why, when the state is UNKNOWN or not the recorded one.
    """
    submit_dir, message = _resolve_one(wms_id)
    if submit_dir is None:
        return WmsStates.UNKNOWN, message
    try:
        with JobStateStore.open(submit_dir) as store:
            run = store.run()
    except UNREADABLE as exc:
        return WmsStates.UNKNOWN, f"Cannot read the job-state store of {submit_dir}: {exc}"
    state, note = run_state(run)
    return state, f"{submit_dir}: {note}" if note else ""


def active_runs(wms_id: str | None = None, user: str | None = None) -> list[str]:
    """Runs ``bps cancel`` may act on.

    Parameters
    ----------
    wms_id : `str`, optional
        One run (any state: cancel itself explains why a finished run cannot
        be cancelled); an ambiguous id gives none.
    user : `str`, optional
        Otherwise, the running runs of this user (all indexed runs if
        `None`).

    Returns
    -------
    submit_dirs : `list` [`str`]
        Submit directories.
    """
    if wms_id:
        submit_dir, _ = _resolve_one(wms_id)
        return [] if submit_dir is None else [submit_dir]
    result = []
    for submit_dir in submitted_runs(user):
        try:
            with JobStateStore.open(submit_dir) as store:
                run = store.run()
        except UNREADABLE:
            continue
        if user and user not in (run.info.operator, run_owner(submit_dir)):
            continue
        if run_state(run)[0] == WmsStates.RUNNING:
            result.append(submit_dir)
    return result


def _resolve_one(wms_id: str) -> tuple[str | None, str]:
    submit_dirs, message = resolve_run(wms_id)
    if len(submit_dirs) == 1:
        return submit_dirs[0], ""
    if submit_dirs:  # never guess which run a report, or a cancel, is for
        message = f"'{wms_id}' matches several runs; use one of: {', '.join(submit_dirs)}"
    return None, message
