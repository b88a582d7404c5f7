"""What ``bps report``, ``bps status`` and ``bps cancel --user`` read: runs as
ctrl_bps's `WmsRunReport`, built from each run's job-state store alone.

Nothing here needs the submitting process or parsl monitoring, so reports
work while a run goes, after it ended and after its process was killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any

from lsst.ctrl.bps import WmsJobReport, WmsRunReport, WmsSpecificInfo, WmsStates

from .run_registry import submitted_runs
from .state_store import STORE_FILENAME, JobRecord, JobState, JobStateStore, RunState

__all__ = ["JOB_STATES", "RUN_STATES", "list_runs", "report_runs", "run_state"]

JOB_STATES = {
    JobState.PENDING: WmsStates.UNREADY,
    JobState.LAUNCHED: WmsStates.PENDING,
    JobState.RUNNING: WmsStates.RUNNING,
    JobState.EXEC_DONE: WmsStates.SUCCEEDED,
    JobState.FAILED: WmsStates.FAILED,
    JobState.DEP_FAIL: WmsStates.PRUNED,
}
RUN_STATES = {
    RunState.PREPARED: WmsStates.UNREADY,
    RunState.RUNNING: WmsStates.RUNNING,
    RunState.SUCCEEDED: WmsStates.SUCCEEDED,
    RunState.FAILED: WmsStates.FAILED,
    RunState.CANCELLED: WmsStates.DELETED,
}


def _open(submit_dir: str) -> contextlib.closing[JobStateStore]:
    return contextlib.closing(JobStateStore.in_dir(submit_dir))


def run_state(run: dict[str, Any]) -> tuple[WmsStates, str]:
    """The run's state for ctrl_bps, and a note when it needs one.

    A run marked running whose submitting process, on this host, no longer
    exists was interrupted (kill -9, node crash): it is reported FAILED.
    """
    state = RUN_STATES[run["state"]]
    if run["state"] != RunState.RUNNING:
        return state, ""
    if run["host"] != os.uname().nodename:
        return state, f"running on host {run['host']} (pid {run['pid']})"
    try:
        os.kill(run["pid"], 0)
    except ProcessLookupError:
        return WmsStates.FAILED, f"interrupted: submitting process {run['pid']} is gone; use bps restart"
    except PermissionError:
        pass  # alive, someone else's
    return state, ""


def _all_states(counts: dict[JobState, int]) -> dict[WmsStates, int]:
    result = dict.fromkeys(WmsStates, 0)
    for state, count in counts.items():
        result[JOB_STATES[state]] += count
    return result


def _data_id(job: JobRecord) -> str:
    return ", ".join(f"{k}={v}" for k, v in json.loads(job.data_id).items()) or "-"


def report_run(submit_dir: str, detailed: bool, return_exit_codes: bool = False) -> WmsRunReport:
    """One run as a `WmsRunReport`.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    detailed : `bool`
        Add per-label counts and the failed jobs.
    return_exit_codes : `bool`
        Fill the exit-code summary.
    """
    with _open(submit_dir) as store:
        run = store.run_info()
        counts = {**store.counts("init"), **store.counts("quantum"), **store.counts("final")}
        failed = store.jobs(states=[JobState.FAILED]) if detailed else []
    info = run["info"]
    state, note = run_state(run)
    totals: dict[JobState, int] = dict.fromkeys(JobState, 0)
    for by_state in counts.values():
        for job_state, count in by_state.items():
            totals[job_state] += count
    report = WmsRunReport(
        wms_id=submit_dir,
        path=submit_dir,
        label=run["name"],
        # ctrl_bps tabulates these as text: a missing value must be "".
        run=str(info.get("outputRun") or ""),
        project=str(info.get("project") or ""),
        campaign=str(info.get("campaign") or ""),
        payload=str(info.get("payloadName") or ""),
        operator=str(info.get("operator") or ""),
        run_summary=";".join(f"{label}:{sum(by_state.values())}" for label, by_state in counts.items()),
        state=state,
        total_number_jobs=sum(totals.values()),
        job_state_counts=_all_states(totals),
    )
    if detailed:
        report.job_summary = {label: _all_states(by_state) for label, by_state in counts.items()}
        report.jobs = [WmsJobReport(job.name, job.name, job.label, WmsStates.FAILED) for job in failed]
        info_lines = WmsSpecificInfo()
        if note:
            info_lines.add_message("Run: {run_note}", run_note=note)
        for i, job in enumerate(failed):
            info_lines.add_message(
                f"Failed: {{label{i}}} {{data_id{i}}} exit code {{code{i}}}; log: {{log{i}}}",
                **{
                    f"label{i}": job.label,
                    f"data_id{i}": _data_id(job),
                    f"code{i}": job.exit_code,
                    f"log{i}": job.stderr,
                },
            )
        report.specific_info = info_lines
    if return_exit_codes:
        report.exit_code_summary = {
            label: [job.exit_code for job in failed if job.label == label and job.exit_code]
            for label in counts
        }
    return report


def _ended_within(run: dict[str, Any], days: float) -> bool:
    if days <= 0 or run["end_time"] is None:
        return True
    return time.time() - run["end_time"] <= days * 86400


def report_runs(
    wms_workflow_id: str | None, user: str | None, hist: float, return_exit_codes: bool
) -> tuple[list[WmsRunReport], str]:
    """What ``bps report`` shows: one run in detail, or this user's runs."""
    if wms_workflow_id:
        submit_dir = os.path.abspath(wms_workflow_id)
        if not os.path.exists(os.path.join(submit_dir, STORE_FILENAME)):
            return [], f"No gen3_workflow run in {submit_dir}"
        return [report_run(submit_dir, detailed=True, return_exit_codes=return_exit_codes)], ""
    reports = []
    for submit_dir in reversed(submitted_runs()):  # newest first
        try:
            with _open(submit_dir) as store:
                run = store.run_info()
        except (FileNotFoundError, RuntimeError):
            continue
        if user and run["info"].get("operator") != user:
            continue
        if run_state(run)[0] == WmsStates.RUNNING or _ended_within(run, hist):
            reports.append(report_run(submit_dir, detailed=False))
    return reports, ""


def list_runs(wms_id: str | None, user: str | None) -> list[str]:
    """Runs ``bps cancel`` may act on: the one named, or the user's running ones."""
    if wms_id:
        submit_dir = os.path.abspath(wms_id)
        return [submit_dir] if os.path.exists(os.path.join(submit_dir, STORE_FILENAME)) else []
    found = []
    for submit_dir in submitted_runs():
        with _open(submit_dir) as store:
            run = store.run_info()
        if (user is None or run["info"].get("operator") == user) and run_state(run)[0] == WmsStates.RUNNING:
            found.append(submit_dir)
    return found
