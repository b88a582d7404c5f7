"""What a warm runner reads in a job's request: its ``pipetask`` (or
``butler``) argument vector, and how many quanta it runs.

Shared by the submit side, parsl's workers and every warm runner (the
forked executors of `~.in_process_runner`, the node runners of
`~.node_runner`, the forks of `~.local_fork`); standard library and the
store's records only.
"""

from __future__ import annotations

import os
from typing import Any

from ...store.records import JobCommand

__all__ = ["pipetask_argv", "quantum_count", "request_command"]


def request_command(request: dict[str, Any]) -> JobCommand:
    """The command a runner's request carries (its argument vector and
    environment, as JSON lists)."""
    return JobCommand(tuple(request["argv"]), tuple((name, value) for name, value in request["env"]))


def pipetask_argv(
    command: JobCommand, environ: dict[str, str], subcommand: str = "run-qbb", program: str = "pipetask"
) -> tuple[dict[str, str], list[str]] | None:
    """The variables to set and the ``pipetask`` argument vector of a job
    that runs ``pipetask ... run-qbb`` (or ``subcommand``, of ``program``);
    `None` for any other command.

    Parameters
    ----------
    command : `JobCommand`
        The job's command.
    environ : `dict` [`str`, `str`]
        The environment in which ``<ENV:NAME>`` markers are expanded.
    subcommand : `str`, optional
        The subcommand to accept.
    program : `str`, optional
        The program to accept (``butler`` for the final job).
    """
    exports, argv = command.expanded(environ)
    if not argv or os.path.basename(argv[0]) != program or subcommand not in argv:
        return None
    return exports, argv


def quantum_count(argv: list[str]) -> int:
    """How many quanta (QuantumGraph node ids) a ``run-qbb`` command runs."""
    count = 0
    for i, word in enumerate(argv):
        if word in ("--qgraph-node-id", "--qgraph-node-ids") and i + 1 < len(argv):
            count += len([n for n in argv[i + 1].split(",") if n])
        elif word.startswith("--qgraph-node-id="):
            count += len([n for n in word.split("=", 1)[1].split(",") if n])
    return max(count, 1)
