"""The values of ``parsl_config`` keys: the allowed words, types and
ranges, each refused with one line naming the key and what it accepts."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import ParslConfigError

if TYPE_CHECKING:
    from .parsl_section import ParslSettings

__all__ = [
    "EXECUTIONS",
    "EXECUTORS",
    "LAUNCHERS",
    "LOG_LEVELS",
    "PROVIDERS",
    "RESOURCE_MONITORS",
    "check_values",
    "coerce",
    "labels",
]

EXECUTORS = ("ThreadPool", "WorkQueue", "HighThroughput")
PROVIDERS = ("Local", "Slurm", "Torque")
LAUNCHERS = ("Single", "Srun", "MpiRun")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXECUTIONS = ("process", "in_process")
RESOURCE_MONITORS = ("supervisor", "work_queue")

_WALLTIME = re.compile(r"^(\d+-)?\d{1,3}:\d{2}:\d{2}$")
_WORKER_OPTIONS = re.compile(r"^[\w\s.,:=/+@%-]*$")
_PASSWORD_OPTION = re.compile(r"(^|\s)(--password(=|\s|$)|-P)")
# parsl's TorqueProvider puts the queue and account on qsub's command line,
# which it runs through a shell: keep them to characters no shell reads.
_QSUB_WORD = re.compile(r"^[\w.@+-]+$")


def check_values(settings: ParslSettings) -> None:
    """Refuse a value out of its key's range (`ParslConfigError`, one line)."""
    _one_of("executor", settings.executor, EXECUTORS)
    _one_of("provider", settings.provider, PROVIDERS)
    if settings.launcher is not None:
        _one_of("launcher", settings.launcher, LAUNCHERS)
    _one_of("log_level", settings.log_level, LOG_LEVELS)
    _one_of("execution", settings.execution, EXECUTIONS)
    _one_of("resource_monitor", settings.resource_monitor, RESOURCE_MONITORS)
    if settings.max_in_flight is not None:
        _at_least("max_in_flight", settings.max_in_flight, 1)
    for key in ("return_grace", "stuck_factor", "stuck_min_seconds"):
        if getattr(settings, key) < 0 or (key == "return_grace" and settings.return_grace == 0):
            raise ParslConfigError(
                f"parsl_config.{key}: must be {'> 0' if key == 'return_grace' else '>= 0'}, "
                f"got {getattr(settings, key)}"
            )
    _at_least("max_quanta_per_worker", settings.max_quanta_per_worker, 0)
    for key in ("min_blocks", "port", "wq_max_retries"):
        _at_least(key, getattr(settings, key), 0)
    if settings.retries is not None:
        _at_least("retries", settings.retries, 0)
    for key in ("max_threads", "nodes_per_block", "init_blocks", "max_blocks"):
        _at_least(key, getattr(settings, key), 1)
    for key in ("max_workers", "cores_per_node", "mem_per_node", "worker_memory"):
        if getattr(settings, key) is not None:
            _at_least(key, getattr(settings, key), 1)
    if settings.cores_per_worker <= 0:
        raise ParslConfigError(f"parsl_config.cores_per_worker: must be > 0, got {settings.cores_per_worker}")
    if settings.progress_interval <= 0:
        raise ParslConfigError(
            f"parsl_config.progress_interval: must be > 0 (seconds), got {settings.progress_interval}"
        )
    if settings.port > 65535:
        raise ParslConfigError(f"parsl_config.port: must be between 0 and 65535, got {settings.port}")
    if settings.init_blocks > settings.max_blocks or settings.min_blocks > settings.max_blocks:
        raise ParslConfigError(
            f"parsl_config.max_blocks: must be >= init_blocks and min_blocks, got {settings.max_blocks}"
        )
    for key in ("walltime", "time_min"):
        value = getattr(settings, key)
        if value is not None and not _WALLTIME.match(value):
            raise ParslConfigError(f"parsl_config.{key}: expected [D-]HH:MM:SS, got {value!r}")
    if not _WORKER_OPTIONS.match(settings.worker_options):
        # Quoted anyway, but a worker given ';' or '$(..)' as an argument
        # would not start, and the run would wait for it forever.
        raise ParslConfigError(
            f"parsl_config.worker_options: {settings.worker_options!r} is not a list of work_queue_worker "
            "options (letters, digits, spaces and -_.,:=/+@% only), e.g. '--memory=90000 --cores=32'"
        )
    if settings.provider == "Torque":
        for key in ("queue", "account"):
            value = getattr(settings, key)
            if value is not None and not _QSUB_WORD.match(value):
                raise ParslConfigError(
                    f"parsl_config.{key}: {value!r} is not a Torque {key} name "
                    "(letters, digits and _.@+- only)"
                )
    if _PASSWORD_OPTION.search(settings.worker_options):
        raise ParslConfigError(
            "parsl_config.worker_options: leave out --password/-P; every run gives its workers a "
            "password of its own (secrets/work_queue.password in the submit directory)"
        )


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParslConfigError(f"parsl_config.{key}: unknown value {value!r}; allowed: {', '.join(allowed)}")


def _at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ParslConfigError(f"parsl_config.{key}: must be an integer >= {minimum}, got {value}")


_TYPE_NAMES = {
    "str": "a string",
    "str | None": "a string",
    "int": "an integer",
    "int | None": "an integer",
    "float": "a number",
    "bool": "true or false",
}


def coerce(key: str, value: Any, type_name: Any) -> Any:
    """Check one value against its field's declared type.

    YAML already gives typed scalars, so this only refuses what does not fit;
    it never parses strings into numbers (``max_threads: four`` is an error,
    not a guess).
    """
    type_name = str(type_name)
    optional = type_name.endswith("| None")
    if value is None and optional:
        return None
    ok: bool
    if type_name.startswith("bool"):
        ok = isinstance(value, bool)
    elif type_name.startswith("int"):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_name.startswith("float"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ParslConfigError(
            f"parsl_config.{key}: expected {_TYPE_NAMES.get(type_name, type_name)}, got {value!r}"
        )
    return value


def labels(value: Any) -> tuple[str, ...]:
    """``labels``: a list of task labels (one label alone is taken too)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ParslConfigError(f"parsl_config.labels: expected a list of task labels, got {value!r}")
    return tuple(value)
