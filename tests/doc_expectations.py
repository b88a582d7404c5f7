"""What each line of a shell block must do (exit status, words, files), and
running a shell block against it."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import DRP_LABELS
from doc_blocks import Block
from doc_session import (
    LINE_TIMEOUT,
    PNG_MAGIC,
    SUBMIT_LINE,
    BlockResult,
    LineResult,
    Session,
    run_line,
    shell_lines,
    substitute,
)
from lsst.ctrl.bps import WmsStates

from desc.gen3_workflow.constants import SERVICE_CLASS
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.records import JobKind, RunState

# --- what each line must do -------------------------------------------------------

Check = Callable[[LineResult, Session], None]


@dataclasses.dataclass
class Expect:
    """What a line matching ``pattern`` (as the document has it) must do."""

    pattern: str
    returncode: Callable[[Session], int] = lambda _s: 0
    words: tuple[str, ...] = ()
    """Must all be in its output (``{submit_dir}`` and ``{user}`` are filled in)."""
    check: Check | None = None


def _run_state(session: Session) -> RunState:
    assert session.submit_dir
    with JobStateStore.open(session.submit_dir) as store:
        return store.run().state


def _check_activate(result: LineResult, session: Session) -> None:
    bps = shutil.which("bps", path=result.env.get("PATH", ""))
    assert bps and Path(bps).resolve() == (Path(sys.prefix) / "bin" / "bps").resolve(), bps


def _check_export_service(result: LineResult, session: Session) -> None:
    assert result.env.get("BPS_WMS_SERVICE_CLASS") == SERVICE_CLASS


def _check_export_repo(result: LineResult, session: Session) -> None:
    repo = Path(result.env.get("GEN3WF_DEMO_REPO", ""))
    assert repo.resolve() == session.repo.resolve() and (repo / "butler.yaml").exists(), repo


def _check_submit(result: LineResult, session: Session) -> None:
    if result.note:  # a later block's `bps submit FILE`: the module's run
        submit = SUBMIT_LINE.match(result.command)
        assert submit, result.command
        path = Path(result.cwd, submit.group(1))
        config = yaml.safe_load(path.read_text())
        assert config["wmsServiceClass"] == SERVICE_CLASS, path
    # The module's run (for every submit line): the submit directory,
    # submit/u/{operator}/{payloadName}/{timestamp} under the current
    # directory, printed first; bps blocked until the run ended, every job
    # succeeded, exit 0 (checked by the caller); what the run leaves there.
    first = session.submit_output.splitlines()[0]
    assert first == f"Submit dir: {session.submit_dir}", first
    assert re.fullmatch(
        rf"{re.escape(str(session.work))}/submit/u/{session.user}/demo_laptop/\d{{8}}T\d{{6}}Z",
        str(session.submit_dir),
    ), session.submit_dir
    assert _run_state(session) == RunState.SUCCEEDED
    assert "All jobs succeeded" in session.submit_output
    submit_dir = Path(str(session.submit_dir))
    for label in DRP_LABELS:
        assert list((submit_dir / "logs" / label).glob("*.stderr")), label
    assert (submit_dir / "gen3_workflow.sqlite3").exists() and (submit_dir / "parsl.log").exists()


def _check_bare_report(result: LineResult, session: Session) -> None:
    # "your running runs": ctrl_bps's table, without the module's run, which
    # has ended.
    assert "STATE" in result.output, result.output
    assert session.submit_dir and session.submit_dir not in result.output, result.output


def _check_cancel(result: LineResult, session: Session) -> None:
    # The run had ended: nothing to stop, and it still reads as succeeded.
    assert _run_state(session) == RunState.SUCCEEDED


def _check_restart(result: LineResult, session: Session) -> None:
    # "run again only what did not succeed": every quantum had succeeded, so
    # none ran again.
    assert f"Run Id: {session.submit_dir}" in result.output, result.output
    assert session.submit_dir
    with JobStateStore.open(session.submit_dir) as store:
        assert store.run().state == RunState.SUCCEEDED
        attempts = {job.name: job.attempts for job in store.jobs(kind=JobKind.QUANTUM)}
    assert len(attempts) == 15 and set(attempts.values()) == {1}, attempts


def _redirected(result: LineResult) -> Path:
    match = re.search(r">\s*(\S+)\s*$", result.command.split("#")[0])
    assert match, result.command
    return Path(result.cwd, match.group(1))


def _check_watch_to_file(result: LineResult, session: Session) -> None:
    text = _redirected(result).read_text()
    assert "Run ended: succeeded" in text and "isr" in text, text


def _check_summary_json(result: LineResult, session: Session) -> None:
    summary = json.loads(_redirected(result).read_text())
    assert summary["run"]["state"] == "succeeded"
    assert set(DRP_LABELS) <= set(summary["labels"]) and summary["failures"] == []
    assert {"wall_time_total", "cpu_time_total", "peak_memory_mb"} <= set(summary["labels"]["isr"])


def _check_default_plot(result: LineResult, session: Session) -> None:
    assert session.submit_dir
    assert (Path(session.submit_dir) / "jobs_history.png").read_bytes()[:8] == PNG_MAGIC


def _check_plot_to_file(result: LineResult, session: Session) -> None:
    path = Path(result.cwd, shlex.split(result.command, comments=True)[-1])
    assert path.read_bytes()[:8] == PNG_MAGIC, path


def _check_cd(result: LineResult, session: Session) -> None:
    assert Path(result.cwd) == session.scratch, result.cwd


def _check_user_area(result: LineResult, session: Session) -> None:
    # The link is made, and the module's run wrote its outputs behind it.
    link = session.repo / "u" / session.user
    assert link.is_symlink() and link.resolve() == (session.scratch / session.user).resolve()
    written = list((session.scratch / session.user).glob("demo_laptop/*/postISRCCD/**/*.*"))
    assert len(written) == 4, list((session.scratch / session.user).rglob("*"))[:20]


def _check_collections(result: LineResult, session: Session) -> None:
    assert session.submit_dir
    with JobStateStore.open(session.submit_dir) as store:
        output_run = store.run().info.output_run
    assert re.search(rf"^{re.escape(str(output_run))}\s+RUN", result.output, re.MULTILINE), result.output


def _wms_succeeded(session: Session) -> int:
    assert WmsStates.SUCCEEDED.value == 0, "the docs say bps status exits 0 for a succeeded run"
    return WmsStates.SUCCEEDED.value


EXPECTATIONS: list[Expect] = [
    Expect(r"^source \S*activate", check=_check_activate),
    Expect(r"^export BPS_WMS_SERVICE_CLASS=", check=_check_export_service),
    Expect(r"^export GEN3WF_DEMO_REPO=", check=_check_export_repo),
    Expect(r"^bps (--no-log-tty )?submit ", check=_check_submit),
    Expect(r"^bps report --id ", words=("SUCCEEDED", "{submit_dir}", *DRP_LABELS, "finalJob")),
    Expect(r"^bps report\s*(#|$)", check=_check_bare_report),
    # "exit code = the run's WmsStates value (0: succeeded)"
    Expect(r"^bps status --id ", returncode=_wms_succeeded, words=("status: SUCCEEDED",)),
    Expect(r"^bps cancel --id ", words=("not running", "nothing changed"), check=_check_cancel),
    Expect(r"^bps restart --id ", words=("All jobs succeeded",), check=_check_restart),
    Expect(r"^bps ping ", words=("ThreadPool", "Ping successful")),
    Expect(r"^gen3wf-watch --once ", words=("Progress", *DRP_LABELS)),
    Expect(r"^gen3wf-watch .*>", check=_check_watch_to_file),
    Expect(r"^gen3wf-watch ", words=("Run ended: succeeded",)),
    Expect(r"^workflow_summary --json .*>", check=_check_summary_json),
    Expect(
        r"^workflow_summary ", words=("state: succeeded", *DRP_LABELS, "Slowest jobs", "Failed jobs: none")
    ),
    Expect(r"^plot_jobs_history .* -o ", words=("Wrote",), check=_check_plot_to_file),
    Expect(r"^plot_jobs_history ", words=("Wrote",), check=_check_default_plot),
    Expect(r"^cd ", check=_check_cd),
    Expect(r"^ln -s ", check=_check_user_area),
    Expect(r"^butler query-collections ", words=("DemoCam/defaults", "CHAINED"), check=_check_collections),
]


def expectation(line: str) -> Expect:
    for expect in EXPECTATIONS:
        if re.search(expect.pattern, line):
            return expect
    return Expect("")


def run_shell_block(
    block: Block, session: Session, env: dict[str, str], state: Path
) -> tuple[BlockResult, dict[str, str]]:
    """Run a shell block line by line from ``env``; return what each line
    did and the environment the block leaves."""
    result = BlockResult()
    cwd = str(session.work)
    for line in shell_lines(block):
        try:
            command = substitute(line, session.placeholders())
        except AssertionError as error:
            result.error = str(error)
            break
        submit = SUBMIT_LINE.match(command)
        if submit and session.submit_dir is not None:
            ran = LineResult(line, command, 0, "", cwd=cwd, env=env, note="the module's one bps submit")
        else:
            ran = run_line(command, cwd, env, state, LINE_TIMEOUT * (3 if submit else 1))
            ran.line = line
            if submit:
                printed = re.search(r"^Submit dir: (.+)$", ran.output, re.MULTILINE)
                session.submit_dir = printed.group(1).strip() if printed else None
                session.submit_output = ran.output
        result.lines.append(ran)
        cwd, env = ran.cwd, ran.env
        if ran.returncode != expectation(line).returncode(session):
            break
    return result, env
