"""Several executors in one run: the list form of ``parsl_config``.

.. code-block:: yaml

    parsl_config:
      retries: 2                 # run-wide keys stay at the top
      walltime: "10:00:00"       # any other key at the top: every executor's default
      executors:
        - name: small
          executor: ThreadPool
          max_threads: 4
          worker_memory: 4096    # MB: the largest request it takes
        - name: large
          executor: HighThroughput
          provider: Slurm
          worker_memory: 64000
          labels: [makeWarp]     # these task labels go here, whatever they ask

Each entry becomes a complete `~.parsl_section.ParslSettings` of its own:
the top-level keys, then the entry's over them.  Keys that concern the
run as a whole (`RUN_WIDE_KEYS`) may only be written at the top: one run
has one retry rule, one monitoring database, one progress display, one
watchdog and one way of running quanta (``execution``).

How jobs are sent to these executors is
`desc.gen3_workflow.execution.runner.routing`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ParslConfigError

if TYPE_CHECKING:
    from .parsl_section import ParslSettings

__all__ = ["ENTRY_KEYS", "RUN_WIDE_KEYS", "check_requests_fit", "check_single_form", "read_executor_list"]

RUN_WIDE_KEYS = (
    "retries",
    "monitoring",
    "monitoring_resources",
    "checkpoint",
    "log_level",
    "progress",
    "progress_interval",
    "return_grace",
    "stuck_factor",
    "stuck_min_seconds",
    "execution",
    "max_quanta_per_worker",
)
"""Keys of the run as a whole: written at the top of ``parsl_config`` only."""

ENTRY_KEYS = ("name", "labels")
"""Keys of one entry of ``parsl_config.executors`` only."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def check_single_form(section: Mapping[str, Any]) -> None:
    """Refuse the keys of an entry in a ``parsl_config`` with no
    ``executors`` list (one line naming the key)."""
    if section.get("labels"):
        raise ParslConfigError(
            "parsl_config.labels: only in an entry of parsl_config.executors (it sends those task labels "
            "to that executor)"
        )


def read_executor_list(
    top: Mapping[str, Any],
    entries: Any,
    make: Callable[[dict[str, Any]], ParslSettings],
) -> tuple[ParslSettings, ...]:
    """Validate ``parsl_config.executors``.

    Parameters
    ----------
    top : `~collections.abc.Mapping`
        The other keys of ``parsl_config``: run-wide keys and defaults of
        every entry.
    entries : `list` [`~collections.abc.Mapping`]
        The value of ``parsl_config.executors``.
    make : callable
        Validates one executor's whole mapping into its settings
        (`ParslSettings.from_mapping`, which raises one line naming the key).

    Returns
    -------
    executors : `tuple` [`ParslSettings`]
        Each entry's settings, in the order written, each with its name.

    Raises
    ------
    ParslConfigError
        One line naming the entry and the key.
    """
    for key in ENTRY_KEYS:
        if key in top:
            raise ParslConfigError(
                f"parsl_config.{key}: with parsl_config.executors, set it in each entry of the list"
            )
    if not isinstance(entries, list | tuple) or not entries:
        raise ParslConfigError(
            "parsl_config.executors: expected a list of executors (each a mapping with a name), "
            f"got {entries!r}"
        )
    executors: list[ParslSettings] = []
    owners: dict[str, str] = {}
    for i, entry in enumerate(entries):
        where = f"parsl_config.executors[{i}]"
        if not hasattr(entry, "items"):
            raise ParslConfigError(f"{where}: expected a mapping of settings with a name, got {entry!r}")
        entry = dict(entry.items())
        name = entry.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ParslConfigError(
                f"{where}.name: expected a name of letters, digits, '_' and '-' starting with a letter "
                f"(at most 32), got {name!r}"
            )
        where = f"parsl_config.executors[{name}]"
        if name in (e.name for e in executors):
            raise ParslConfigError(f"{where}.name: two executors are named {name!r}")
        for key in entry:
            if key in RUN_WIDE_KEYS or key == "executors":
                raise ParslConfigError(
                    f"{where}.{key}: a key of the whole run; write it at the top of parsl_config"
                )
        try:
            settings = make({**top, **entry})
        except ParslConfigError as exc:
            raise ParslConfigError(str(exc).replace("parsl_config.", f"{where}.", 1)) from None
        for label in settings.labels:
            if label in owners:
                raise ParslConfigError(
                    f"{where}.labels: {label!r} is already sent to executor {owners[label]!r}"
                )
            owners[label] = name
        executors.append(settings)
    return tuple(executors)


def check_requests_fit(executors: tuple[ParslSettings, ...], largest_request: int | None) -> None:
    """Refuse a run whose largest memory request no executor takes (before
    any job starts), rather than fail its jobs one by one.

    Parameters
    ----------
    executors : `tuple` [`ParslSettings`]
        The run's executors (``executors`` entries; one executor takes any
        request).
    largest_request : `int` or `None`
        The largest ``requestMemory`` (MB) of the run's jobs.
    """
    if len(executors) < 2 or largest_request is None:
        return
    if any(entry.worker_memory is None for entry in executors):
        return
    largest = max(executors, key=lambda entry: entry.worker_memory or 0)
    if largest_request > (largest.worker_memory or 0):
        raise ParslConfigError(
            f"parsl_config.executors[{largest.name}].worker_memory: {largest.worker_memory} MB is the most "
            f"any executor takes, and a job asks for {largest_request} MB (requestMemory); raise it, or add "
            "an executor without worker_memory"
        )
