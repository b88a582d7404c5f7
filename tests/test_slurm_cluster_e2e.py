"""The private Slurm cluster harness: plain sbatch jobs and a real parsl run."""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

import parsl
import psutil
import pytest
from harness import wait_for
from parsl.app.app import bash_app, python_app
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SingleNodeLauncher
from parsl.providers import SlurmProvider

from desc.gen3_workflow.execution.job_io.processes import descendants
from desc.gen3_workflow.testing.slurm_cluster import SlurmCluster


def _leftovers(cluster: SlurmCluster) -> dict[int, str]:
    """Processes, besides this one and the daemons, in the cluster's jobs or from parsl here.

    Job processes (and the interchange, started while SLURM_CONF was set) carry
    the cluster's SLURM_CONF in their environment; other sessions' parsl
    processes on this machine do not, so they are not counted.
    """
    mine = descendants([os.getpid()])
    found = {}
    for process in psutil.process_iter():
        try:
            # The cluster's own daemons (and slurmscriptd, in slurmctld's session) stay.
            if (
                process.pid == os.getpid()
                or process.status() == psutil.STATUS_ZOMBIE
                or os.getsid(process.pid) in cluster.pids.values()
            ):
                continue
            cmdline = " ".join(process.cmdline())
            in_cluster = process.environ().get("SLURM_CONF") == str(cluster.conf_path)
        except (psutil.Error, OSError):
            continue  # exited meanwhile
        parsl_process = "process_worker_pool" in cmdline or "interchange" in cmdline
        if in_cluster or (process.pid in mine and parsl_process):
            found[process.pid] = cmdline
    return found


def test_cluster_is_up(slurm_cluster: SlurmCluster) -> None:
    """The node is idle in the default partition and the config is private."""
    print(f"SlurmCluster.start() took {slurm_cluster.start_seconds:.2f} s")
    assert slurm_cluster.env == {"SLURM_CONF": str(slurm_cluster.conf_path)}
    out = slurm_cluster.run(["sinfo", "--noheader", "--format=%P %a %T %D"]).stdout.split()
    assert out == [f"{slurm_cluster.partition}*", "up", "idle", "1"]
    assert set(slurm_cluster.pids) == {"munged", "slurmctld", "slurmd"}


def test_sbatch_wrap(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """A trivial batch job runs and writes its file."""
    target = tmp_path / "hi.txt"
    args = ["sbatch", "--parsable", f"--chdir={tmp_path}", f"--output={tmp_path}/job-%j.out"]
    # --wrap is run by a shell in the job; the path is ours, quoted all the same.
    args += ["--wrap", f"echo hi > {shlex.quote(str(target))}"]
    job_id = slurm_cluster.run(args).stdout.strip()
    assert job_id.isdigit()
    wait_for(lambda: target.exists() and target.read_text() == "hi\n", "the job's file", 30, 0.1)
    wait_for(lambda: job_id not in slurm_cluster.job_ids(), f"job {job_id} to leave squeue", 30, 0.1)


@bash_app
def _write(path: str, text: str) -> str:
    return f"echo {shlex.quote(text)} > {shlex.quote(path)}"


@python_app
def _square(x: int) -> tuple[int, str | None]:
    import os

    return x * x, os.environ.get("SLURM_JOB_ID")


def _parsl_config(cluster: SlurmCluster, run_dir: Path) -> parsl.Config:
    bin_dir = Path(sys.prefix) / "bin"
    # The job must run the same interpreter and parsl as this process.
    activate = bin_dir / "activate"
    setup = f"source {shlex.quote(str(activate))}" if activate.exists() else f"export PATH={bin_dir}:$PATH"
    # Workers unpickle apps by module name: this test module must be importable there.
    pythonpath = shlex.quote(str(Path(__file__).parent))
    provider = SlurmProvider(
        partition=cluster.partition,
        worker_init=(
            f"{setup}; export SLURM_CONF={shlex.quote(str(cluster.conf_path))}"
            f"; export PYTHONPATH={pythonpath}${{PYTHONPATH:+:$PYTHONPATH}}"
        ),
        launcher=SingleNodeLauncher(),
        exclusive=False,
        nodes_per_block=1,
        init_blocks=1,
        min_blocks=0,
        max_blocks=1,
        walltime="00:10:00",
    )
    executor = HighThroughputExecutor(
        label="slurm_htex", address="127.0.0.1", provider=provider, max_workers_per_node=2
    )
    # Blocks (even init_blocks) are submitted at the first strategy tick, one
    # strategy_period (default 5 s) after load: keep that short.
    return parsl.Config(executors=[executor], run_dir=str(run_dir), strategy="none", strategy_period=0.5)


def test_parsl_htex_on_slurm(
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bash and python apps run inside a Slurm job; nothing is left afterwards."""
    start = time.monotonic()
    # parsl runs sbatch/squeue/scancel with this process's environment, and
    # SlurmProvider probes `sacct` when constructed: set it before the config.
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf_path))
    # HTEX starts `interchange.py` through PATH, which lacks the venv unless activated.
    monkeypatch.setenv("PATH", f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    dfk = parsl.load(_parsl_config(slurm_cluster, tmp_path / "runinfo"))
    try:
        files = [tmp_path / f"out{i}.txt" for i in range(3)]
        bash_futures = [_write(str(path), f"line {i}") for i, path in enumerate(files)]
        squares = [_square(i) for i in range(5)]
        assert [f.result(timeout=120) for f in bash_futures] == [0, 0, 0]
        assert [path.read_text() for path in files] == [f"line {i}\n" for i in range(3)]
        results = [f.result(timeout=120) for f in squares]
        assert [value for value, _ in results] == [0, 1, 4, 9, 16]
        job_ids = {job_id for _, job_id in results}
        assert len(job_ids) == 1 and None not in job_ids, f"apps not in one Slurm job: {job_ids}"
        apps_done = time.monotonic()
    finally:
        dfk.cleanup()
        parsl.clear()
    cleaned = time.monotonic()
    wait_for(lambda: not slurm_cluster.job_ids(), "squeue to be empty after dfk.cleanup()", 30, 0.1)
    wait_for(
        lambda: not _leftovers(slurm_cluster),
        lambda: f"processes left after dfk.cleanup(): {_leftovers(slurm_cluster)}",
        15,
        0.2,
    )
    end = time.monotonic()
    print(
        f"parsl run on Slurm took {end - start:.1f} s: apps {apps_done - start:.1f} s, "
        f"dfk.cleanup() {cleaned - apps_done:.1f} s, then squeue empty, no leftovers {end - cleaned:.1f} s"
    )
