"""Fit the final job's ``butler aggregate-graph -j N`` to the graph's size.

ctrl_bps writes the final job as a script (``final_job.bash``) whose
``aggregate-graph`` line asks for ``-j {finalJob.requestCpus}`` scanning
processes.  Each of them starts a Python interpreter and imports the
middleware before it scans a single quantum, so on graphs of a few hundred
quanta more processes make the final job slower, not faster.  Measured on
this project's 2-core machine (``butler aggregate-graph`` of the demo
pipeline): 53 quanta, ``-j 1`` 5.0-5.5 s against ``-j 2`` 9.9-15.6 s;
611 quanta, ``-j 1`` 7.9-9.0 s against ``-j 2`` 15.9-18.3 s.  One process
scans about 110 quanta per second; a second one pays for itself from about
a thousand quanta.  So the plug-in asks for one process per
`QUANTA_PER_PROCESS` quanta, never more than ``finalJob.requestCpus``.
"""

from __future__ import annotations

import logging
import re

__all__ = ["QUANTA_PER_PROCESS", "fit_aggregate_processes"]

QUANTA_PER_PROCESS = 1000
"""Quanta per scanning process of the final job."""

_AGGREGATE_J = re.compile(r"(\baggregate-graph\b.*?\s-j\s+)(\d+)(?=\s|$)")

_LOG = logging.getLogger(__name__)


def fitted_processes(requested: int, quanta: int) -> int:
    """Scanning processes for ``quanta`` quanta, at most ``requested``."""
    return max(1, min(requested, quanta // QUANTA_PER_PROCESS))


def fit_aggregate_processes(script: str, quanta: int) -> tuple[int, int] | None:
    """Rewrite the ``-j`` of the ``aggregate-graph`` line of the final job's
    script ``script`` for a graph of ``quanta`` quanta.

    Returns
    -------
    change : `tuple` [`int`, `int`] or `None`
        The requested and the fitted number of processes, or `None` if the
        script has no ``aggregate-graph ... -j N`` line (a user's own final
        command is left alone).
    """
    try:
        with open(script) as fh:
            text = fh.read()
    except OSError:
        return None
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        match = _AGGREGATE_J.search(line)
        if match is None:
            continue
        requested = int(match.group(2))
        fitted = fitted_processes(requested, quanta)
        if fitted != requested:
            lines[i] = line[: match.start(2)] + str(fitted) + line[match.end(2) :]
            with open(script, "w") as fh:
                fh.write("".join(lines))
            _LOG.info(
                "Final job: aggregate-graph -j %d for %d quanta (one scanning process per %d quanta, "
                "at most finalJob.requestCpus %d)",
                fitted,
                quanta,
                QUANTA_PER_PROCESS,
                requested,
            )
        return requested, fitted
    return None
