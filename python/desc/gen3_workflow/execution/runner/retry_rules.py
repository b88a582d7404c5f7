"""ctrl_bps's rules for trying a failed job again, and with how much memory.

Every job carries its own rules from the GenericWorkflow (``numberOfRetries``,
``retryUnlessExit``, ``memoryMultiplier``, ``requestMemoryMax`` and
``memoryLimit``, per label where the bps file sets ``pipetask.<label>.…``),
as ctrl_bps_htcondor reads them:

- a job is tried again up to its ``numberOfRetries`` times (in one
  submission; ``bps restart`` starts counting again), unless the exit code
  of its payload is in ``retryUnlessExit``; ``parsl_config.retries``, when
  it is set, replaces every job's ``numberOfRetries``;
- a job stopped for using more memory than it asked for is tried again with
  ``requestMemory × memoryMultiplier^n`` MB after its n-th memory failure,
  at most ``requestMemoryMax`` / ``memoryLimit`` (and what one node has); a
  job that already asked for that much is not tried again;
- a job killed by a signal, or lost with its worker, has no payload exit
  code to match ``retryUnlessExit``: it is tried again.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ...store.records import JobRecord

__all__ = ["RetryBook", "RetryDecision", "decide"]


@dataclasses.dataclass(frozen=True)
class RetryDecision:
    """Whether a failed job is tried again."""

    retry: bool
    memory: int | None = None
    """The next attempt's memory request (MB), where it changes."""
    why_not: str = ""
    """Why the job is not tried again (for its message), if it is not."""


def decide(
    job: JobRecord,
    exit_code: int | None,
    exceeded: str | None,
    tries: int,
    memory_failures: int,
    retries_override: int | None,
    node_memory: int | None = None,
) -> RetryDecision:
    """Apply the job's rules to one failed attempt.

    Parameters
    ----------
    job : `JobRecord`
        The job, with its rules among its resources.
    exit_code : `int` or `None`
        The payload's exit code (`None` if the job was lost).
    exceeded : `str` or `None`
        The resource the job was stopped for using too much of
        (``memory``, ``walltime``), if any.
    tries : `int`
        Attempts of the job in this submission, this one included.
    memory_failures : `int`
        Memory failures of the job in this submission, this one included.
    retries_override : `int` or `None`
        ``parsl_config.retries``, if set.
    node_memory : `int` or `None`
        The most memory (MB) one node can give a job, if known.

    Returns
    -------
    decision : `RetryDecision`
        Whether to try again, and with how much memory.
    """
    resources = job.resources
    allowed = retries_override if retries_override is not None else int(resources.get("retries") or 0)
    if tries > allowed:
        source = "parsl_config.retries" if retries_override is not None else "numberOfRetries"
        return RetryDecision(False, why_not=f"{allowed} retries allowed ({source})")
    if exceeded == "memory":
        return _more_memory(resources, memory_failures, node_memory)
    unless = resources.get("retry_unless_exit") or []
    if exceeded is None and exit_code is not None and exit_code in unless:
        return RetryDecision(False, why_not=f"exit code {exit_code} is not retried (retryUnlessExit)")
    return RetryDecision(True)


def _more_memory(resources: dict[str, Any], failures: int, node_memory: int | None) -> RetryDecision:
    request = resources.get("memory")
    multiplier = resources.get("memory_multiplier")
    if not request or not multiplier:
        # No scaling asked for: the same request may fit beside other jobs.
        return RetryDecision(True)
    caps = [int(v) for v in (resources.get("memory_max"), node_memory) if v]
    cap = min(caps) if caps else None
    current = int(math.ceil(request * multiplier ** (failures - 1)))
    wanted = int(math.ceil(request * multiplier**failures))
    if cap is not None:
        if current >= cap:
            return RetryDecision(
                False,
                why_not=f"its memory request is already at the limit of {cap} MB (requestMemoryMax, "
                "memoryLimit, a node's memory or the largest executor's worker_memory)",
            )
        wanted = min(wanted, cap)
    return RetryDecision(True, memory=wanted)


class RetryBook:
    """What one submission has tried of each job it has not finished with:
    attempts, memory failures and the next attempt's memory request.

    Parameters
    ----------
    retries_override : `int` or `None`
        ``parsl_config.retries``, if set.
    node_memory : `int` or `None`
        The most memory (MB) one node can give a job, if known.
    """

    def __init__(self, retries_override: int | None, node_memory: int | None) -> None:
        self.retries_override = retries_override
        self.node_memory = node_memory
        self._tries: dict[int, int] = {}
        self._memory_failures: dict[int, int] = {}
        self._memory: dict[int, int] = {}
        self._numbers: dict[int, int] = {}

    def memory(self, job: JobRecord) -> int | None:
        """The memory request (MB) of the job's next attempt."""
        return self._memory.get(job.seq) or job.resources.get("memory")

    def started(self, job: JobRecord) -> int:
        """An attempt of the job is handed to parsl: return its number.

        Counted here, not from the store: a retry may start before the
        store has recorded the attempt before it.
        """
        self._tries[job.seq] = self._tries.get(job.seq, 0) + 1
        number = max(job.attempts, self._numbers.get(job.seq, 0)) + 1
        self._numbers[job.seq] = number
        return number

    def failed(self, job: JobRecord, exit_code: int | None, exceeded: str | None) -> RetryDecision:
        """An attempt failed: whether to try again (see `decide`), with the
        memory request raised if it ran out of memory."""
        if exceeded == "memory":
            self._memory_failures[job.seq] = self._memory_failures.get(job.seq, 0) + 1
        decision = decide(
            job,
            exit_code,
            exceeded,
            self._tries.get(job.seq, 1),
            self._memory_failures.get(job.seq, 0),
            self.retries_override,
            self.node_memory,
        )
        if decision.retry and decision.memory:
            self._memory[job.seq] = decision.memory
        return decision

    def forget(self, seq: int) -> None:
        """The job has ended (succeeded, or failed for good)."""
        for counters in (self._tries, self._memory_failures, self._memory, self._numbers):
            counters.pop(seq, None)
