"""What differs between the Pythons and ctrl_bps releases the plug-in runs on:
Work Queue bindings that an interpreter may lack, ctrl_bps's batch
submission, and CPython gh-128131 (zipfile) with its contained workaround."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from lsst.ctrl.bps import BpsConfig, GenericWorkflow, GenericWorkflowJob
from lsst.ctrl.bps.generic_workflow import GenericWorkflowGroup

from desc.gen3_workflow.errors import SubmissionCheckError
from desc.gen3_workflow.execution.bridge.availability import check_executor, work_queue_missing
from desc.gen3_workflow.host import zipfix
from desc.gen3_workflow.host.environment import prepare_environment
from desc.gen3_workflow.settings.parsl_section import ParslSettings
from desc.gen3_workflow.settings.submission_checks import check_batch_submission, check_workflow_nodes

AFFECTED_VERSIONS = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 9) or (
    (3, 13, 0) <= sys.version_info[:3] < (3, 13, 2)
)
"""CPython's own account of gh-128131: which releases have the defect."""


def _no_work_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes an import raise ImportError.
    for name in ("ndcctools", "ndcctools.work_queue", "work_queue"):
        monkeypatch.setitem(sys.modules, name, None)


def test_work_queue_without_bindings_is_refused_up_front(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_work_queue(monkeypatch)
    reason = work_queue_missing()
    assert reason is not None and reason.startswith("no Work Queue Python bindings for this interpreter")
    with pytest.raises(SubmissionCheckError) as caught:
        check_executor(ParslSettings.from_mapping({"executor": "WorkQueue"}))
    message = str(caught.value)
    assert "\n" not in message and caught.value.exit_status == 2
    assert message.startswith(
        "parsl_config.executor: WorkQueue cannot run here: no Work Queue Python bindings"
    )
    assert message.endswith("use executor ThreadPool or HighThroughput instead")
    for executor in ("ThreadPool", "HighThroughput"):
        check_executor(ParslSettings.from_mapping({"executor": executor}))


def test_debian_bindings_without_the_shim_name_the_shim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ndcctools", None)
    monkeypatch.setitem(sys.modules, "ndcctools.work_queue", None)
    monkeypatch.setitem(sys.modules, "work_queue", type(sys)("work_queue"))
    reason = work_queue_missing()
    assert reason is not None and "python -m desc.gen3_workflow.cli.ndcctools_shim" in reason


def test_ping_says_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    from desc.gen3_workflow.execution.bridge import ping

    _no_work_queue(monkeypatch)
    status, message = ping.service_ping({}, "executor=WorkQueue")
    assert status == 1
    assert "FAIL Work Queue: parsl_config.executor: WorkQueue cannot run here: no Work Queue" in message
    status, message = ping.service_ping({}, "executor=ThreadPool")
    assert status == 0 and "warn Work Queue: no Work Queue Python bindings" in message


def test_batch_submission_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SubmissionCheckError, match=r"^bpsBatchSubmission: true is not supported"):
        check_batch_submission(BpsConfig({"bpsBatchSubmission": True}))
    check_batch_submission(BpsConfig({"bpsBatchSubmission": False}))
    check_batch_submission(BpsConfig({}))


def test_nodes_other_than_payload_jobs_are_refused_by_name() -> None:
    workflow = GenericWorkflow("wf")
    workflow.add_job(GenericWorkflowJob("isr_1", label="isr"))
    check_workflow_nodes(workflow)
    workflow.add_job(GenericWorkflowGroup("group_1", "group"))
    with pytest.raises(SubmissionCheckError, match=r"workflow node group_1 of type GROUP;"):
        check_workflow_nodes(workflow)
    try:  # ctrl_bps 30.2026.4300 and newer (bpsBatchSubmission)
        from lsst.ctrl.bps.generic_workflow import GenericWorkflowLazyGroup
    except ImportError:
        return
    lazy = GenericWorkflow("wf2")
    lazy.add_job(GenericWorkflowLazyGroup("preparePayloadWorkflow", label="prepare"))
    with pytest.raises(SubmissionCheckError, match=r"of type LAZY_GROUP \(bpsBatchSubmission: true"):
        check_workflow_nodes(lazy)


# --- CPython gh-128131 -----------------------------------------------------

MEMBER = bytes(range(256)) * 200  # 51200 bytes, stored


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.bin", MEMBER)
        archive.writestr("b.bin", b"B" * 20000)
    return buffer.getvalue()


def _read_after_another_handle(data: bytes, second_handle: bool) -> bytes:
    """What ``read`` gives after reading some of a.bin, letting another
    handle (or ZipFile.read) read b.bin, then seeking a.bin forward."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive, archive.open("a.bin") as member:
        member.read(10)
        if second_handle:
            with archive.open("b.bin") as other:
                other.read()
        else:
            archive.read("b.bin")
        member.seek(40000)
        return member.read(1000)


REPRO = textwrap.dedent(
    """
    import io, sys, zipfile
    from desc.gen3_workflow.host import zipfix
    member = bytes(range(256)) * 200
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("a.bin", member)
        archive.writestr("b.bin", b"B" * 20000)

    def sound():
        try:
            with zipfile.ZipFile(buffer) as archive, archive.open("a.bin") as a:
                a.read(10)
                archive.read("b.bin")
                a.seek(40000)
                return a.read(1000) == member[40000:41000]
        except EOFError:
            return False

    site = getattr(sys.modules.get("sitecustomize"), "__file__", None)
    print("at-start", sound(), zipfix.fix_applied(), site)
    print("patched", zipfix.apply_fix(), sound(), zipfix.fix_applied())
    """
)


def _python(code: str, pythonpath: str | None) -> list[list[str]]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return [line.split(" ", 1) for line in proc.stdout.splitlines()]


def test_detection_agrees_with_the_affected_versions() -> None:
    # Feature detection (a probe on an in-memory zip), checked against
    # CPython's list; this process may already carry the fix.
    assert zipfix.interpreter_affected() == AFFECTED_VERSIONS
    [[_, at_start], [_, patched]] = _python(REPRO, None)
    # A fresh interpreter, without the fix on PYTHONPATH: the defect is
    # there exactly on the affected versions, and apply_fix cures it.
    assert at_start.split()[:2] == [str(not AFFECTED_VERSIONS), "False"]
    assert patched == f"{AFFECTED_VERSIONS} True {AFFECTED_VERSIONS}"


@pytest.mark.parametrize("second_handle", [True, False])
def test_the_patch_on_an_in_memory_zip(second_handle: bool) -> None:
    data = _archive()
    if not AFFECTED_VERSIONS:
        # Sound interpreter: the read is right, and the fix is never applied.
        assert _read_after_another_handle(data, second_handle) == MEMBER[40000:41000]
        assert zipfix.apply_fix() is False and not zipfix.fix_applied()
        assert not zipfix.zipfile_has_defect() and zipfix.defect_warning() is None
        return
    original = zipfile._SharedFile.seek
    try:
        if not zipfix.fix_applied():
            with pytest.raises(EOFError):
                _read_after_another_handle(data, second_handle)
        assert zipfix.apply_fix() is True and zipfix.fix_applied()
        assert _read_after_another_handle(data, second_handle) == MEMBER[40000:41000]
        warning = zipfix.defect_warning()
        assert warning is not None and "\n" not in warning
        assert "gh-128131" in warning and "3.12.9 and 3.13.2" in warning
    finally:
        if not getattr(original, "_gen3wf_gh128131_fix", False):
            zipfile._SharedFile.seek = original  # type: ignore[method-assign]


def test_jobs_get_the_fix_only_on_affected_interpreters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", "/somewhere/else")
    prepare_environment()
    parts = os.environ["PYTHONPATH"].split(os.pathsep)
    if AFFECTED_VERSIONS:
        assert parts == [zipfix.SITE_DIR, "/somewhere/else"]
        prepare_environment()  # once only
        assert os.environ["PYTHONPATH"].split(os.pathsep) == parts
    else:
        assert parts == ["/somewhere/else"]
    # A fresh interpreter started with the directory on PYTHONPATH (what
    # every job gets): its zipfile is right from the start on any version.
    [[_, at_start], _] = _python(REPRO, zipfix.SITE_DIR)
    sound, applied, sitecustomize = at_start.split(" ", 2)
    assert sound == "True" and applied == str(AFFECTED_VERSIONS)
    assert sitecustomize == os.path.join(zipfix.SITE_DIR, "sitecustomize.py")


def test_a_shadowed_sitecustomize_still_runs(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("import builtins\nbuiltins.USER_SITECUSTOMIZE_RAN = True\n")
    code = "import builtins; print('ran', getattr(builtins, 'USER_SITECUSTOMIZE_RAN', False))"
    assert _python(code, os.pathsep.join([zipfix.SITE_DIR, str(tmp_path)])) == [["ran", "True"]]
