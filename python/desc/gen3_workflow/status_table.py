"""The seed's status table: one row per task label, one column per state."""

from __future__ import annotations

from collections.abc import Mapping

from .state_store import JobState

__all__ = ["format_status_table"]


def format_status_table(counts: Mapping[str, Mapping[JobState, int]]) -> str:
    """Render job counts per label and state.

    Parameters
    ----------
    counts : `~collections.abc.Mapping`
        Label -> state -> count, labels in pipeline order.

    Returns
    -------
    table : `str`
        ``task_type pending launched running exec_done failed dep_fail total``.
    """
    width = max([len("task_type"), *(len(label) for label in counts)])
    header = f"{'task_type':<{width}}" + "".join(f"{s.value:>11}" for s in JobState) + f"{'total':>11}"
    lines = [header]
    for label, by_state in counts.items():
        cells = "".join(f"{by_state.get(s, 0):>11}" for s in JobState)
        lines.append(f"{label:<{width}}{cells}{sum(by_state.values()):>11}")
    return "\n".join(lines)
