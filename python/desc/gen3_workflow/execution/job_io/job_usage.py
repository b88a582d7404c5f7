"""What a job's payload used: CPU time and peak resident memory, measured
where the payload runs, at no cost to it.

Every way a job runs records them in its exit record (`~.markers`):

- under the supervisor: the kernel's account of the supervisor's children
  once the payload has ended (`children_usage`);
- behind the bash-builtin wrapper: bash's ``times`` after the payload, CPU
  time only (`parse_bash_times`);
- in an in-process executor, which runs several quanta one after the other:
  its own CPU time before and after each quantum, and its peak resident
  memory reset before each (`QuantumUsage`, Linux's ``clear_refs``).

So the summary knows them on every executor without parsl's resource
monitoring, which starts a monitor process per task (x0.09 the throughput of
short HighThroughput jobs, doc/scale.md).  Standard library only (workers
import it).
"""

from __future__ import annotations

import contextlib
import resource

__all__ = ["QuantumUsage", "children_usage", "figures", "parse_bash_times"]


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def figures(usage: resource.struct_rusage) -> tuple[float, int]:
    """CPU seconds (user + system, to the millisecond) and peak resident
    memory (bytes; Linux gives ``ru_maxrss`` in KiB) of a resource usage."""
    return round(_cpu(usage), 3), usage.ru_maxrss * 1024


def children_usage() -> tuple[float, int]:
    """`figures` of this process's ended children (the peak is the
    largest child's)."""
    return figures(resource.getrusage(resource.RUSAGE_CHILDREN))


def _minutes_seconds(word: str) -> float:
    """``1m2.500s`` (bash's ``times``) in seconds."""
    minutes, _, seconds = word.rstrip("s").partition("m")
    return 60 * float(minutes) + float(seconds.replace(",", "."))


def parse_bash_times(text: str) -> float | None:
    """The children's CPU seconds from bash's ``times`` output (its second
    line: children's user and system time), `None` if it is not that."""
    lines = text.strip().splitlines()
    if len(lines) != 2:
        return None
    try:
        return sum(_minutes_seconds(word) for word in lines[1].split())
    except ValueError:
        return None


class QuantumUsage:
    """Measures one quantum run in this process: create it just before the
    quantum, call `end` just after."""

    def __init__(self) -> None:
        # The peak resident memory this process reached so far is forgotten
        # (Linux 4.0 and later; elsewhere the peak is the process's).
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        self._cpu = self._total_cpu()

    @staticmethod
    def _total_cpu() -> float:
        return _cpu(resource.getrusage(resource.RUSAGE_SELF)) + _cpu(
            resource.getrusage(resource.RUSAGE_CHILDREN)
        )

    def end(self) -> tuple[float, int]:
        """CPU seconds the quantum took (its waited-for subprocesses
        included), and this process's peak resident memory (bytes) since
        the quantum started."""
        cpu = self._total_cpu() - self._cpu
        return round(cpu, 3), figures(resource.getrusage(resource.RUSAGE_SELF))[1]
