"""Test controls shared by the demo tasks: sleeping and simulated failures.

Every demo task config derives from `DemoControlConfig`, which adds

``sleep``
    Seconds to sleep at the start of each quantum.
``failOn``
    Data-ID conditions; a quantum whose data ID matches any of them raises
    `DemoTaskError` (after sleeping), so its outputs are never written.
``failExitSignal``
    If set, a matching quantum kills its own process with this signal
    instead of raising, to simulate a crash (e.g. 9 for an OOM kill).
``failAllocateMB``
    If set, a matching quantum holds this much memory for a while instead
    of raising, then succeeds: a job that exceeds its memory request.
``failAfterWriting``
    If set (an output connection name), a matching quantum writes that
    output first and then fails: a job killed in the middle of its writes.
``onlyWhileExists`` / ``consumeSwitch``
    The faults apply only while a file exists; with ``consumeSwitch`` the
    first fault removes it, so that it happens once.

and every demo task derives from `DemoTaskBase`, which applies them.
"""

from __future__ import annotations

__all__ = [
    "DemoControlConfig",
    "DemoTaskBase",
    "DemoTaskError",
    "fail_condition_matches",
    "parse_fail_condition",
    "quantum_data_id",
]

import os
import re
import signal
import time
from collections.abc import Mapping
from typing import Any

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
from lsst.daf.butler import DataCoordinate
from lsst.pex.config.callStack import getCallStack

_CONDITION_TERM = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(?:==?|:)(\S+)$")


class DemoTaskError(RuntimeError):
    """Exception raised by a demo task for a quantum selected by ``failOn``."""


def parse_fail_condition(condition: str) -> dict[str, str] | None:
    """Parse one ``failOn`` entry into the data-ID values it requires.

    Parameters
    ----------
    condition : `str`
        ``key=value`` (or ``key:value``) terms joined by commas, whitespace or
        ``AND``, e.g. ``"visit=3,detector=2"``, ``"visit=3 AND detector=2"``
        or ``"visit:3,detector:2"``; quotes around values are ignored.
        ``"*"`` matches every quantum.  The ``:`` form exists because
        ``pipetask -c label:field=value`` rejects a value containing ``=``.

    Returns
    -------
    required : `dict` [`str`, `str`] or `None`
        Data-ID keys mapped to the string form of the required value, or
        `None` for the match-everything condition ``"*"``.

    Raises
    ------
    ValueError
        Raised if the condition is empty or a term is not ``key=value``.
    """
    text = condition.strip()
    if text == "*":
        return None
    # Drop spaces around separators so that splitting on whitespace keeps terms whole.
    text = re.sub(r"\s*(==?|:)\s*", r"\1", text)
    terms = [t for t in re.split(r"[,\s]+|\bAND\b", text, flags=re.IGNORECASE) if t]
    if not terms:
        raise ValueError(f"Empty failOn condition {condition!r}.")
    required: dict[str, str] = {}
    for term in terms:
        match = _CONDITION_TERM.match(term)
        if match is None:
            raise ValueError(
                f"Bad term {term!r} in failOn condition {condition!r}; expected key=value or key:value."
            )
        required[match.group(1)] = match.group(2).strip("'\"")
    return required


def fail_condition_matches(condition: str, data_id: Mapping[str, Any]) -> bool:
    """Test whether a data ID satisfies one ``failOn`` condition.

    Parameters
    ----------
    condition : `str`
        Condition in the syntax accepted by `parse_fail_condition`.
    data_id : `~collections.abc.Mapping` [`str`, `~typing.Any`]
        Data ID of the quantum, e.g. ``DataCoordinate.mapping``.

    Returns
    -------
    matches : `bool`
        `True` if every term matches; a key absent from the data ID does not
        match, so ``"detector=2"`` never selects a per-visit quantum.
    """
    required = parse_fail_condition(condition)
    if required is None:
        return True
    return all(key in data_id and str(data_id[key]) == value for key, value in required.items())


class _FailOnField(pexConfig.ListField):
    """`~lsst.pex.config.ListField` of `str` that wraps a bare string in a list.

    ``pipetask -c isr:failOn=visit:3,detector:2`` hands the field a plain
    string, which a stock ``ListField`` would split into characters.
    """

    def __set__(self, instance: Any, value: Any, at: Any = None, label: str = "assignment") -> None:
        if isinstance(value, str):
            value = [value]
        super().__set__(instance, value, at=getCallStack() if at is None else at, label=label)


class DemoControlConfig(pexConfig.Config):
    """Test-control fields shared by every demo task config."""

    sleep = pexConfig.Field[float](doc="Seconds to sleep at the start of each quantum.", default=0.0)
    failOn = _FailOnField(
        dtype=str,
        default=[],
        doc="Data-ID conditions (e.g. 'visit=3,detector=2' or 'visit:3,detector:2'; '*' for all); a "
        "quantum matching any entry raises DemoTaskError. A bare string is taken as a one-entry list.",
    )
    failExitSignal = pexConfig.Field[int](
        doc="If set, a quantum selected by failOn kills its process with this signal instead of raising.",
        default=None,
        optional=True,
    )
    failAllocateMB = pexConfig.Field[int](
        doc="If set, a quantum selected by failOn instead allocates and touches this many MB, holds them "
        "for failAllocateSeconds and then runs normally: a job that exceeds its memory request.",
        default=None,
        optional=True,
    )
    failAllocateSeconds = pexConfig.Field[float](
        doc="How long a failAllocateMB quantum holds its memory.", default=5.0
    )
    onlyWhileExists = pexConfig.Field[str](
        doc="If set, sleep and failOn apply only while this file exists (a sleeping quantum wakes "
        "when it is removed): a transient slowness or fault that can be fixed (by removing the file) "
        "without rebuilding the QuantumGraph, for restart tests.",
        default=None,
        optional=True,
    )

    failAfterWriting = pexConfig.Field[str](
        doc="If set, a quantum selected by failOn writes this output (a connection name) and then fails "
        "(failExitSignal or raising): a job killed after some of its writes.",
        default=None,
        optional=True,
    )
    consumeSwitch = pexConfig.Field[bool](
        doc="The first fault removes the onlyWhileExists file, so that the fault happens once.", default=False
    )

    def validate(self) -> None:
        super().validate()
        for condition in self.failOn:
            # Fail at pipeline-build time rather than in the middle of a run.
            parse_fail_condition(condition)
        if self.sleep < 0:
            raise ValueError(f"sleep must be non-negative, not {self.sleep}.")


def _sleep_while(seconds: float, switch: str | None) -> None:
    """Sleep ``seconds``, or until the file ``switch`` (if any) is removed."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if switch is not None and not os.path.exists(switch):
            return
        time.sleep(min(left, 0.2) if switch is not None else left)


class DemoTaskBase(pipeBase.PipelineTask):
    """Base class applying the ``sleep``/``failOn`` controls before running."""

    config: DemoControlConfig

    def simulate(self, data_id: Mapping[str, Any]) -> None:
        """Sleep and possibly fail as the config asks for this data ID
        (except a ``failAfterWriting`` fault, which `runQuantum` applies).

        Parameters
        ----------
        data_id : `~collections.abc.Mapping` [`str`, `~typing.Any`]
            Data ID of the quantum being run.

        Raises
        ------
        DemoTaskError
            Raised if ``data_id`` matches a ``failOn`` condition and
            ``failExitSignal`` is not set.
        """
        switch = self.config.onlyWhileExists
        if switch is not None and not os.path.exists(switch):
            return
        if self.config.sleep > 0:
            _sleep_while(self.config.sleep, switch)
        if self.config.failAfterWriting is None and (condition := self._fault(data_id)) is not None:
            self._fail(data_id, condition)

    def _fault(self, data_id: Mapping[str, Any]) -> str | None:
        """The ``failOn`` condition this data ID matches, while the switch
        file (if any) exists."""
        switch = self.config.onlyWhileExists
        if switch is not None and not os.path.exists(switch):
            return None
        return next((c for c in self.config.failOn if fail_condition_matches(c, data_id)), None)

    def _fail(self, data_id: Mapping[str, Any], condition: str) -> None:
        message = f"Simulated failure: task={self.getName()} dataId={dict(data_id)} ({condition!r})"
        self.log.warning(message)
        if self.config.consumeSwitch and self.config.onlyWhileExists:
            os.remove(self.config.onlyWhileExists)
        if self.config.failAllocateMB is not None:
            _hold_memory(self.config.failAllocateMB, self.config.failAllocateSeconds)
            return
        if self.config.failExitSignal is not None:
            signal.raise_signal(signal.Signals(self.config.failExitSignal))
        raise DemoTaskError(message)

    def runQuantum(
        self,
        butlerQC: pipeBase.QuantumContext,
        inputRefs: pipeBase.InputQuantizedConnection,
        outputRefs: pipeBase.OutputQuantizedConnection,
    ) -> None:
        # Docstring inherited.
        data_id = quantum_data_id(butlerQC).mapping
        self.simulate(data_id)
        name = self.config.failAfterWriting
        if name is not None and (condition := self._fault(data_id)) is not None:
            outputs = self.run(**butlerQC.get(inputRefs))
            butlerQC.put(getattr(outputs, name), getattr(outputRefs, name))
            self._fail(data_id, condition)
        super().runQuantum(butlerQC, inputRefs, outputRefs)


def _hold_memory(megabytes: int, seconds: float) -> None:
    """Make ``megabytes`` resident (one write per page) for ``seconds``."""
    block = bytearray(megabytes * 2**20)
    block[::4096] = b"\1" * len(range(0, len(block), 4096))
    time.sleep(seconds)
    del block


def quantum_data_id(butlerQC: pipeBase.QuantumContext) -> DataCoordinate:
    """Return the data ID of the quantum being executed.

    Parameters
    ----------
    butlerQC : `lsst.pipe.base.QuantumContext`
        Butler context of the quantum.

    Returns
    -------
    data_id : `lsst.daf.butler.DataCoordinate`
        The quantum's data ID.
    """
    data_id = butlerQC.quantum.dataId
    # Only a quantum that has not been attached to a graph can lack one.
    assert data_id is not None, "Quantum has no data ID."
    return data_id
