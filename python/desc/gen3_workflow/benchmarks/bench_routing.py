"""Benchmark: large-memory worker slots booked, with and without routing.

The demo DRP pipeline with one large-memory task (``globalTable`` asks for
``--large-mb``, 16000 MB by default; every other quantum for ctrl_bps's
2048 MB) runs on a private Slurm cluster of this machine
(`~..testing.slurm_cluster`), HighThroughput blocks on Slurm, twice per
run, alternately:

- **one executor**: every worker may get the large task, so every one of
  the ``--slots`` worker slots must be booked with the large memory;
- **routed** (``parsl_config.executors``): ``small`` with the ``--slots``
  slots of 2048 MB, and ``large`` with one slot of the large memory, which
  only the large task goes to.

Prints, per set-up, the large-memory slots booked, the large-memory
slot-seconds (slots x the run's wall time, for which the blocks are
held), the jobs those slots ran, and the wall time; then the ratios.
Needs root, Slurm and munge; says why not otherwise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..store.job_store import JobStateStore
from ..testing.slurm_cluster import SlurmCluster, slurm_unavailable_reason
from .bps_runs import demo_workdir, medians_of, submit

__all__ = ["main", "routing_figures"]

PIPELINE = Path(__file__).resolve().parents[1] / "config" / "pipelines" / "demo_drp.yaml"
LARGE_LABEL = "globalTable"
SLURM = {"provider": "Slurm", "partition": "debug", "exclusive": False, "walltime": "00:30:00"}


def _parsl_config(routed: bool, slots: int, large_mb: int) -> dict[str, Any]:
    if not routed:
        return {"executor": "HighThroughput", **SLURM, "max_workers": slots, "progress": False}
    return {
        "executor": "HighThroughput",
        **SLURM,
        "progress": False,
        "executors": [
            {"name": "small", "max_workers": slots, "worker_memory": 2048},
            {"name": "large", "max_workers": 1, "worker_memory": large_mb},
        ],
    }


def _bps_file(workdir: Path, repo: Path, name: str, routed: bool, slots: int, large_mb: int) -> Path:
    content = {
        "wmsServiceClass": "desc.gen3_workflow.ParslService",
        "pipelineYaml": str(PIPELINE),
        "operator": "bench",
        "payload": {
            "payloadName": name,
            "butlerConfig": str(repo),
            "inCollection": "DemoCam/defaults",
            "dataQuery": "instrument = 'DemoCam'",
        },
        "pipetask": {LARGE_LABEL: {"requestMemory": large_mb}},
        "parsl_config": _parsl_config(routed, slots, large_mb),
    }
    path = workdir / f"bps_{name}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def _jobs_on(submit_dir: str, executor: str | None) -> int:
    """Quanta whose last attempt ran on ``executor`` (`None`: any)."""
    with JobStateStore.open(submit_dir) as store:
        return sum(1 for _, name in store.last_executors() if executor is None or name == executor)


def routing_figures(
    repo: Path, workdir: Path, runs: int, slots: int, large_mb: int
) -> dict[str, list[dict[str, float]]]:
    """Run both set-ups ``runs`` times, alternately; figures per set-up."""
    results: dict[str, list[dict[str, float]]] = {"one executor": [], "routed": []}
    with tempfile.TemporaryDirectory(prefix="gen3wf-bench-routing-") as directory:
        cluster = SlurmCluster(directory).start()
        try:
            for run in range(runs):
                for setup in results:
                    routed = setup == "routed"
                    name = f"{'routed' if routed else 'single'}_{run}"
                    path = _bps_file(workdir, repo, name, routed, slots, large_mb)
                    code, wall, _, output = submit(path, workdir, extra_env=cluster.env)
                    said = [line for line in output.splitlines() if line.startswith("Submit dir:")]
                    submit_dir = said[0].split(":", 1)[1].strip() if said else ""
                    if code != 0 or not submit_dir:
                        tail = "\n    ".join(output.strip().splitlines()[-5:])
                        print(f"  {setup}, run {run}: bps submit failed (exit {code}):\n    {tail}")
                        continue
                    large_slots = 1 if routed else slots
                    figures = {
                        "wall": wall,
                        "large_slots": large_slots,
                        "large_slot_seconds": large_slots * wall,
                        "large_jobs": _jobs_on(submit_dir, "large" if routed else None),
                    }
                    results[setup].append(figures)
                    print(
                        f"  {setup:12} run {run}: {large_slots} slots of {large_mb} MB booked, "
                        f"{figures['large_slot_seconds']:6.0f} slot-s, ran {figures['large_jobs']} jobs; "
                        f"wall {wall:5.1f} s",
                        flush=True,
                    )
        finally:
            cluster.stop()
    return results


def print_routing_line(results: dict[str, list[dict[str, float]]], large_mb: int) -> None:
    """Medians per set-up and the routed / one-executor ratios."""
    medians = medians_of(results)
    for setup, m in medians.items():
        print(
            f"  {setup:12}: {m['large_slots']:.0f} slots of {large_mb} MB, {m['large_slot_seconds']:6.0f} "
            f"slot-s of them, running {m['large_jobs']:.0f} jobs; wall {m['wall']:5.1f} s"
        )
    if len(medians) == 2:
        one, routed = medians["one executor"], medians["routed"]
        print(
            f"  routed / one executor: large slots x{routed['large_slots'] / one['large_slots']:.2f}, "
            f"large slot-seconds x{routed['large_slot_seconds'] / one['large_slot_seconds']:.2f}, "
            f"wall x{routed['wall'] / one['wall']:.2f}"
        )


def main() -> None:
    """Run the routing figure alone."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--detectors", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4, help="worker slots of the small jobs")
    parser.add_argument("--large-mb", type=int, default=16000, help="the large task's requestMemory")
    parser.add_argument("--workdir", help="keep repository and runs here")
    args = parser.parse_args()
    if (reason := slurm_unavailable_reason()) is not None:
        print(f"Routing figure skipped: {reason}")
        return
    workdir, repo = demo_workdir(args.workdir, "gen3wf_bench_routing_", args.visits, args.detectors)
    print(
        f"Routing figure: demo DRP {args.visits}x{args.detectors}, {LARGE_LABEL} asks for "
        f"{args.large_mb} MB, {args.slots} slots, {args.runs} runs"
    )
    print_routing_line(routing_figures(repo, workdir, args.runs, args.slots, args.large_mb), args.large_mb)


if __name__ == "__main__":
    main()
