"""parsl's logs: what the plug-in keeps of them (a run's worth of lines
per job would fill a scratch directory at 10^6 jobs)."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest

from desc.gen3_workflow.execution.parsl_logging import ComponentLogging

_WORKER = logging.getLogger("parsl.executors.high_throughput.process_worker_pool")


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
    for verb in ("Received executor task 7", "Completed executor task 7"):
        _WORKER.info(verb)
    _WORKER.info("All processing finished for executor task 7")
    _WORKER.debug("a debug line")
    _WORKER.warning("Received executor task 8 twice")  # a warning is kept
    remove()
    text = (log_dir / "worker_0.log").read_text()
    assert "Worker 0 started" in text
    assert "Received executor task 8 twice" in text
    kept = level == "DEBUG"
    assert ("Received executor task 7" in text) is kept
    assert ("All processing finished for executor task 7" in text) is kept
    assert ("a debug line" in text) is kept
    # Removed: later lines go nowhere near the file.
    _WORKER.warning("after")
    assert "after" not in (log_dir / "worker_0.log").read_text()


def test_the_submitting_process_log_is_left_to_the_session(tmp_path: Path, clean_parsl_logger) -> None:
    handlers = list(logging.getLogger("parsl").handlers)
    remove = ComponentLogging("WARNING").initialize_logging(log_dir=tmp_path, log_name="parsl")
    assert logging.getLogger("parsl").handlers == handlers
    assert list(tmp_path.iterdir()) == []
    remove()
