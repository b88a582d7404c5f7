"""Route parsl's log: everything to a file, the important part to the terminal.

parsl logs a great deal (every task, every poll).  Its messages go to
``parsl.log`` in the submit directory; only those at ``parsl_config.log_level``
or above are handed on to the root logger, whose handlers ctrl_bps's own
logging options control, so ``bps --no-log-tty submit`` keeps the terminal
quiet as the seed's walkthrough expects.

parsl writes nine INFO lines per task (1.7 KB: 1.7 GB for a run of 10^6
jobs) that say what the job-state store already records; ``parsl.log``
keeps one of them, the line that ties parsl's task to its executor's id,
unless ``log_level`` is ``DEBUG``.

parsl's other processes (HighThroughput's interchange, managers and
workers, the monitoring database manager) log through `ComponentLogging`,
a `parsl.logconfigs.base.LogConfig` they unpickle: each HighThroughput
worker writes three INFO lines per task (570 MB over a run of 10^6 jobs),
and with monitoring on the interchange two of 2.9 KB (5.6 GB), which it
drops as well.
"""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable

from parsl.logconfigs.base import LogConfig

__all__ = ["ComponentLogging", "route_parsl_logging", "unroute_parsl_logging"]

_FORMAT = (
    "%(asctime)s %(name)s:%(lineno)d %(processName)s(%(process)d) %(threadName)s %(levelname)s: %(message)s"
)


class _ToRootLogger(logging.Handler):
    """Pass records on to the root logger's handlers, except parsl's
    per-task failure tracebacks: the plug-in reports each failed job itself,
    with its label, data ID, exit code and log file."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "parsl.dataflow.dflow" and str(record.msg).startswith("Task "):
            return
        logging.getLogger().handle(record)


_PER_TASK = {
    # The submitting process (the store records the same).
    "parsl.dataflow.dflow": ("Task ", "Standard out for task", "Standard error for task"),
    # HighThroughput's workers.
    "parsl.executors.high_throughput.process_worker_pool": (
        "Received executor task",
        "Completed executor task",
        "All processing finished for",
    ),
    # HighThroughput's interchange with monitoring on: each manager's record, twice a task (2.9 KB each).
    "parsl.executors.high_throughput.interchange": ("Sending message",),
}
"""How parsl's per-task INFO lines start, by logger."""


def _not_per_task(record: logging.LogRecord) -> bool:
    starts = _PER_TASK.get(record.name)
    return not (starts and record.levelno == logging.INFO and str(record.msg).startswith(starts))


class ComponentLogging(LogConfig):
    """How parsl's own processes log: one file each, as parsl's default,
    at INFO without the per-task lines (everything at DEBUG).

    parsl hands this object, pickled, to every process it starts; the
    submitting process (``log_name`` ``"parsl"``) is left alone, since
    `route_parsl_logging` has routed its log already.

    Parameters
    ----------
    level : `str`
        ``parsl_config.log_level``: ``DEBUG`` keeps every line.
    """

    def __init__(self, level: str) -> None:
        super().__init__()
        self.debug = level == "DEBUG"

    def initialize_logging(self, *, log_dir: pathlib.Path, log_name: str) -> Callable[[], None]:
        if log_name == "parsl":
            return lambda: None
        # HighThroughput's managers leave their log directory to the log config.
        log_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_dir / f"{log_name}.log")
        handler.setFormatter(logging.Formatter(_FORMAT))
        if not self.debug:
            handler.addFilter(_not_per_task)
        logger = logging.getLogger("parsl")
        logger.setLevel(logging.DEBUG if self.debug else logging.INFO)
        logger.addHandler(handler)

        def remove() -> None:
            logger.removeHandler(handler)
            handler.close()

        return remove


def route_parsl_logging(submit_dir: str, terminal_level: str) -> logging.Handler:
    """Send parsl's log to ``submit_dir/parsl.log`` and, above
    ``terminal_level``, to the terminal.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory.
    terminal_level : `str`
        Level name (``WARNING``, ...) from which parsl messages are echoed.

    Returns
    -------
    handler : `logging.Handler`
        The file handler, to be closed with `unroute_parsl_logging`.
    """
    logger = logging.getLogger("parsl")
    file_handler = logging.FileHandler(os.path.join(submit_dir, "parsl.log"))
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    if terminal_level != "DEBUG":
        file_handler.addFilter(_not_per_task)
    to_root = _ToRootLogger(level=terminal_level)
    logger.handlers = [file_handler, to_root]
    logger.setLevel(logging.DEBUG if terminal_level == "DEBUG" else logging.INFO)
    logger.propagate = False
    return file_handler


def unroute_parsl_logging(handler: logging.Handler) -> None:
    """Undo `route_parsl_logging`."""
    logger = logging.getLogger("parsl")
    logger.handlers = []
    logger.propagate = True
    handler.close()
