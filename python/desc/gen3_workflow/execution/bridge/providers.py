"""Provider factories: where parsl blocks of workers run.

One small function per ``parsl_config.provider`` value.  Adding a provider
is one new function and one entry in `PROVIDER_FACTORIES`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable

from parsl.launchers import SingleNodeLauncher, SrunLauncher
from parsl.launchers.base import Launcher
from parsl.providers import LocalProvider, SlurmProvider
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


def _launcher(settings: ParslSettings) -> Launcher:
    if settings.effective_launcher == "Srun":
        return SrunLauncher()
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
}


def make_provider(settings: ParslSettings) -> ExecutionProvider:
    """Build the provider named by ``settings.provider``."""
    return PROVIDER_FACTORIES[settings.provider](settings)
