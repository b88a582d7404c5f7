"""What each executor of a run with several runs, in words: for ``bps
ping``, ``bps report``, the progress table and ``ParslGraph.status()``.

Everything here reads the settings as the run's record keeps them
(``parsl_config``, `ParslSettings.as_dict
<desc.gen3_workflow.settings.parsl_section.ParslSettings.as_dict>`), so that
reports need neither parsl nor the run's bps file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["executor_descriptions", "executor_lines", "executors_cell"]


def executor_descriptions(parsl_config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each executor's name and what it takes, in the order written
    (``HighThroughput on Slurm, requests 2049-8192 MB, labels makeWarp``);
    empty for a run with one executor."""
    entries = list(parsl_config.get("executors") or [])
    if len(entries) < 2:
        return []
    # The memory range of each: above the next smaller worker_memory.
    limits = sorted({int(e["worker_memory"]) for e in entries if e.get("worker_memory")})
    described = []
    for entry in entries:
        kind = entry.get("executor", "?")
        where = kind if kind == "ThreadPool" else f"{kind} on {entry.get('provider', '?')}"
        top = entry.get("worker_memory")
        if top:
            below = [limit for limit in limits if limit < top]
            memory = f"requests {below[-1] + 1}-{top} MB" if below else f"requests up to {top} MB"
        else:
            memory = f"requests over {limits[-1]} MB" if limits else "any request"
        labels = entry.get("labels") or []
        pinned = f", labels {', '.join(labels)}" if labels else ""
        described.append((str(entry.get("name")), f"{where}, {memory}{pinned}"))
    return described


def executor_lines(parsl_config: Mapping[str, Any], label_executors: Mapping[str, list[str]]) -> list[str]:
    """One line per executor of a run with several: what it takes and the
    task labels whose jobs it ran (``EXECUTOR small (ThreadPool, requests
    up to 2048 MB): isr, characterizeImage``)."""
    ran: dict[str, list[str]] = {}
    for label, names in label_executors.items():
        for name in names:
            ran.setdefault(name, []).append(label)
    return [
        f"EXECUTOR {name} ({what}): {', '.join(ran.get(name, [])) or 'no job yet'}"
        for name, what in executor_descriptions(parsl_config)
    ]


def executors_cell(names: list[str] | None) -> str:
    """The executors column of a task label's row: where its jobs went."""
    return ",".join(names or []) or "-"
