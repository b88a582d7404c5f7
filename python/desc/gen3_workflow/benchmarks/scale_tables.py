"""The tables `desc.gen3_workflow.benchmarks.bench_scale` prints: medians
across runs, what grows, ratios between sizes, restarts."""

from __future__ import annotations

import statistics
from typing import Any

__all__ = [
    "fmt",
    "median",
    "p95",
    "print_ratios",
    "print_restarts",
    "print_run",
    "print_table",
    "print_vs_parsl",
    "summary",
]


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def median(values: list[float]) -> float | None:
    """The median, or `None` of nothing."""
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians across runs (latencies pooled over runs)."""

    def med(key: str) -> float | None:
        return median([r[key] for r in runs if r.get(key) is not None])

    def pooled(key: str) -> list[float]:
        return [s for r in runs for s in r.get(key, [])]

    status, report = pooled("status_seconds"), pooled("report_seconds")
    last = runs[-1]
    # Each run's against the parsl-alone run right after it (the same noise).
    # (A run that did not finish has no rate of its own: left out.)
    versus = [
        r["run_jobs_per_second"] / r["parsl_jobs_per_second"]
        for r in runs
        if r.get("parsl_jobs_per_second") and r.get("run_jobs_per_second")
    ]
    return {
        "jobs": last["jobs"],
        "jobs_per_second": med("jobs_per_second"),
        "run_jobs_per_second": med("run_jobs_per_second"),
        "parsl_jobs_per_second": med("parsl_jobs_per_second"),
        "vs_parsl": median(versus),
        "vs_parsl_range": (min(versus), max(versus)) if versus else None,
        "plan_seconds": med("plan_seconds"),
        "rss_before_mb": med("rss_before_prepare_mb"),
        "peak_rss_mb": med("peak_rss_mb"),
        "run_rss_first_mb": med("run_rss_first_mb"),
        "run_rss_max_mb": med("run_rss_max_mb"),
        "kb_per_job": med("kb_per_job"),
        "status_median_ms": 1000 * statistics.median(status) if status else None,
        "status_p95_ms": 1000 * p95(status) if status else None,
        "report_median_ms": 1000 * statistics.median(report) if report else None,
        "report_p95_ms": 1000 * p95(report) if report else None,
        "polls": len(status),
        "final_job_seconds": med("final_job_seconds"),
        "growth": last["growth"],
        "max_markers": max(r.get("max_markers", 0) for r in runs),
    }


def print_table(title: str, rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    print(f"\n{title}")
    header = (
        f"{'executor':<15}{'jobs':>8}{'jobs/s':>8}{'plan s':>8}{'RSS0 MB':>9}{'peak MB':>9}{'KB/job':>8}"
        f"{'run RSS MB':>11}{'status ms med/p95':>19}{'report ms med/p95':>19}{'final s':>8}"
    )
    print(header)
    for (executor, _), s in rows.items():
        status = f"{fmt(s['status_median_ms'], '.0f')}/{fmt(s['status_p95_ms'], '.0f')}"
        report = f"{fmt(s['report_median_ms'], '.0f')}/{fmt(s['report_p95_ms'], '.0f')}"
        run_rss = f"{fmt(s['run_rss_first_mb'], '.0f')}-{fmt(s['run_rss_max_mb'], '.0f')}"
        print(
            f"{executor:<15}{s['jobs']:>8}{fmt(s['jobs_per_second'], '.1f'):>8}"
            f"{fmt(s['plan_seconds'], '.1f'):>8}{fmt(s['rss_before_mb'], '.0f'):>9}"
            f"{fmt(s['peak_rss_mb'], '.0f'):>9}{fmt(s['kb_per_job'], '.2f'):>8}{run_rss:>11}"
            f"{status:>19}{report:>19}"
            f"{fmt(s['final_job_seconds'], '.1f'):>8}"
        )
    print("\nWhat grows with the run (last run of each):")
    print(
        f"{'executor':<15}{'jobs':>8}{'parsl.log MB':>13}{'store MB':>9}{'runinfo MB':>11}{'logs MB':>8}"
        f"{'monitoring MB':>14}{'files':>8}{'max status/':>12}  fullest directories (entries)"
    )
    for (executor, _), s in rows.items():
        g = s["growth"]
        fullest = ", ".join(f"{d}: {n}" for d, n in g["fullest_dirs"])
        print(
            f"{executor:<15}{s['jobs']:>8}{g['parsl_log_mb']:>13.1f}{g['store_mb']:>9.1f}{g['runinfo_mb']:>11.1f}"
            f"{g['logs_mb']:>8.1f}{g['monitoring_db_mb']:>14.1f}"
            f"{g['files']:>8}{s['max_markers']:>12}  {fullest}"
        )


def print_vs_parsl(rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    """Ours against parsl alone: run only (first job handed to parsl to the
    last end) against parsl's first submit to last result; the ratio's
    median (and range) over pairs of runs made one after the other."""
    if not any(s.get("parsl_jobs_per_second") for s in rows.values()):
        return
    print("\nvs parsl alone (medians across runs; ratio per pair of runs, median and range):")
    print(
        f"{'executor':<15}{'jobs':>8}{'ours jobs/s':>12}{'run only':>10}{'parsl jobs/s':>13}"
        f"{'ratio':>7}  range"
    )
    for (executor, _), s in rows.items():
        spread = s["vs_parsl_range"]
        print(
            f"{executor:<15}{s['jobs']:>8}{fmt(s['jobs_per_second'], '.1f'):>12}"
            f"{fmt(s['run_jobs_per_second'], '.1f'):>10}{fmt(s['parsl_jobs_per_second'], '.1f'):>13}"
            f"{fmt(s['vs_parsl'], '.2f'):>7}  {f'{spread[0]:.2f}-{spread[1]:.2f}' if spread else '-'}"
        )


def print_ratios(rows: dict[tuple[str, int], dict[str, Any]]) -> None:
    print("\nRatios to the smallest size (same executor):")
    by_executor: dict[str, list[dict[str, Any]]] = {}
    for (executor, _), s in rows.items():
        by_executor.setdefault(executor, []).append(s)
    for executor, sizes in by_executor.items():
        sizes.sort(key=lambda s: s["jobs"])
        base = sizes[0]
        for s in sizes[1:]:
            parts = [f"jobs x{s['jobs'] / base['jobs']:.1f}"]
            for key, name in (
                ("jobs_per_second", "jobs/s"),
                ("kb_per_job", "KB/job"),
                ("peak_rss_mb", "peak RSS"),
                ("status_median_ms", "status median"),
            ):
                if s.get(key) and base.get(key):
                    parts.append(f"{name} x{s[key] / base[key]:.2f}")
            print(f"  {executor} {s['jobs']} vs {base['jobs']}: " + ", ".join(parts))


def print_restarts(restarts: dict[tuple[str, int], dict[str, Any]]) -> None:
    print("\nKill -9 mid-run, then restart:")
    print(
        f"{'executor':<15}{'jobs':>8}{'killed at':>10}{'peak MB killed':>15}{'first job s':>12}"
        f"{'restart s':>10}{'restart peak MB':>16}{'KB/job':>8}  states after"
    )
    for (executor, _), r in restarts.items():
        jobs = r["jobs"]
        kb = (r["restart_peak_rss_mb"] - r["restart_rss_before_mb"]) * 1024 / r["jobs"]
        print(
            f"{executor:<15}{jobs:>8}{r['killed_after']:>10}{r['killed_peak_rss_mb']:>15.0f}"
            f"{fmt(r['restart_first_job_seconds'], '.1f'):>12}{r['restart_seconds']:>10.1f}"
            f"{r['restart_peak_rss_mb']:>16.0f}{kb:>8.2f}  {r['restart_states']}"
        )


def print_run(executor: str, run: int, f: dict[str, Any]) -> None:
    status = f.get("status_seconds") or [0.0]
    run_only = f.get("run_jobs_per_second")
    print(
        f"  {executor} {f['jobs']} jobs run {run}: {f['jobs_per_second']:.1f} jobs/s "
        f"(run only {fmt(run_only, '.1f')}), peak RSS "
        f"{f['peak_rss_mb']:.0f} MB, status median {1000 * statistics.median(status):.0f} ms, "
        f"states {f['states']}",
        flush=True,
    )
