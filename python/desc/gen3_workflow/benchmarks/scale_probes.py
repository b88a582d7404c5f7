"""What `~.bench_scale` measures of a run while it goes and once it is over:
status and report latency, the submitting process's RSS, what grew in the
submit directory, the final job's time, per-quantum figures."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["Poller", "final_job_seconds", "growth", "quanta_span", "rss_mb", "run_only"]


class Poller:
    """From a thread of this process, once a second while a run goes: time
    `ParslGraph.status` (and now and then ``bps report --id``), count the
    jobs done and the ``status/`` markers, sample the submitting process's
    RSS."""

    def __init__(
        self, submit_dir: str, report_every: float, pid: int | None = None, period: float = 1.0
    ) -> None:
        self.submit_dir = submit_dir
        self.pid = pid
        self.rss_mb: list[float] = []
        """The submitting process's RSS while the run goes (after planning)."""
        self.report_every = report_every
        self.period = period
        self.status_seconds: list[float] = []
        self.report_seconds: list[float] = []
        self.done = 0
        self.max_markers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-scale-poller", daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        from lsst.ctrl.bps import BpsConfig

        from ..parsl_graph import ParslGraph
        from ..reporting.bps_report import detailed_report
        from ..settings.parsl_section import ParslSettings
        from ..store.job_store import UNREADABLE, JobStateStore
        from ..store.records import RunState

        graph = ParslGraph(self.submit_dir, BpsConfig({}), ParslSettings())
        next_report = time.monotonic() + self.report_every
        while not self._stop.wait(self.period):
            try:
                with JobStateStore.open(self.submit_dir) as store:
                    if store.run().state != RunState.RUNNING:
                        continue  # still planning, or over
                start = time.perf_counter()
                counts = graph.status(file=None)
                self.status_seconds.append(time.perf_counter() - start)
                self.done = sum(by_state.get("exec_done", 0) for by_state in counts.values())
                if (rss := rss_mb(self.pid)) is not None:
                    self.rss_mb.append(rss)
                if self.report_every and time.monotonic() >= next_report:
                    start = time.perf_counter()
                    detailed_report(self.submit_dir)
                    self.report_seconds.append(time.perf_counter() - start)
                    next_report = time.monotonic() + self.report_every
            except UNREADABLE:
                continue
            with contextlib.suppress(FileNotFoundError):
                self.max_markers = max(self.max_markers, len(os.listdir(Path(self.submit_dir, "status"))))


def rss_mb(pid: int | None) -> float | None:
    """The current RSS of process ``pid`` (MB), if it is there."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def growth(submit_dir: str) -> dict[str, Any]:
    """What grew with the run: file sizes and the fullest directories."""
    root = Path(submit_dir)
    per_dir: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        per_dir[os.path.relpath(dirpath, root)] = len(filenames) + len(dirnames)
    fullest = sorted(per_dir.items(), key=lambda item: -item[1])[:3]

    def mb(name: str) -> float:
        path = root / name
        return path.stat().st_size / 1e6 if path.exists() else 0.0

    runinfo = sum(p.stat().st_size for p in (root / "parsl_runinfo").rglob("*") if p.is_file())
    logs = sum(p.stat().st_size for p in (root / "logs").rglob("*") if p.is_file())
    return {
        "parsl_log_mb": mb("parsl.log"),
        "store_mb": mb("gen3_workflow.sqlite3") + mb("gen3_workflow.sqlite3-wal"),
        "runinfo_mb": runinfo / 1e6,
        "logs_mb": logs / 1e6,
        "monitoring_db_mb": sum(p.stat().st_size for p in root.rglob("monitoring.db")) / 1e6,
        "fullest_dirs": fullest,
        "files": sum(per_dir.values()),
    }


def final_job_seconds(submit_dir: str) -> float | None:
    from ..store.job_store import JobStateStore
    from ..store.records import JobKind

    with JobStateStore.open(submit_dir) as store:
        finals = store.jobs(kind=JobKind.FINAL)
    times = [j.t_end - (j.t_launched or j.t_running or j.t_end) for j in finals if j.t_end]
    return max(times) if times else None


def run_only(submit_dir: str) -> dict[str, float | None]:
    """The quantum jobs' run alone, from the store: seconds from the first
    one handed to parsl to the last one's end, and quanta per second over
    that (what `~.parsl_alone` times: first submit to last result; not
    planning, parsl's start and shutdown, the init and final jobs)."""
    import sqlite3

    from ..constants import STORE_FILENAME
    from ..store.records import JobKind

    db = sqlite3.connect(f"file:{os.path.join(submit_dir, STORE_FILENAME)}?mode=ro", uri=True)
    try:
        count, first, last = db.execute(
            "SELECT COUNT(*), MIN(t_launched), MAX(t_end) FROM jobs WHERE kind = ?", (JobKind.QUANTUM.value,)
        ).fetchone()
    finally:
        db.close()
    if not count or first is None or last is None or last <= first:
        return {"run_seconds": None, "run_jobs_per_second": None}
    return {"run_seconds": last - first, "run_jobs_per_second": count / (last - first)}


def quanta_span(jobs: list[Any], cores: int) -> dict[str, float | None]:
    """Per-quantum figures of a finished pipeline run from its job records:
    the quanta's span (first start to last end), core-ms per quantum over
    ``cores`` cores, and how long after the init job's end the first
    quantum started."""
    from ..store.records import JobKind

    quanta = [j for j in jobs if j.kind == JobKind.QUANTUM and j.t_end is not None]
    starts = [t for j in quanta if (t := j.t_running or j.t_launched) is not None]
    if not quanta or not starts:
        return {"quanta_span_seconds": None, "core_ms_per_quantum": None, "init_to_first_seconds": None}
    span = max(j.t_end for j in quanta) - min(starts)
    init_ends = [j.t_end for j in jobs if j.kind == JobKind.INIT and j.t_end is not None]
    return {
        "quanta_span_seconds": span,
        "core_ms_per_quantum": 1000 * span * cores / len(quanta),
        "init_to_first_seconds": min(starts) - max(init_ends) if init_ends else None,
    }
