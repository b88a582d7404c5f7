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

__all__ = ["QUANTA_PER_PROCESS", "final_script_argv", "fit_aggregate_processes"]

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


_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=\$([1-9])$")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SHELL_SYNTAX = set(";&|<>`()$*?[]~!#'\"\\")


def final_script_argv(script: str, args: list[str]) -> list[str] | None:
    """The one ``butler`` command of a final job script as ctrl_bps writes it,
    as an argument vector; `None` for any other script.

    ctrl_bps's script is ``set -e``, ``set -x``, ``name=$N`` lines naming
    its arguments, and one ``${DAF_BUTLER_DIR}/bin/butler ...`` (or, from
    newer ctrl_bps, ``butler ...``) line.  Only
    a script of exactly that shape, whose command has no shell syntax left
    once the named arguments are put in, is turned into words (so running
    them without a shell means what the shell would have run); the first
    word keeps its ``${DAF_BUTLER_DIR}``.

    Parameters
    ----------
    script : `str`
        The script's path.
    args : `list` [`str`]
        Its arguments (the QuantumGraph and the butler configuration).
    """
    try:
        with open(script) as fh:
            lines = [line.strip() for line in fh]
    except OSError:
        return None
    named: dict[str, str] = {}
    commands = []
    for line in lines:
        if not line or line.startswith("#") or line in ("set -e", "set -x"):
            continue
        if match := _ASSIGNMENT.match(line):
            index = int(match.group(2))
            if index > len(args):
                return None
            named[match.group(1)] = args[index - 1]
            continue
        commands.append(line)
    if len(commands) != 1:
        return None
    words = commands[0].split()
    # ``${DAF_BUTLER_DIR}/bin/butler`` (older ctrl_bps) or ``butler`` from PATH (newer).
    if not words or not (words[0] == "butler" or words[0].endswith("/bin/butler")):
        return None
    argv = [words[0]]
    for word in words[1:]:
        if any(name not in named for name in _VARIABLE.findall(word)) or _SHELL_SYNTAX & set(
            _VARIABLE.sub("", word)
        ):
            return None  # a variable it does not set, or shell syntax
        argv.append(_VARIABLE.sub(lambda m: named[m.group(1)], word))
    return argv
