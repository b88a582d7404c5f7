"""The demo DRP pipeline through real ``bps submit``, for
`desc.gen3_workflow.benchmarks.bench_scale`'s ``--quanta``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..testing.null_run import kill_session
from .scale_probes import Poller, final_job_seconds, growth, quanta_span

__all__ = ["PIPELINE", "pipeline_run"]

PIPELINE = Path(__file__).resolve().parents[1] / "config" / "pipelines" / "demo_drp.yaml"


def pipeline_run(
    workdir: Path, executor: str, quanta: int, detectors: int, report_every: float
) -> dict[str, Any]:
    """The demo DRP pipeline of about ``quanta`` quanta with real ``bps
    submit``, the default execution mode; its figures."""
    from ..demo.repo import make_demo_repo
    from ..store.job_store import JobStateStore

    visits = max(1, round((quanta - 1) / (3 * detectors + 1)))
    repo = workdir / f"repo_{visits}x{detectors}"
    if not repo.exists():
        print(f"  building a demo repository of {visits} visits x {detectors} detectors ...", flush=True)
        make_demo_repo(str(repo), n_visits=visits, n_detectors=detectors)
    cwd = workdir / f"pipeline_{executor}_{time.strftime('%H%M%S')}"
    cwd.mkdir()
    content = {
        "wmsServiceClass": "desc.gen3_workflow.ParslService",
        "pipelineYaml": str(PIPELINE),
        "operator": "bench",
        "payload": {
            "payloadName": f"scale_{executor}",
            "butlerConfig": str(repo),
            "inCollection": "DemoCam/defaults",
            "dataQuery": "instrument = 'DemoCam'",
        },
        "parsl_config": {"executor": executor, "progress": False},
    }
    bps_file = cwd / "bps.yaml"
    bps_file.write_text(yaml.safe_dump(content, sort_keys=False))
    env = {**os.environ, "PWD": str(cwd), "GEN3WF_RUN_INDEX": str(workdir / "runs.txt")}
    command = [os.path.join(sys.prefix, "bin", "bps"), "--no-log-tty", "submit", str(bps_file)]
    log = cwd / "submit.log"
    start = time.monotonic()
    pollers: list[Poller] = []
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        while proc.poll() is None and not pollers:
            stores = sorted(cwd.glob("submit/**/gen3_workflow.sqlite3"))
            if stores:
                pollers.append(Poller(str(stores[0].parent), report_every, proc.pid).__enter__())
            time.sleep(0.5)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for poller in pollers:
            poller.__exit__()
        kill_session(proc.pid)
        proc.wait()
    wall = time.monotonic() - start
    stores = sorted(cwd.glob("submit/**/gen3_workflow.sqlite3"))
    if proc.returncode != 0 or not stores:
        raise RuntimeError(f"bps submit failed ({proc.returncode}):\n{log.read_text()[-2000:]}")
    submit_dir = str(stores[0].parent)
    with JobStateStore.open(submit_dir) as store:
        run = store.run()
        jobs = store.jobs()
    assert run.start_time is not None and run.end_time is not None
    seconds = run.end_time - run.start_time
    poller = pollers[0] if pollers else Poller(submit_dir, 0)
    return {
        "jobs": len(jobs),
        "seconds": seconds,
        "submit_seconds": wall,
        "jobs_per_second": len(jobs) / seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "status_seconds": poller.status_seconds,
        "report_seconds": poller.report_seconds,
        "max_markers": poller.max_markers,
        "final_job_seconds": final_job_seconds(submit_dir),
        **quanta_span(jobs, os.cpu_count() or 1),
        "states": {s: sum(1 for j in jobs if j.state.value == s) for s in {j.state.value for j in jobs}},
        "growth": growth(submit_dir),
        "submit_dir": submit_dir,
    }
