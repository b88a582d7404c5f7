"""Command lines built from GenericWorkflowJobs: placeholders and quoting."""

import subprocess

import pytest
from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowExec, GenericWorkflowFile, GenericWorkflowJob

from desc.gen3_workflow.job_command import CommandError, JobCommandBuilder, render_word


def _workflow_with(job: GenericWorkflowJob) -> GenericWorkflow:
    workflow = GenericWorkflow("test")
    workflow.add_job(job)
    workflow.add_job_inputs(
        job.name, GenericWorkflowFile("runQgraphFile", "/sub/dir/run.qg", wms_transfer=True)
    )
    return workflow


def _job(arguments: str, **cmdvals: str) -> GenericWorkflowJob:
    job = GenericWorkflowJob("job1", "isr")
    job.executable = GenericWorkflowExec("pipetask", "<ENV:CTRL_MPEXEC_DIR>/bin/pipetask")
    job.arguments = arguments
    job.cmdvals = dict(cmdvals)
    return job


def _argv(command: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash passes to the program: run the line with printf in front."""
    script = f'printarg() {{ for a in "$@"; do printf \'%s\\n\' "$a"; done; }}; printarg {command}'
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
    return out.stdout.splitlines()


def test_placeholders_files_and_env():
    job = _job(
        "{runPreCmdOpts} run-qbb {butlerConfig} <FILE:runQgraphFile> --qgraph-node-id {qgraphNodeId}",
        runPreCmdOpts="--long-log --log-level=VERBOSE",
        butlerConfig="/repo",
        qgraphNodeId="abc-123",
    )
    command = JobCommandBuilder(_workflow_with(job)).command_line(job)
    argv = _argv(command, env={"CTRL_MPEXEC_DIR": "/opt/mpexec", "PATH": "/usr/bin:/bin"})
    assert argv == [
        "/opt/mpexec/bin/pipetask",
        "--long-log",
        "--log-level=VERBOSE",
        "run-qbb",
        "/repo",
        "/sub/dir/run.qg",
        "--qgraph-node-id",
        "abc-123",
    ]


@pytest.mark.parametrize("evil", ["; touch {p}", "`touch {p}`", "$(touch {p})", "a' ; touch {p}; '", "x\ny"])
def test_config_values_never_run_in_the_shell(tmp_path, evil):
    marker = tmp_path / "pwned"
    value = evil.format(p=marker)
    job = _job(
        "run-qbb -o {outputRun} {extraRunQuantumOptions}",
        outputRun=f"u/me/{value}/ts",
        extraRunQuantumOptions=f"--opt {value}",
    )
    argv = _argv(JobCommandBuilder(_workflow_with(job)).command_line(job), env={"CTRL_MPEXEC_DIR": "/x"})
    assert not marker.exists()
    assert f"u/me/{value}/ts" in "\n".join(argv)


def test_command_prepend_and_environment():
    job = _job("run-qbb {butlerConfig}", butlerConfig="/repo")
    job.environment = {"OMP_NUM_THREADS": "1"}
    builder = JobCommandBuilder(_workflow_with(job), command_prepend=lambda label: "time -p")
    command = builder.command_line(job)
    assert command.startswith("export OMP_NUM_THREADS=1; time -p ")


def test_missing_placeholder_is_an_error():
    job = _job("run-qbb {butlerConfig}")
    with pytest.raises(CommandError, match="butlerConfig"):
        JobCommandBuilder(_workflow_with(job)).command_line(job)


def test_bad_env_name_is_refused():
    with pytest.raises(CommandError):
        render_word("<ENV:X; rm -rf />")
