"""Write a run's plan into its store from a process of its own.

Planning 10^6 jobs is about half Python (walking ctrl_bps's GenericWorkflow,
making each job's row) and half SQLite (inserting rows, building indexes,
committing).  `PlanWriterProcess` is a `~.templates.PlanSink` that hands each
chunk of the plan, pickled, down a pipe to a child process (``python -m
desc.gen3_workflow.store.plan_process``) which writes it with
`~.plan_writer.StorePlanWriter`: on two cores, the two halves overlap.

The child commits only when told to; if the planning process stops first
(an error, a signal, even ``kill -9``), the child finds its pipe closed,
rolls the plan back, removes the store if it made it, and exits.  Pickle is
only the pipe's format between these two processes; the store keeps JSON.
Standard library only, like the rest of the store.
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import subprocess
import sys
import tempfile
from types import TracebackType
from typing import IO, Any

from ..constants import STORE_FILENAME
from ..errors import StoreWriteError
from .job_store import JobStateStore
from .records import RunInfo
from .templates import EdgeBlock, JobTemplate, PlanRow

__all__ = ["PlanWriterProcess", "main"]

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
"""The directory ``desc/`` is in, for the child's ``sys.path``."""

_CALLS = {"rows": "add_rows", "edges": "add_edges", "templates": "add_templates", "reset": "reset"}
"""Messages (besides ``commit``) and the writer's method for each (called
with the message's other items)."""

_EXIT_UNFINISHED = 3
"""The child's exit status when its pipe closed before ``commit``."""


class PlanWriterProcess:
    """A child process writing one run's plan into its store.

    Use it as a context manager; leaving it without `commit` (an exception)
    stops the child, which writes nothing.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory (the store is made there).
    name : `str`
        The run's name.
    info : `RunInfo`
        What report and restart need to know about the run.
    """

    def __init__(self, submit_dir: str, name: str, info: RunInfo) -> None:
        self._stderr = tempfile.TemporaryFile()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, submit_dir], stdin=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self._stdin: IO[bytes] = self._process.stdin  # type: ignore[assignment]
        self._send(("begin", name, submit_dir, info))

    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            pickle.dump(message, self._stdin, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError:  # the child is gone (BrokenPipeError)
            self._process.wait(timeout=60)
            raise self._error() from None

    def _error(self) -> StoreWriteError:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return StoreWriteError(
            f"writing the plan into the job-state store failed (exit status {self._process.returncode})"
            + (f": {lines[-1]}" if lines else "")
        )

    def add_rows(self, rows: list[PlanRow]) -> None:
        """Hand the next rows to the child."""
        self._send(("rows", rows))

    def add_edges(self, edges: EdgeBlock) -> None:
        """Hand more edges to the child."""
        self._send(("edges", edges))

    def add_templates(self, templates: list[JobTemplate]) -> None:
        """Hand the next templates to the child."""
        self._send(("templates", templates))

    def reset(self) -> None:
        """Tell the child to drop what it has written of the plan."""
        self._send(("reset",))

    def commit(self, timeout: float) -> None:
        """Tell the child to commit the plan, and wait for it.

        Parameters
        ----------
        timeout : `float`
            Seconds the child may take for what is left (indexes, commit).

        Raises
        ------
        StoreWriteError
            If the child failed, or did not end in time (it is killed).
        """
        self._send(("commit",))
        if not self._close_and_wait(timeout):
            raise StoreWriteError(f"writing the plan into the job-state store took over {timeout:.0f} s")
        if self._process.returncode != 0:
            raise self._error()

    def _close_and_wait(self, timeout: float) -> bool:
        """Close the child's pipe and wait for it to end; kill it if it
        takes over ``timeout`` seconds.  Whether it ended in time."""
        with contextlib.suppress(OSError):
            self._stdin.close()
        try:
            self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=60)
            return False
        return True

    def __enter__(self) -> PlanWriterProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process.poll() is None:
            self._close_and_wait(60)  # not committed: the child rolls back
        self._stderr.close()


def main() -> int:
    """The child: read the plan from standard input, write it into the
    store of the submit directory given as argument.  A store it made for
    a plan that did not end is removed."""
    # Unpickling a chunk makes 10^4 rows of tuples; the cyclic collector's
    # passes over them were 3/4 of the unpickling, and nothing here makes a
    # reference cycle.
    gc.disable()
    stream = sys.stdin.buffer
    path = os.path.join(sys.argv[1], STORE_FILENAME)
    made = not os.path.exists(path)
    committed = False
    try:
        with JobStateStore(path, writable=True) as store:
            _, name, submit_dir, info = pickle.load(stream)
            writer = store.plan_writer(name, submit_dir, info)
            try:
                while (message := _next(stream)) is not None and message[0] != "commit":
                    getattr(writer, _CALLS[message[0]])(*message[1:])
            except BaseException:
                writer.rollback()
                raise
            if message is None:
                writer.rollback()
                print("planning stopped before the plan's end: nothing written", file=sys.stderr)
                return _EXIT_UNFINISHED
            writer.commit()
            committed = True
            return 0
    finally:
        if made and not committed:
            for suffix in ("", "-journal", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path + suffix)


def _next(stream: IO[bytes]) -> tuple[Any, ...] | None:
    """The next message, `None` at the end of the stream."""
    try:
        return pickle.load(stream)
    except EOFError:
        return None


if __name__ == "__main__":
    sys.exit(main())
