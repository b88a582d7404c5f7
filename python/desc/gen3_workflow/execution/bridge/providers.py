"""Provider factories: where parsl blocks of workers run.

One small function per ``parsl_config.provider`` value.  Adding a provider
is one new function and one entry in `PROVIDER_FACTORIES`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from typing import Any

from parsl.launchers import MpiRunLauncher, SingleNodeLauncher, SrunLauncher
from parsl.launchers.base import Launcher
from parsl.providers import LocalProvider, SlurmProvider, TorqueProvider
from parsl.providers.base import ExecutionProvider
from parsl.providers.slurm.slurm import squeue_translate_table

from ...settings.parsl_section import ParslSettings

__all__ = ["PROVIDER_FACTORIES", "default_worker_init", "make_provider"]


def default_worker_init() -> str:
    """Shell line that puts this interpreter's environment first on PATH.

    Workers started by a batch system begin with a login environment; they
    need the same ``pipetask``, ``butler`` and parsl worker scripts as the
    submitting process.  On an interpreter with CPython gh-128131 the
    zipfile fix's directory also goes first on PYTHONPATH (see
    `~desc.gen3_workflow.host.zipfix`).
    """
    from ...host import zipfix

    line = f'export PATH={shlex.quote(sys.prefix + "/bin")}:"$PATH"'
    if zipfix.fix_applied():
        # ${PYTHONPATH:+:...}: no empty entry, which would mean the cwd.
        line += f'; export PYTHONPATH={shlex.quote(zipfix.SITE_DIR)}"${{PYTHONPATH:+:$PYTHONPATH}}"'
    return line


MPIRUN_ONE_POOL_PER_NODE = "--map-by ppr:1:node"
"""mpirun (Open MPI) options that start one worker pool on each node of a
block: parsl asks for one launch per node, and mpirun's default would fill
the first node's slots instead."""


def _launcher(settings: ParslSettings) -> Launcher:
    launcher = settings.effective_launcher
    if launcher == "Srun":
        return SrunLauncher()
    if launcher == "MpiRun":
        return MpiRunLauncher(overrides=MPIRUN_ONE_POOL_PER_NODE)
    return SingleNodeLauncher()


def _worker_init(settings: ParslSettings) -> str:
    # The user's worker_init comes last so that it can override ours.
    return "; ".join(part for part in (default_worker_init(), settings.worker_init) if part)


def local_provider(settings: ParslSettings) -> ExecutionProvider:
    """Workers on the submitting machine (or inside the current allocation
    with ``launcher: Srun``)."""
    return LocalProvider(
        nodes_per_block=settings.nodes_per_block,
        init_blocks=settings.init_blocks,
        min_blocks=settings.min_blocks,
        max_blocks=settings.max_blocks,
        worker_init=_worker_init(settings),
        launcher=_launcher(settings),
    )


def slurm_provider(settings: ParslSettings) -> ExecutionProvider:
    """Workers in Slurm batch jobs, one job per block."""
    scheduler_options = settings.scheduler_options
    if settings.time_min:
        # SlurmProvider has no time-min argument; it takes raw #SBATCH lines.
        scheduler_options = f"{scheduler_options}\n#SBATCH --time-min={settings.time_min}".strip()
    provider = SlurmProvider(
        partition=settings.partition,
        account=settings.account,
        qos=settings.qos,
        constraint=settings.constraint,
        nodes_per_block=settings.nodes_per_block,
        cores_per_node=settings.cores_per_node,
        mem_per_node=settings.mem_per_node,
        init_blocks=settings.init_blocks,
        min_blocks=settings.min_blocks,
        max_blocks=settings.max_blocks,
        walltime=settings.walltime,
        scheduler_options=scheduler_options,
        worker_init=_worker_init(settings),
        exclusive=settings.exclusive,
        launcher=_launcher(settings),
    )
    if provider._translate_table is squeue_translate_table:
        provider._cmd = squeue_tolerating_ended_jobs(provider._cmd)
    return provider


class PpnTorqueProvider(TorqueProvider):
    """parsl's TorqueProvider, asking each node for ``ppn`` processors.

    Executors submit a block with one task per node (one worker pool, which
    runs the node's workers); parsl's template uses that count for
    ``#PBS -l nodes=N:ppn=...`` as well, so a block would ask for one
    processor per node.  The launcher still gets one task per node; only
    the resource request takes ``ppn``.

    Parameters
    ----------
    ppn : `int`
        Processors per node to request.
    **kwargs : `~typing.Any`
        `parsl.providers.TorqueProvider`'s arguments.
    """

    def __init__(self, ppn: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ppn = ppn

    def _write_submit_script(
        self, template: str, script_filename: str, job_name: str, configs: dict[str, Any]
    ) -> bool:
        configs = {**configs, "tasks_per_node": self.ppn}
        return super()._write_submit_script(template, script_filename, job_name, configs)


def torque_provider(settings: ParslSettings) -> ExecutionProvider:
    """Workers in PBS/Torque batch jobs, one job per block (``qsub``)."""
    return PpnTorqueProvider(
        ppn=settings.cores_per_node or 1,
        queue=settings.queue,
        account=settings.account,
        nodes_per_block=settings.nodes_per_block,
        init_blocks=settings.init_blocks,
        min_blocks=settings.min_blocks,
        max_blocks=settings.max_blocks,
        walltime=settings.walltime,
        scheduler_options=settings.scheduler_options,
        worker_init=_worker_init(settings),
        launcher=_launcher(settings),
    )


def squeue_tolerating_ended_jobs(command: str) -> str:
    """Wrap parsl's ``squeue --job IDS`` status command (used where sacct is
    unavailable) so that jobs Slurm has forgotten read as ended.

    squeue exits 1 ("Invalid job id specified") when every job it is asked
    about has left its memory (``MinJobAge`` after ending); parsl then keeps
    those blocks RUNNING for ever, and a run whose block was cancelled or
    died waits for it.  If squeue itself answers, an empty listing is
    returned instead, which parsl reads as "completed", as for any job
    squeue omits.  A controller that does not answer is still an error.
    """
    return (
        f"out=$({command} 2>/dev/null); rc=$?; "
        "if [ $rc -ne 0 ] && ! squeue --noheader --format=%i >/dev/null 2>&1; then exit $rc; fi; "
        "printf '%s\\n' \"$out\""
    )


PROVIDER_FACTORIES: dict[str, Callable[[ParslSettings], ExecutionProvider]] = {
    "Local": local_provider,
    "Slurm": slurm_provider,
    "Torque": torque_provider,
}


def make_provider(settings: ParslSettings) -> ExecutionProvider:
    """Build the provider named by ``settings.provider``."""
    return PROVIDER_FACTORIES[settings.provider](settings)
