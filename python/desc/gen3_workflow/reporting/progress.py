"""Live progress of a run: per task label done, failed, running and total,
with the rate of finishing jobs and an estimate of the time left (see
`desc.gen3_workflow.reporting.snapshot` for what is read and shown).

`ProgressReporter` shows it in one of three ways:

``tty``
    The table is redrawn in place, about once a second, when the stream is a
    terminal (``bps submit`` run by hand, ``gen3wf-watch``).
``lines``
    A block of plain lines every ``interval`` seconds, also logged at INFO by
    the ``desc.gen3_workflow.reporting.progress`` logger; written to the stream too
    unless a logging handler already shows that logger's INFO messages on the
    console (``bps --no-log-tty submit`` shows none).
``log``
    Logged only, never written to the stream: in an interactive Python
    session, where lines appearing under the prompt would be in the way
    (``ParslGraph.status()`` is the tool there).
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import IO, Any

from ..store.job_store import UNREADABLE, JobStateStore
from .snapshot import ProgressSnapshot, format_snapshot, read_snapshot

__all__ = ["TTY_REFRESH_SECONDS", "ProgressReporter"]

_LOG = logging.getLogger(__name__)

TTY_REFRESH_SECONDS = 1.0
"""Shortest time between two redraws on a terminal."""

# A report may cost at most 1/_COST_FACTOR of the reporting thread's time.
_COST_FACTOR = 20.0


def _interactive() -> bool:
    """Whether this is an interactive Python session (a prompt to keep clean)."""
    return hasattr(sys, "ps1") or bool(sys.flags.interactive) or "IPython" in sys.modules


def _logging_reaches_console(logger: logging.Logger) -> bool:
    """Whether ``logger``'s INFO messages already reach stdout or stderr."""
    if not logger.isEnabledFor(logging.INFO):
        return False
    consoles = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__) if s is not None}
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if (
                isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and handler.level <= logging.INFO
                and id(handler.stream) in consoles
            ):
                return True
        if not current.propagate:
            break
        current = current.parent
    return False


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressReporter:
    """Report a run's progress from its job-state store.

    Parameters
    ----------
    submit_dir : `str`
        The run's submit directory; the reporter reads its store through a
        read-only connection of its own, made in the calling thread.
    interval : `float`
        Seconds between reports in ``lines`` and ``log`` modes.
    stream : file-like, optional
        Where to write (default: ``sys.stderr``).
    mode : `str`, optional
        ``tty``, ``lines`` or ``log`` (see the module documentation); by
        default ``tty`` if the stream is a terminal, ``log`` in an interactive
        Python session, else ``lines``.
    clock : callable, optional
        Source of the current time (for tests).
    """

    def __init__(
        self,
        submit_dir: str,
        interval: float = 60.0,
        stream: IO[str] | None = None,
        mode: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if mode is None:
            mode = "log" if _interactive() else "tty" if _is_tty(self.stream) else "lines"
        if mode not in ("tty", "lines", "log"):
            raise ValueError(f"unknown progress mode {mode!r}")
        self.mode = mode
        self.interval = float(interval)
        self._clock = clock
        self._store: JobStateStore | None = JobStateStore.open(submit_dir)
        self._next = 0.0
        self._period = TTY_REFRESH_SECONDS if mode == "tty" else self.interval
        self._drawn = 0
        self.last: ProgressSnapshot | None = None
        """The latest snapshot reported."""

    @classmethod
    def from_settings(cls, submit_dir: str, settings: Any) -> ProgressReporter | None:
        """The reporter ``parsl_config`` asks for, or `None` if it is off.

        Parameters
        ----------
        submit_dir : `str`
            The run's submit directory.
        settings : `ParslSettings`
            Validated ``parsl_config`` (``progress``, ``progress_interval``).
        """
        if not settings.progress:
            return None
        try:
            return cls(submit_dir, settings.progress_interval)
        except UNREADABLE as exc:
            _LOG.warning("No progress reports: cannot read the store of %s (%s)", submit_dir, exc)
            return None

    def maybe_report(self) -> bool:
        """Report if the time has come; cheap otherwise.

        Returns
        -------
        reported : `bool`
            Whether a report was made.
        """
        now = self._clock()
        if self._store is None or now < self._next:
            return False
        start = time.perf_counter()
        reported = self.report(now)
        cost = time.perf_counter() - start
        self._next = now + max(self._period, _COST_FACTOR * cost)
        return reported

    def report(self, now: float | None = None) -> bool:
        """Read the store and report now.

        Parameters
        ----------
        now : `float`, optional
            The current time (default: the reporter's clock).

        Returns
        -------
        reported : `bool`
            `False` if the store could not be read (the error is logged).
        """
        if self._store is None:
            return False
        try:
            snapshot = read_snapshot(self._store, self._clock() if now is None else now)
        except sqlite3.Error as exc:
            _LOG.debug("Progress: cannot read the store: %s", exc)
            return False
        self.last = snapshot
        if self.mode == "tty":
            self._redraw(snapshot)
        else:
            lines = format_snapshot(snapshot)
            text = "\n".join(lines)
            _LOG.info("%s", text)
            if self.mode == "lines" and not _logging_reaches_console(_LOG):
                self._write(text + "\n")
        return True

    def _redraw(self, snapshot: ProgressSnapshot) -> None:
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            size = shutil.get_terminal_size()
        lines = format_snapshot(snapshot, max_rows=max(size.lines - 5, 3), columns=size.columns - 1)
        # Lines longer than the terminal would wrap and spoil the count of
        # lines to move back over.
        lines = [line[: max(size.columns - 1, 20)] for line in lines]
        prefix = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self._write(prefix + "".join(line + "\n" for line in lines))
        self._drawn = len(lines)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the run
            pass

    def close(self, final_report: bool = True) -> None:
        """Make a last report and release the store; never raises.

        Parameters
        ----------
        final_report : `bool`
            Report the state at closing time first.
        """
        if self._store is None:
            return
        try:
            if final_report:
                self.report()
        except Exception as exc:  # the run's end must not depend on a report
            _LOG.debug("Progress: last report failed: %s", exc)
        finally:
            self._store.close()
            self._store = None
