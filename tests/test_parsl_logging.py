"""parsl's logs: what the plug-in keeps of them (a run's worth of lines
per job would fill a scratch directory at 10^6 jobs)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from desc.gen3_workflow.execution.bridge.parsl_logging import (
    ComponentLogging,
    route_parsl_logging,
    unroute_parsl_logging,
)

_WORKER = logging.getLogger("parsl.executors.high_throughput.process_worker_pool")
_INTERCHANGE = logging.getLogger("parsl.executors.high_throughput.interchange")


@pytest.fixture
def clean_parsl_logger():
    logger = logging.getLogger("parsl")
    saved = (list(logger.handlers), logger.level)
    yield
    logger.handlers, level = saved
    logger.setLevel(level)


@pytest.mark.parametrize("level", ["WARNING", "DEBUG"])
def test_a_worker_log_drops_the_per_task_lines_unless_debug(
    tmp_path: Path, clean_parsl_logger, level: str
) -> None:
    # parsl pickles the log config for each process it starts.
    config = pickle.loads(pickle.dumps(ComponentLogging(level)))
    log_dir = tmp_path / "block-0" / "manager-id"  # HighThroughput leaves it to be made
    remove = config.initialize_logging(log_dir=log_dir, log_name="worker_0")
    _WORKER.info("Worker 0 started")
    _WORKER.info("Received executor task 7")
    _WORKER.info("Completed executor task 7")
    _WORKER.info("All processing finished for executor task 7")
    _INTERCHANGE.info("Sending message {'block_id': '0'} to MonitoringHub")  # monitoring on
    _INTERCHANGE.info("Registered manager b'1a2b'")
    _WORKER.info("Sending message from a worker")  # another logger's phrase: kept
    _WORKER.debug("a debug line")
    _WORKER.warning("Received executor task 8 twice")  # a warning is kept
    remove()
    text = (log_dir / "worker_0.log").read_text()
    for line in ("Worker 0 started", "Registered manager", "Sending message from a worker", "task 8 twice"):
        assert line in text
    kept = level == "DEBUG"
    for line in (
        "Received executor task 7",
        "Completed executor task 7",
        "All processing finished for executor task 7",
        "to MonitoringHub",
        "a debug line",
    ):
        assert (line in text) is kept, line
    # Removed: later lines go nowhere near the file.
    _WORKER.warning("after")
    assert "after" not in (log_dir / "worker_0.log").read_text()


def test_the_submitting_process_log_is_left_to_the_session(tmp_path: Path, clean_parsl_logger) -> None:
    handlers = list(logging.getLogger("parsl").handlers)
    remove = ComponentLogging("WARNING").initialize_logging(log_dir=tmp_path, log_name="parsl")
    assert logging.getLogger("parsl").handlers == handlers
    assert list(tmp_path.iterdir()) == []
    remove()


@pytest.mark.parametrize("level", ["WARNING", "DEBUG"])
def test_parsl_log_drops_the_dataflow_per_task_lines_unless_debug(
    tmp_path: Path, clean_parsl_logger, level: str
) -> None:
    dflow = logging.getLogger("parsl.dataflow.dflow")
    handler = route_parsl_logging(str(tmp_path), level)
    try:
        dflow.info("Task 3 submitted for App bash_line, not waiting on any dependency")
        dflow.info("Standard out for task 3 will be redirected to /x.stdout")
        dflow.info("Parsl task 3 try 0 launched on executor htex with executor id 3")
        logging.getLogger("parsl.executors.high_throughput.process_worker_pool").info(
            "Received executor task 3"  # a worker's line, were a worker in this process
        )
    finally:
        unroute_parsl_logging(handler)
    text = (tmp_path / "parsl.log").read_text()
    assert "launched on executor htex with executor id 3" in text  # the line parsl.log keeps
    kept = level == "DEBUG"
    for line in ("Task 3 submitted", "Standard out for task 3", "Received executor task 3"):
        assert (line in text) is kept, line
