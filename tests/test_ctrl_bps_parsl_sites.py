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
from desc.gen3_workflow.settings.ctrl_bps_parsl_multi import SITE_CLASSES
from desc.gen3_workflow.settings.ctrl_bps_parsl_reading import site_parsl_config
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
    }
    # Theirs reads exclusive (default false) but runs parsl's default, true: ours too.
    assert settings_of(tmp_path, base).exclusive is True
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
    assert (settings.launcher, settings.exclusive, settings.retries) == ("Srun", True, 1)
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


# -- The classes with several executors (settings/ctrl_bps_parsl_multi.py) -----


def executors_of(settings: ParslSettings) -> list[tuple[str, int | None, str]]:
    """Each executor's name, worker_memory and walltime."""
    return [(e.executor_name, e.worker_memory, e.walltime) for e in settings.executor_list()]


def routed(settings: ParslSettings, request: int) -> str:
    """The routing rule of parsl_config.executors: the smallest worker_memory
    that fits, else an executor without one."""
    fitting = [
        e for e in settings.executor_list() if e.worker_memory is not None and e.worker_memory >= request
    ]
    if fitting:  # min() keeps the first written among equals, as the runner
        return min(fitting, key=lambda e: e.worker_memory or 0).executor_name
    return next(e.executor_name for e in settings.executor_list() if e.worker_memory is None)


def their_triple_slurm_choice(request: int, small: float, medium: float) -> str:
    """TripleSlurm.select_executor, as in their slurm.py."""
    memory = request / 1024
    return "small" if memory <= small else "medium" if memory <= medium else "large"


@pytest.mark.parametrize("path", [f"{SITES}.TripleSlurm", f"{SITES}.slurm.TripleSlurm"])
def test_triple_slurm(tmp_path, path):
    site = {"class": path, "nodes": 1}
    translation = site_parsl_config("hpc", site)
    assert translation.parsl_config["executors"] == [
        {"name": "small", "walltime": "10:00:00", "worker_memory": 2048},
        {"name": "medium", "walltime": "10:00:00", "worker_memory": 4096},
        # Theirs sends every job over medium_memory to large, even one over large_memory.
        {"name": "large", "walltime": "40:00:00"},
    ]
    settings = settings_of(tmp_path, site)
    assert executors_of(settings) == [
        ("small", 2048, "10:00:00"),
        ("medium", 4096, "10:00:00"),
        ("large", None, "40:00:00"),
    ]
    for executor in settings.executor_list():
        assert (executor.executor, executor.provider, executor.nodes_per_block) == (
            "HighThroughput",
            "Slurm",
            1,
        )
    assert settings.retries == 1
    settings = settings_of(
        tmp_path,
        {
            **site,
            "nodes": 3,
            "cores_per_node": 20,
            "mem_per_node": 90,
            "qos": "regular",
            "constraint": "cpu",
            "account": "m1727",
            "singleton": True,
            "scheduler_options": "#SBATCH --partition=debug",
            "small_memory": 2.5,  # a float, as theirs
            "medium_memory": 6,  # an integer too (theirs requires a float)
            "large_memory": 16.0,
            "small_walltime": "01:00:00",
            "large_walltime": "2-00:00:00",
        },
    )
    assert executors_of(settings) == [
        ("small", 2560, "01:00:00"),
        ("medium", 6144, "10:00:00"),
        ("large", None, "2-00:00:00"),
    ]
    for executor in settings.executor_list():
        assert (executor.nodes_per_block, executor.effective_launcher, executor.cores_per_node) == (
            3,
            "Srun",
            20,
        )
        assert (executor.mem_per_node, executor.qos, executor.constraint) == (90, "regular", "cpu")
        assert (executor.account, executor.exclusive) == ("m1727", True)
        assert executor.scheduler_options == (
            "#SBATCH --partition=debug\n#SBATCH --job-name=proj.camp\n#SBATCH --dependency=singleton"
        )
    for request in (1, 2048, 2560, 2561, 6144, 6145, 16384, 16385, 500_000):
        assert routed(settings, request) == their_triple_slurm_choice(request, 2.5, 6), request
    # A site walltime replaces the three, as theirs.
    settings = settings_of(tmp_path, {**site, "walltime": "05:00:00", "small_walltime": "01:00:00"})
    assert [e.walltime for e in settings.executor_list()] == ["05:00:00"] * 3


def test_triple_slurm_errors_name_the_site_key(tmp_path):
    site = {"class": f"{SITES}.TripleSlurm", "nodes": 1}
    assert error_of(tmp_path, {**site, "small_memory": "abc"}) == (
        "site.hpc.small_memory: expected a number of GB, got 'abc'"
    )
    assert error_of(tmp_path, {**site, "large_memory": 0}) == (
        "site.hpc.large_memory: expected a number of GB > 0, got 0"
    )
    assert error_of(tmp_path, {**site, "small_memory": 5}) == (
        "site.hpc.medium_memory: must be at least small_memory (5 GB), got 4.0 (ctrl_bps_parsl would send "
        "no job to medium)"
    )
    # Equal memories: the first written takes the jobs, in theirs and ours.
    settings = settings_of(tmp_path, {**site, "small_memory": 4})
    assert [routed(settings, request) for request in (4096, 4097)] == ["small", "large"]
    assert error_of(tmp_path, {**site, "small_walltime": "5 hours"}) == (
        "site.hpc.small_walltime (as parsl_config.executors[small].walltime): expected [D-]HH:MM:SS, "
        "got '5 hours'"
    )
    assert error_of(tmp_path, {"class": f"{SITES}.TripleSlurm"}) == (
        f"site.hpc.nodes: required by {SITES}.slurm.TripleSlurm; missing"
    )


def test_cori_knl(tmp_path):
    settings = settings_of(tmp_path, {"class": f"{SITES}.nersc.CoriKnl", "exclusive": False})
    assert executors_of(settings) == [
        ("small", 2048, "10:00:00"),
        ("medium", 4096, "10:00:00"),
        ("large", None, "40:00:00"),
    ]
    for executor in settings.executor_list():
        assert (executor.nodes_per_block, executor.constraint, executor.launcher) == (1, "knl", "Srun")
        # Their provider options: whole nodes (whatever the site says), one block.
        assert (executor.exclusive, executor.max_blocks, executor.min_blocks) == (True, 1, 0)
        assert executor.scheduler_options == "#SBATCH --module=cvmfs\n#SBATCH --licenses=cvmfs"
        assert executor.time_min == "2:00:00"
    # Their scheduler_options default is replaced whole, --time-min included.
    settings = settings_of(
        tmp_path,
        {
            "class": f"{SITES}.nersc.CoriKnl",
            "nodes": 2,
            "constraint": "cpu",
            "scheduler_options": "#SBATCH -q x",
        },
    )
    for executor in settings.executor_list():
        assert (executor.nodes_per_block, executor.constraint, executor.time_min) == (2, "cpu", None)
        assert executor.scheduler_options == "#SBATCH -q x"


@pytest.mark.parametrize("path", [f"{SITES}.Ccin2p3", f"{SITES}.ccin2p3.Ccin2p3"])
def test_ccin2p3_defaults(tmp_path, monkeypatch, path):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    settings = settings_of(tmp_path, {"class": path})
    assert executors_of(settings) == [
        ("small", 4 * 1024, "72:00:00"),
        ("medium", 10 * 1024, "72:00:00"),
        ("large", 50 * 1024, "72:00:00"),
        ("xlarge", None, "72:00:00"),  # theirs: what no other fits
    ]
    slots = {e.executor_name: (e.partition, e.mem_per_node, e.max_blocks) for e in settings.executor_list()}
    assert slots == {
        "small": ("lsst,htc", 4, 3000),
        "medium": ("lsst", 10, 1000),
        "large": ("lsst", 50, 100),
        "xlarge": ("lsst", 150, 10),
    }
    assert settings.retries == 0  # their Ccin2p3's default
    for executor in settings.executor_list():
        assert (executor.executor, executor.provider, executor.account) == ("HighThroughput", "Slurm", "lsst")
        assert (executor.nodes_per_block, executor.cores_per_node, executor.max_workers) == (1, 1, 1)
        assert (executor.exclusive, executor.min_blocks) == (False, 0)
        assert executor.scheduler_options == "#SBATCH --licenses=sps"
        assert executor.worker_init == "ulimit -n hard && ulimit -u hard"
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    assert {e.partition for e in settings_of(tmp_path, {"class": path}).executor_list()} == {"htc_arm"}


def test_ccin2p3_site_and_slot_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("GEN3WF_TEST_PARTITION", "flash")
    site = {
        "class": f"{SITES}.Ccin2p3",
        "account": "lsst_dev",
        "partition": "htc",
        "walltime": "24:00:00",
        "scheduler_options": ["--licenses=sps", "--qos=normal"],
        "retries": 2,
        "commandPrefix": "source setup.sh",
        "small": {"memory": 6, "partition": "${GEN3WF_TEST_PARTITION}", "walltime": "03:00:00"},
        "large": {"memory": 80, "max_blocks": 5},
        "xlarge": {"memory": 180, "scheduler_options": ["--constraint=el7", "--reservation=r"]},
    }
    settings = settings_of(tmp_path, site)
    assert settings.retries == 2
    slots = {
        e.executor_name: (
            e.worker_memory,
            e.partition,
            e.walltime,
            e.mem_per_node,
            e.max_blocks,
            e.scheduler_options,
        )
        for e in settings.executor_list()
    }
    assert slots == {
        "small": (6144, "flash", "03:00:00", 6, 3000, "#SBATCH --licenses=sps --qos=normal"),
        "medium": (10240, "htc", "24:00:00", 10, 1000, "#SBATCH --licenses=sps --qos=normal"),
        "large": (81920, "htc", "24:00:00", 80, 5, "#SBATCH --licenses=sps --qos=normal"),
        "xlarge": (None, "htc", "24:00:00", 180, 10, "#SBATCH --constraint=el7 --reservation=r"),
    }
    for executor in settings.executor_list():
        assert executor.account == "lsst_dev"
        assert executor.worker_init == "ulimit -n hard && ulimit -u hard\nsource setup.sh"
    # Theirs: the first of small, medium, large whose memory fits, else xlarge.
    for request, slot in [
        (6144, "small"),
        (6145, "medium"),
        (81920, "large"),
        (81921, "xlarge"),
        (10**6, "xlarge"),
    ]:
        assert routed(settings, request) == slot, request


def test_ccin2p3_errors(tmp_path, monkeypatch):
    site = {"class": f"{SITES}.Ccin2p3"}
    assert error_of(tmp_path, {**site, "small": {"memory": "4GB"}}) == (
        "site.hpc.small.memory: expected a whole number of GB, got '4GB'"
    )
    assert error_of(tmp_path, {**site, "medium": {"memroy": 12}}) == (
        "site.hpc.medium.memroy: not supported by desc.gen3_workflow; did you mean 'memory'? "
        "(supported: memory, max_blocks, partition, walltime, scheduler_options)"
    )
    assert error_of(tmp_path, {**site, "large": {"memory": 8}}) == (
        "site.hpc.large.memory: must be at least medium.memory (10 GB), got 8 (ctrl_bps_parsl would send no "
        "job to large)"
    )
    assert error_of(tmp_path, {**site, "scheduler_options": "--licenses=sps"}) == (
        "site.hpc.scheduler_options: expected a list, got '--licenses=sps'"
    )
    assert error_of(tmp_path, {**site, "small": {"walltime": "3 hours"}}).startswith(
        "site.hpc.small.walltime (as parsl_config.executors[small].walltime): expected [D-]HH:MM:SS"
    )
    assert error_of(tmp_path, {**site, "strategy": "none"}).startswith(
        "site.hpc.strategy: not supported by desc.gen3_workflow: blocks are scaled by parsl's default"
    )
    monkeypatch.setattr("platform.machine", lambda: "riscv64")
    assert error_of(tmp_path, site) == (
        "site.hpc.partition: no default partition for this host's architecture 'riscv64' (ctrl_bps_parsl "
        "knows x86_64, aarch64); set it"
    )
    assert {e.partition for e in settings_of(tmp_path, {**site, "partition": "lsst"}).executor_list()} == {
        "lsst"
    }


def test_multi_executor_sites_build_their_parsl_executors(tmp_path, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    built = {}
    for short, site in (("TripleSlurm", {"nodes": 1}), ("Ccin2p3", {})):
        settings = settings_of(tmp_path, {"class": f"{SITES}.{short}", **site})
        for executor in make_parsl_config(settings, str(tmp_path), "proj.camp").config.executors:
            assert isinstance(executor, HighThroughputExecutor)
            provider = executor.provider
            built[short, executor.label] = (executor.mem_per_worker, provider.walltime, provider.partition)
    # mem_per_worker: theirs small_memory, medium_memory, large_memory (ours: none for large, which
    # takes any request); none in Ccin2p3 (ours: worker_memory, for the three that have one).
    assert built == {
        ("TripleSlurm", "small"): (2.0, "10:00:00", None),
        ("TripleSlurm", "medium"): (4.0, "10:00:00", None),
        ("TripleSlurm", "large"): (None, "40:00:00", None),
        ("Ccin2p3", "small"): (None, "72:00:00", "lsst,htc"),
        ("Ccin2p3", "medium"): (None, "72:00:00", "lsst"),
        ("Ccin2p3", "large"): (None, "72:00:00", "lsst"),
        ("Ccin2p3", "xlarge"): (None, "72:00:00", "lsst"),
    }


def test_parsl_config_over_a_multi_executor_site(tmp_path):
    site = {"class": f"{SITES}.TripleSlurm", "nodes": 1, "small_walltime": "01:00:00"}
    # A key at the top replaces the site's value in every executor ...
    settings = settings_of(
        tmp_path, site, parsl_config={"walltime": "02:00:00", "retries": 3, "qos": "debug"}
    )
    assert executors_of(settings) == [
        ("small", 2048, "02:00:00"),
        ("medium", 4096, "02:00:00"),
        ("large", None, "02:00:00"),
    ]
    assert settings.retries == 3 and {e.qos for e in settings.executor_list()} == {"debug"}
    # ... and an executors list replaces the site's whole, the site's other keys its defaults.
    own = [{"name": "one", "worker_memory": 3000}, {"name": "two", "walltime": "03:00:00"}]
    settings = settings_of(tmp_path, site, parsl_config={"executors": own})
    assert executors_of(settings) == [("one", 3000, "01:00:00"), ("two", None, "03:00:00")]
    assert {(e.provider, e.nodes_per_block) for e in settings.executor_list()} == {("Slurm", 1)}
    _, origin = settings_for_ping({}, str(tmp_path / "bps.yaml"))
    assert origin.endswith(f"site.hpc ({SITES}.TripleSlurm), with parsl_config keys over it: executors")
    # A bad value of the file's own names the file's key.
    message = error_of(tmp_path, site, parsl_config={"walltime": "2 hours"})
    assert message.startswith("parsl_config.executors[small].walltime: expected [D-]HH:MM:SS")


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
        "work_queue.LocalSrunWorkQueue, torque.Torque, slurm.TripleSlurm, nersc.CoriKnl, ccin2p3.Ccin2p3)"
    )


def test_user_subclass(tmp_path):
    assert error_of(tmp_path, {"class": "mysite.config.MyCluster", "nodes": 2}) == (
        "site.hpc.class mysite.config.MyCluster is not a ctrl_bps_parsl site class this plug-in knows; "
        "express it with parsl_config: executor/provider/... (doc/ctrl_bps_parsl.md)"
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
    assert (settings.provider, settings.exclusive) == ("Slurm", True)  # from the site
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
        for site_key in site_class.keys:
            for subkey in site_key.subkeys:
                assert f"`{site_key.name}.{subkey.name}`" in text, (
                    site_class.path,
                    site_key.name,
                    subkey.name,
                )
    examples = [yaml.safe_load(block) for block in re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)]
    sites = [example for example in examples if "site" in example]
    assert len(sites) >= 3
    for example in sites:
        name = example["computeSite"]
        translation = site_parsl_config(name, example["site"][name])
        ParslSettings.from_mapping({**translation.parsl_config, **example.get("parsl_config", {})})
    # A site example followed by "becomes" and a parsl_config: the same settings.
    blocks = list(re.finditer(r"^```yaml\n(.*?)^```$", text, re.M | re.S))
    shown = [
        (one.group(1), two.group(1))
        for one, two in zip(blocks, blocks[1:], strict=False)
        if text[one.end() : two.start()].strip() == "becomes"
    ]
    assert shown
    for site_block, parsl_block in shown:
        example = yaml.safe_load(site_block)
        name = example["computeSite"]
        translated = ParslSettings.from_mapping(site_parsl_config(name, example["site"][name]).parsl_config)
        assert translated == ParslSettings.from_mapping(yaml.safe_load(parsl_block)["parsl_config"])
    assert "(ctrl_bps_parsl.md)" in (ROOT / "doc" / "parsl_config.md").read_text()
    assert "(doc/ctrl_bps_parsl.md)" in (ROOT / "README.md").read_text()


def test_their_parsl_log_level_is_read(tmp_path):
    site = {"class": f"{SITES}.Local", "cores": 2}
    assert settings_of(tmp_path, site, parsl={"log_level": "warn"}).log_level == "WARNING"
    with pytest.raises(ParslConfigError, match=r"^parsl\.log_level \(as parsl_config\.log_level\): unknown"):
        settings_of(tmp_path, site, parsl={"log_level": "LOUD"})
