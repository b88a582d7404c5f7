"""ctrl_bps_parsl's ``computeSite`` / ``site:`` sections, translated to
``parsl_config`` (settings/ctrl_bps_parsl_sites.py and _reading.py)."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from lsst.ctrl.bps import BpsConfig
from parsl.executors import HighThroughputExecutor

from desc.gen3_workflow.errors import ParslConfigError
from desc.gen3_workflow.execution.bridge.parsl_factory import make_parsl_config
from desc.gen3_workflow.execution.bridge.ping import settings_for_ping
from desc.gen3_workflow.execution.bridge.providers import PpnTorqueProvider, make_provider
from desc.gen3_workflow.settings.ctrl_bps_parsl_reading import site_parsl_config
from desc.gen3_workflow.settings.ctrl_bps_parsl_sites import SITE_CLASSES
from desc.gen3_workflow.settings.parsl_section import ParslSettings

ROOT = Path(__file__).resolve().parents[1]
SITES = "lsst.ctrl.bps.parsl.sites"


def settings_of(tmp_path: Path, site: dict[str, Any], **top: Any) -> ParslSettings:
    """ParslSettings of a bps file with ``computeSite: hpc`` and ``site.hpc``."""
    path = tmp_path / "bps.yaml"
    content = {"computeSite": "hpc", "project": "proj", "campaign": "camp", "site": {"hpc": site}, **top}
    path.write_text(yaml.safe_dump(content))
    return ParslSettings.from_bps_config(BpsConfig(str(path)))


def error_of(tmp_path: Path, site: dict[str, Any], **top: Any) -> str:
    with pytest.raises(ParslConfigError) as info:
        settings_of(tmp_path, site, **top)
    text = str(info.value)
    assert "\n" not in text and info.value.exit_status == 2
    return text


def differences(settings: ParslSettings) -> dict[str, Any]:
    """The keys where ``settings`` differ from our defaults."""
    defaults = ParslSettings().as_dict()
    return {key: value for key, value in settings.as_dict().items() if value != defaults[key]}


# -- Each class, with its defaults and with keys set ---------------------------


@pytest.mark.parametrize("path", [f"{SITES}.Local", f"{SITES}.local.Local"])
def test_local(tmp_path, path):
    settings = settings_of(tmp_path, {"class": path, "cores": 3})
    # Their Local: HighThroughputExecutor("local", LocalProvider(), max_workers_per_node=cores); retries 1.
    assert differences(settings) == {
        "executor": "HighThroughput",
        "max_workers": 3,
        "retries": 1,
    }
    settings = settings_of(
        tmp_path,
        {
            "class": path,
            "cores": 2,
            "retries": 0,
            "monitorEnable": True,
            "checkpoint": True,
            "environment": True,
        },
    )
    assert (settings.retries, settings.monitoring, settings.checkpoint, settings.worker_init) == (
        0,
        True,
        True,
        "",
    )


def test_slurm_defaults_and_keys(tmp_path):
    base = {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": "00:59:00"}
    assert differences(settings_of(tmp_path, base)) == {
        "executor": "HighThroughput",
        "provider": "Slurm",
        "retries": 1,
        "walltime": "00:59:00",
        "exclusive": False,  # theirs: exclusive=False unless set
    }
    settings = settings_of(
        tmp_path,
        {
            **base,
            "class": f"{SITES}.slurm.Slurm",
            "nodes": 3,
            "cores_per_node": 20,
            "mem_per_node": 90,
            "qos": "regular",
            "constraint": "cpu",
            "account": "m1727",
            "exclusive": True,
            "singleton": True,
            "scheduler_options": "#SBATCH --partition=debug",
            "commandPrefix": "export OMP_NUM_THREADS=1",
        },
    )
    assert (settings.nodes_per_block, settings.effective_launcher) == (3, "Srun")
    assert (settings.cores_per_node, settings.mem_per_node, settings.qos) == (20, 90, "regular")
    assert (settings.constraint, settings.account, settings.exclusive) == ("cpu", "m1727", True)
    assert settings.scheduler_options == (
        "#SBATCH --partition=debug\n#SBATCH --job-name=proj.camp\n#SBATCH --dependency=singleton"
    )
    # commandPrefix runs once per block, before the workers start.
    assert settings.worker_init == "export OMP_NUM_THREADS=1"


@pytest.mark.parametrize(
    ("short", "expected"),
    [
        (
            "princeton.Tiger",
            {"nodes_per_block": 4, "cores_per_node": 112, "walltime": "05:00:00", "mem_per_node": 980},
        ),
        (
            "slac.Sdf",
            {
                "nodes_per_block": 1,
                "cores_per_node": 100,
                "walltime": "02:00:00",
                "mem_per_node": 400,
                "qos": "normal",
            },
        ),
    ],
)
def test_queued_singleton_sites(tmp_path, monkeypatch, short, expected):
    monkeypatch.setenv("GEN3WF_TEST_VALUE", "it's $(not run)")
    settings = settings_of(tmp_path, {"class": f"{SITES}.{short}"})
    assert {key: getattr(settings, key) for key in expected} == expected
    assert (settings.init_blocks, settings.min_blocks, settings.max_blocks) == (1, 1, 2)
    assert (settings.launcher, settings.exclusive, settings.retries) == ("Srun", False, 1)
    assert "#SBATCH --dependency=singleton" in settings.scheduler_options
    if short == "slac.Sdf":
        assert settings.scheduler_options.startswith("#SBATCH --partition=rubin\n")
    # Their worker_init replicates the submitting environment: every value quoted.
    assert f"export PATH={shlex.quote(os.environ['PATH'])}" in settings.worker_init
    assert "GEN3WF_TEST_VALUE" not in settings.worker_init  # the plug-in's own are left out
    monkeypatch.setenv("LSST_TEST_VALUE", "it's $(not run)")
    monkeypatch.setenv("PGPASSWORD", "hunter2")  # secrets never go into a job script
    monkeypatch.setenv("MY_ACCESS_TOKEN", "t0k3n")
    settings = settings_of(tmp_path, {"class": f"{SITES}.{short}", "max_blocks": 5, "nodes": 2})
    assert "export LSST_TEST_VALUE='it'\"'\"'s $(not run)'" in settings.worker_init
    assert "hunter2" not in settings.worker_init and "t0k3n" not in settings.worker_init
    assert (settings.max_blocks, settings.nodes_per_block) == (5, 2)


@pytest.mark.parametrize("path", [f"{SITES}.LocalSrunWorkQueue", f"{SITES}.work_queue.LocalSrunWorkQueue"])
def test_local_srun_work_queue(tmp_path, path):
    assert differences(settings_of(tmp_path, {"class": path})) == {"executor": "WorkQueue", "retries": 1}
    settings = settings_of(
        tmp_path,
        {
            "class": path,
            "nodes_per_block": 4,
            "port": 9000,
            "worker_options": "--memory=90000",
            "wq_max_retries": 2,
        },
    )
    assert (settings.nodes_per_block, settings.effective_launcher, settings.port) == (4, "Srun", 9000)
    assert (settings.worker_options, settings.wq_max_retries) == ("--memory=90000", 2)


def test_torque(tmp_path):
    settings = settings_of(
        tmp_path,
        {
            "class": f"{SITES}.Torque",
            "nodes": 2,
            "walltime": "01:30:00",
            "queue": "batch",
            "tasks_per_node": 4,
            "worker_init": "module load mpi",
            "scheduler_options": "#PBS -l mem=64gb",
        },
    )
    assert differences(settings) == {
        "executor": "HighThroughput",
        "provider": "Torque",
        "retries": 1,
        "nodes_per_block": 2,
        "walltime": "01:30:00",
        "queue": "batch",
        "cores_per_node": 4,
        "max_workers": 4,
        "worker_init": "module load mpi",
        "scheduler_options": "#PBS -l mem=64gb",
    }
    assert settings.effective_launcher == "MpiRun"
    minimal = settings_of(tmp_path, {"class": f"{SITES}.torque.Torque", "nodes": 1, "walltime": "00:10:00"})
    assert (minimal.max_workers, minimal.cores_per_node, minimal.effective_launcher) == (1, 1, "Single")


def test_torque_config_and_job_script_without_a_pbs_server(tmp_path, monkeypatch):
    settings = settings_of(
        tmp_path,
        {
            "class": f"{SITES}.Torque",
            "nodes": 2,
            "walltime": "01:30:00",
            "queue": "batch",
            "tasks_per_node": 4,
        },
    )
    run = make_parsl_config(settings, str(tmp_path), "proj.camp")
    executor = run.config.executors[0]
    assert isinstance(executor, HighThroughputExecutor)
    assert isinstance(executor.provider, PpnTorqueProvider)
    assert executor.max_workers_per_node == 4
    provider = make_provider(settings)
    provider.script_dir = str(tmp_path)
    commands: list[str] = []

    def fake_qsub(command: str, walltime: int | None = None) -> tuple[int, str, str]:
        commands.append(command)
        return 0, "42.pbs-server\n", ""

    monkeypatch.setattr(provider, "execute_wait", fake_qsub)
    # As HighThroughputExecutor submits a block: one worker pool per node.
    job_id = provider.submit("process_worker_pool.py --max_workers_per_node=4", 1, "htex.block-0")
    assert job_id == "42.pbs-server"
    [command] = commands
    script_path = command.split()[-1]
    assert re.fullmatch(r"qsub\s+-q batch \S+\.submit", command), command
    script = Path(script_path).read_text()
    assert "#PBS -l nodes=2:ppn=4" in script
    assert "#PBS -l walltime=01:30:00" in script
    assert "WORKERCOUNT=2" in script and "mpirun -np $WORKERCOUNT --map-by ppr:1:node" in script
    assert "process_worker_pool.py --max_workers_per_node=4" in script
    assert "export PATH=" in script  # the plug-in's worker_init: this environment's bin first


@pytest.mark.parametrize(("key", "value"), [("queue", "batch; rm -rf ~"), ("account", "$(id)")])
def test_torque_qsub_words_never_reach_a_shell(tmp_path, key, value):
    site = {"class": f"{SITES}.Torque", "nodes": 1, "walltime": "00:10:00"}
    if key == "queue":
        assert error_of(tmp_path, {**site, key: value}).startswith(
            f"site.hpc.queue (as parsl_config.queue): {value!r} is not a Torque queue name"
        )
    else:
        with pytest.raises(ParslConfigError, match="parsl_config.account: .* is not a Torque account name"):
            ParslSettings.from_mapping({"provider": "Torque", key: value})


# -- Errors: one line each -----------------------------------------------------


def test_misspelt_key(tmp_path):
    message = error_of(
        tmp_path, {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": "01:00:00", "walltme": "x"}
    )
    assert message == (
        "site.hpc.walltme: not supported by desc.gen3_workflow; did you mean 'walltime'? "
        "(supported: class, nodes, cores_per_node, walltime, mem_per_node, qos, constraint, singleton, "
        "exclusive, account, scheduler_options, commandPrefix, environment, retries, monitorEnable, "
        "checkpoint)"
    )


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("monitorFilename", "the monitoring database is always monitoring.db in the submit directory"),
        ("monitorInterval", "parsl's resource monitoring has no interval setting here"),
        ("run_dir", "parsl's run directory is parsl_runinfo in the submit directory"),
        ("cmd_timeout", "the provider's command timeout is parsl's own"),
    ],
)
def test_keys_refused_with_their_reason(tmp_path, key, reason):
    message = error_of(tmp_path, {"class": f"{SITES}.princeton.Tiger", key: "x"})
    assert message.startswith(f"site.hpc.{key}: not supported by desc.gen3_workflow: {reason}")
    assert message.endswith("monitorEnable, checkpoint)")


def test_ctrl_bps_per_site_job_keys_are_left_to_ctrl_bps(tmp_path):
    settings = settings_of(
        tmp_path,
        {
            "class": f"{SITES}.Local",
            "cores": 2,
            "requestMemory": 4096,
            "environment": {"OMP_NUM_THREADS": "1"},
        },
    )
    assert settings.max_workers == 2


def test_required_missing_and_wrong_types(tmp_path):
    assert error_of(tmp_path, {"class": f"{SITES}.Local"}) == (
        f"site.hpc.cores: required by {SITES}.local.Local; missing"
    )
    # YAML reads an unquoted 00:59:00 as a number (sexagesimal): ctrl_bps_parsl refuses it too.
    assert error_of(tmp_path, {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": 3540}) == (
        'site.hpc.walltime: expected a string, got 3540 (quote times in YAML: "05:00:00")'
    )
    assert error_of(tmp_path, {"class": f"{SITES}.Local", "cores": "4"}) == (
        "site.hpc.cores: expected an integer, got '4'"
    )
    assert error_of(tmp_path, {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": "5 hours"}) == (
        "site.hpc.walltime (as parsl_config.walltime): expected [D-]HH:MM:SS, got '5 hours'"
    )
    assert error_of(tmp_path, {"class": f"{SITES}.Local", "cores": 0}).startswith(
        "site.hpc.cores (as parsl_config.max_workers): must be an integer >= 1"
    )


def test_local_refuses_command_prefix(tmp_path):
    assert error_of(tmp_path, {"class": f"{SITES}.Local", "cores": 2, "commandPrefix": "ulimit -c 0"}) == (
        f"site.hpc.commandPrefix: not supported with {SITES}.Local by desc.gen3_workflow: its jobs run in "
        "forks of bps submit, in bps submit's own environment; run these commands before bps submit (or use "
        "ctrl_bps's commandPrepend for a per-job wrapper)"
    )


def test_unknown_class_of_theirs(tmp_path):
    assert error_of(tmp_path, {"class": f"{SITES}.work_queue.WorkQueue"}) == (
        f"site.hpc.class: {SITES}.work_queue.WorkQueue is not a ctrl_bps_parsl site class desc.gen3_workflow "
        f"knows (supported, under {SITES}: local.Local, slurm.Slurm, princeton.Tiger, slac.Sdf, "
        "work_queue.LocalSrunWorkQueue, torque.Torque)"
    )


def test_user_subclass(tmp_path):
    assert error_of(tmp_path, {"class": "mysite.config.MyCluster", "nodes": 2}) == (
        "site.hpc.class mysite.config.MyCluster is not a ctrl_bps_parsl site class this plug-in knows; "
        "express it with parsl_config: executor/provider/... (doc/ctrl_bps_parsl.md)"
    )


@pytest.mark.parametrize(
    ("path", "what"),
    [
        (f"{SITES}.TripleSlurm", "small, medium and large executors chosen by each job's memory"),
        (f"{SITES}.slurm.TripleSlurm", "small, medium and large executors chosen by each job's memory"),
        (
            f"{SITES}.nersc.CoriKnl",
            "TripleSlurm's small, medium and large executors chosen by each job's memory",
        ),
        (f"{SITES}.ccin2p3.Ccin2p3", "small, medium, large and xlarge executors chosen by each job's memory"),
    ],
)
def test_multi_executor_classes(tmp_path, path, what):
    assert error_of(tmp_path, {"class": path}) == (
        f"site.hpc.class: {path} runs several executors in one run ({what}); desc.gen3_workflow does not "
        "support several executors per run yet: express it with one executor in parsl_config "
        "(doc/ctrl_bps_parsl.md)"
    )


# -- Which sections count, and the rule with parsl_config ------------------------


def test_no_compute_site_or_no_class_leaves_parsl_config_alone(tmp_path):
    site = {"class": f"{SITES}.Local", "cores": 3}
    path = tmp_path / "bps.yaml"
    path.write_text(yaml.safe_dump({"site": {"hpc": site}, "parsl_config": {"max_threads": 7}}))
    assert differences(ParslSettings.from_bps_config(BpsConfig(str(path)))) == {"max_threads": 7}
    # An htcondor-style site section (ctrl_bps's per-site job values): not ours.
    assert differences(settings_of(tmp_path, {"profile": {"x": 1}, "requestMemory": 2048})) == {}
    # computeSite naming a site that is not there: as before, parsl_config only.
    path.write_text(yaml.safe_dump({"computeSite": "elsewhere", "site": {"hpc": site}}))
    assert differences(ParslSettings.from_bps_config(BpsConfig(str(path)))) == {}


def test_parsl_config_keys_win_key_by_key(tmp_path):
    settings = settings_of(
        tmp_path,
        {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": "00:30:00", "retries": 3},
        parsl_config={"retries": 0, "execution": "process", "walltime": "02:00:00"},
    )
    assert (settings.provider, settings.exclusive) == ("Slurm", False)  # from the site
    assert (settings.retries, settings.execution, settings.walltime) == (0, "process", "02:00:00")
    # A bad value names where it was written.
    assert error_of(
        tmp_path, {"class": f"{SITES}.Local", "cores": 2}, parsl_config={"max_workers": 0}
    ).startswith("parsl_config.max_workers: must be an integer >= 1")


def test_ping_says_where_the_settings_came_from(tmp_path):
    settings_of(tmp_path, {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": "00:30:00"})
    settings, origin = settings_for_ping({}, str(tmp_path / "bps.yaml"))
    assert origin == f"{tmp_path / 'bps.yaml'}, site.hpc ({SITES}.Slurm)"
    assert settings.provider == "Slurm"
    settings_of(
        tmp_path, {"class": f"{SITES}.Slurm", "nodes": 1, "walltime": "00:30:00"}, parsl_config={"qos": "x"}
    )
    _, origin = settings_for_ping({}, str(tmp_path / "bps.yaml"))
    assert origin.endswith(f"site.hpc ({SITES}.Slurm), with parsl_config keys over it: qos")


def test_doc_page_lists_every_class_and_key_and_its_examples_translate():
    text = (ROOT / "doc" / "ctrl_bps_parsl.md").read_text()
    for site_class in SITE_CLASSES:
        assert f"`{site_class.path}`" in text, site_class.path
        for key in site_class.key_names:
            assert f"`{key}`" in text, (site_class.path, key)
    examples = [yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)]
    sites = [example for example in examples if "site" in example]
    assert len(sites) >= 3
    for example in sites:
        name = example["computeSite"]
        translation = site_parsl_config(name, example["site"][name])
        ParslSettings.from_mapping({**translation.parsl_config, **example.get("parsl_config", {})})
    assert "(ctrl_bps_parsl.md)" in (ROOT / "doc" / "parsl_config.md").read_text()
    assert "(doc/ctrl_bps_parsl.md)" in (ROOT / "README.md").read_text()
