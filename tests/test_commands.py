"""Job commands built from GenericWorkflowJobs: placeholders, quoting, and
the command as data (argument vector, environment) read back from the store."""

import subprocess

import pytest
from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowExec, GenericWorkflowFile, GenericWorkflowJob

from desc.gen3_workflow.errors import CommandError
from desc.gen3_workflow.plan.commands import JobCommandBuilder
from desc.gen3_workflow.store.records import JobCommand, render_word


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
    command = JobCommandBuilder(_workflow_with(job)).command(job)
    environ = {"CTRL_MPEXEC_DIR": "/opt/mpexec", "PATH": "/usr/bin:/bin"}
    argv = _argv(command.shell(), env=environ)
    # Without a shell, the same words.
    assert command.expanded(environ) == ({}, argv)
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
    command = JobCommandBuilder(_workflow_with(job)).command(job)
    argv = _argv(command.shell(), env={"CTRL_MPEXEC_DIR": "/x"})
    assert not marker.exists()
    assert f"u/me/{value}/ts" in "\n".join(argv)
    # The value is one word of the stored command, as it is of the shell's.
    assert f"u/me/{value}/ts" in command.argv
    assert "\n".join(argv) == "\n".join(command.expanded({"CTRL_MPEXEC_DIR": "/x"})[1])


def test_command_prepend_and_environment():
    job = _job("run-qbb {butlerConfig}", butlerConfig="/repo")
    job.environment = {"OMP_NUM_THREADS": "1"}
    builder = JobCommandBuilder(_workflow_with(job), command_prepend=lambda label: "time -p")
    command = builder.command(job)
    assert command.shell().startswith("export OMP_NUM_THREADS=1; time -p ")
    assert command.env == (("OMP_NUM_THREADS", "1"),) and command.argv[:2] == ("time", "-p")


def test_missing_placeholder_is_an_error():
    job = _job("run-qbb {butlerConfig}")
    with pytest.raises(CommandError, match="butlerConfig"):
        JobCommandBuilder(_workflow_with(job)).command(job)


def test_bad_env_name_is_refused():
    with pytest.raises(CommandError):
        render_word("<ENV:X; rm -rf />")
    job = _job("run-qbb <ENV:X;Y> {butlerConfig}", butlerConfig="/repo")
    with pytest.raises(CommandError, match="invalid environment variable name"):
        JobCommandBuilder(_workflow_with(job)).command(job)
    job = _job("run-qbb {butlerConfig}", butlerConfig="/repo")
    job.environment = {"A B": "1"}
    with pytest.raises(CommandError, match="invalid environment variable name"):
        JobCommandBuilder(_workflow_with(job)).command(job)


def test_stored_form_round_trips():
    argv = ("pipetask", "run-qbb", "a b", "<ENV:HOME>/x", "it's")
    command = JobCommand(argv, (("A", "1 2"), ("B", "<ENV:A>")))
    assert JobCommand.from_json(command.to_json()) == command
    exports, argv = command.expanded({"HOME": "/home/me"})
    assert exports == {"A": "1 2", "B": "1 2"}  # a variable sees the ones set before it
    assert argv == ["pipetask", "run-qbb", "a b", "/home/me/x", "it's"]
    # The shell gives the same words.
    script = command.shell().replace("pipetask", "printf '%s\\n'", 1)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env={"HOME": "/home/me"})
    assert out.stdout.splitlines() == argv[1:]
