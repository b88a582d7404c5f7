"""Validation of the parsl_config section and the factories it selects."""

import os

import pytest
from harness import requires_work_queue
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor, WorkQueueExecutor
from parsl.providers import LocalProvider, SlurmProvider

from desc.gen3_workflow.errors import ParslConfigError
from desc.gen3_workflow.execution.bridge.parsl_factory import make_parsl_config
from desc.gen3_workflow.execution.job_io import run_secrets
from desc.gen3_workflow.settings.parsl_section import ParslSettings


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            {"executor": "Dask"},
            "parsl_config.executor: unknown value 'Dask'; allowed: ThreadPool, WorkQueue, HighThroughput",
        ),
        ({"provider": "Cobalt"}, "parsl_config.provider: unknown value 'Cobalt'; allowed: Local, Slurm"),
        ({"max_thread": 4}, "parsl_config.max_thread: unknown key (did you mean 'max_threads'?)"),
        ({"max_threads": "four"}, "parsl_config.max_threads: expected an integer, got 'four'"),
        ({"retries": -1}, "parsl_config.retries: must be an integer >= 0, got -1"),
        ({"monitoring": "yes"}, "parsl_config.monitoring: expected true or false, got 'yes'"),
        ({"walltime": "2 hours"}, "parsl_config.walltime: expected [D-]HH:MM:SS"),
        ({"log_level": "LOUD"}, "parsl_config.log_level: unknown value 'LOUD'"),
        ({"worker_options": "--cores=1 `id`"}, "parsl_config.worker_options: '--cores=1 `id`' is not a list"),
        ({"worker_options": "$(id)"}, "parsl_config.worker_options: '$(id)' is not a list"),
        (
            {"resource_monitor": "cgroups"},
            "parsl_config.resource_monitor: unknown value 'cgroups'; allowed: supervisor, work_queue",
        ),
        ({"return_grace": 0}, "parsl_config.return_grace: must be > 0, got 0.0"),
        ({"stuck_factor": -1}, "parsl_config.stuck_factor: must be >= 0, got -1.0"),
        ({"max_in_flight": 0}, "parsl_config.max_in_flight: must be an integer >= 1, got 0"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(section, message):
    with pytest.raises(ParslConfigError) as info:
        ParslSettings.from_mapping(section)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text
    assert info.value.exit_status == 2  # bps exits with it (see service._bps_errors)


def test_no_section_means_thread_pool_on_all_cores():
    settings = ParslSettings.from_mapping(None)
    assert settings.executor == "ThreadPool"
    assert settings.max_threads >= 1


@requires_work_queue
def test_seed_work_queue_section(tmp_path):
    run_secrets.create(str(tmp_path))  # as the run's parsl session does first
    settings = ParslSettings.from_mapping(
        {
            "retries": 1,
            "monitoring": True,
            "checkpoint": False,
            "executor": "WorkQueue",
            "provider": "Local",
            "nodes_per_block": 10,
            "worker_options": "--memory=90000 --timeout=600",
        }
    )
    run = make_parsl_config(settings, str(tmp_path), "test")
    executor = run.config.executors[0]
    assert isinstance(executor, WorkQueueExecutor)
    assert isinstance(executor.provider, LocalProvider)
    assert executor.provider.nodes_per_block == 10
    assert executor.worker_options == "--memory=90000 --timeout=600"
    # The manager takes only workers that know the run's password.
    assert executor.project_password_file == str(tmp_path / "secrets" / "work_queue.password")
    # The runner retries (a new attempt per try); parsl never does.
    assert run.config.retries == 0 and settings.retries == 1
    assert run.config.monitoring is not None
    # The plug-in measures each job's use: no parsl monitor process per task
    # unless asked for.
    assert run.config.monitoring.resource_monitoring_enabled is False
    asked = ParslSettings.from_mapping(
        {"executor": "ThreadPool", "monitoring": True, "monitoring_resources": True}
    )
    assert make_parsl_config(asked, str(tmp_path), "test").config.monitoring.resource_monitoring_enabled
    assert run.mode.takes_resource_spec
    # 10 nodes of this machine's cores, twice over.
    assert run.capacity == max(16, 2 * 10 * (os.cpu_count() or 1))
    # The job supervisor measures memory; Work Queue's own monitor stays off.
    assert not executor.autolabel
    monitored = ParslSettings.from_mapping({"executor": "WorkQueue", "resource_monitor": "work_queue"})
    assert make_parsl_config(monitored, str(tmp_path), "t").config.executors[0].autolabel


def test_local_high_throughput_in_process_relays_without_a_worker_pool(tmp_path):
    """HighThroughput on this machine in in_process mode: every job runs in
    the node's runner, so threads of bps submit (as many as the workers)
    hand it the jobs instead of a worker pool that would start for seconds."""
    relay = {"executor": "HighThroughput", "max_workers": 3, "max_blocks": 2}
    run = make_parsl_config(ParslSettings.from_mapping(relay), str(tmp_path), "t")
    executor = run.config.executors[0]
    assert isinstance(executor, ThreadPoolExecutor) and executor.max_threads == 6
    assert run.executor_label == "htex_local"
    process = ParslSettings.from_mapping({**relay, "execution": "process"})
    executor = make_parsl_config(process, str(tmp_path), "t").config.executors[0]
    assert isinstance(executor, HighThroughputExecutor)


def test_thread_pool_and_slurm_htex(tmp_path):
    run = make_parsl_config(ParslSettings.from_mapping({"max_threads": 3}), str(tmp_path), "t")
    assert isinstance(run.config.executors[0], ThreadPoolExecutor)
    assert run.config.executors[0].max_threads == 3
    assert not run.mode.takes_resource_spec
    assert run.capacity == 16

    settings = ParslSettings.from_mapping(
        {
            "executor": "HighThroughput",
            "provider": "Slurm",
            "partition": "debug",
            "account": "m1727",
            "constraint": "cpu",
            "qos": "regular",
            "walltime": "02:00:00",
            "time_min": "00:30:00",
            "exclusive": False,
            "max_workers": 4,
        }
    )
    run = make_parsl_config(settings, str(tmp_path), "t")
    executor = run.config.executors[0]
    assert isinstance(executor, HighThroughputExecutor)
    provider = executor.provider
    assert isinstance(provider, SlurmProvider)
    assert (provider.partition, provider.account, provider.qos) == ("debug", "m1727", "regular")
    assert "#SBATCH --time-min=00:30:00" in provider.scheduler_options
    assert executor.max_workers_per_node == 4
    assert (
        run.capacity == 16
        and make_parsl_config(
            ParslSettings.from_mapping({"executor": "HighThroughput", "max_workers": 8, "max_blocks": 2}),
            str(tmp_path),
            "t",
        ).capacity
        == 32
    )


def test_parsl_spawns_without_rerunning_the_main_script():
    """While parsl starts (Work Queue's submit process, monitoring), spawned
    children are not told to run bps's main script again; afterwards
    __main__ is as it was."""
    import multiprocessing.spawn
    import sys

    from desc.gen3_workflow.execution.bridge.parsl_session import spawn_without_main_script

    main = sys.modules["__main__"]
    before = {name: main.__dict__.get(name) for name in ("__file__", "__spec__")}
    with spawn_without_main_script():
        data = multiprocessing.spawn.get_preparation_data("child")
        assert "init_main_from_path" not in data and "init_main_from_name" not in data
    assert {name: main.__dict__.get(name) for name in ("__file__", "__spec__")} == before
