"""Benchmark: the cost of spreading a run over nodes.

The walkthrough's set-up (Work Queue, ``provider: Local``, warm in-process
execution, ``bps submit`` inside ``salloc``) runs the demo DRP pipeline on
a private Slurm cluster of this machine (`~..testing.slurm_cluster`, one
network namespace per node) twice per run, alternately: on **1 node** with
one worker of ``slots`` cores, and on **N nodes** (``nodes_per_block: N``,
``srun`` puts a worker on each) with ``slots / N`` cores per worker.  The
same job slots on the same physical cores either way, so the ratio is what
spreading costs: a warm runner per node to start and warm up, and each
task's trip to another network namespace.

Prints quanta/s (quanta over the ``bps submit`` wall time, and over the
span from the first quantum's start to the last one's end) for both, with
medians and the same-run ratio.  Needs root, Slurm and munge; says why not
otherwise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..testing.node_network import node_network_unavailable_reason
from ..testing.slurm_cluster import SlurmCluster, slurm_unavailable_reason
from .bench_floors import LABELS, quantum_times
from .bps_runs import demo_workdir, medians_of, submit

__all__ = ["main", "nodes_figures", "nodes_unavailable_reason", "print_nodes_line"]

PIPELINE = Path(__file__).resolve().parents[1] / "config" / "pipelines" / "demo_drp.yaml"


def nodes_unavailable_reason() -> str | None:
    """Why the multi-node line cannot run here, or `None`."""
    return slurm_unavailable_reason() or node_network_unavailable_reason()


def _bps_file(workdir: Path, repo: Path, name: str, nodes: int, cores: int, sleep: float) -> Path:
    content: dict[str, Any] = {
        "wmsServiceClass": "desc.gen3_workflow.ParslService",
        "pipelineYaml": str(PIPELINE),
        "operator": "bench",
        "payload": {
            "payloadName": name,
            "butlerConfig": str(repo),
            "inCollection": "DemoCam/defaults",
            "dataQuery": "instrument = 'DemoCam'",
        },
        "parsl_config": {
            "executor": "WorkQueue",
            "provider": "Local",
            "nodes_per_block": nodes,
            # Memory in proportion to cores: Work Queue packs tasks by their
            # requests (2048 MB each), so equal slots need equal memory per slot.
            "worker_options": f"--cores={cores} --memory={4096 * cores}",
            "progress": False,
        },
    }
    if sleep:
        content["extraQgraphOptions"] = " ".join(f"-c {label}:sleep={sleep}" for label in LABELS)
    path = workdir / f"bps_{name}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def nodes_figures(
    repo: Path, workdir: Path, runs: int, nodes: int = 3, slots: int = 3, sleep: float = 0.0
) -> dict[int, list[dict[str, float]]]:
    """Run the demo on 1 node and on ``nodes`` nodes, alternately, ``runs``
    times each; figures per node count (``rate``: quanta/s over the submit,
    ``span_rate``: over first start to last end; ``submit``: seconds)."""
    results: dict[int, list[dict[str, float]]] = {1: [], nodes: []}
    with tempfile.TemporaryDirectory(prefix="gen3wf-bench-nodes-") as directory:
        cluster = SlurmCluster(directory, nodes=nodes).start()
        try:
            for run in range(runs):
                for count in (1, nodes):
                    name = f"nodes{count}_{run}"
                    path = _bps_file(workdir, repo, name, count, max(slots // count, 1), sleep)
                    launcher = ("salloc", "--quiet", "-N", str(count))
                    code, wall, _, output = submit(path, workdir, launcher=launcher, extra_env=cluster.env)
                    if code != 0:
                        tail = "\n    ".join(output.strip().splitlines()[-5:])
                        print(f"  {count} node(s), run {run}: bps submit failed (exit {code}):\n    {tail}")
                        continue
                    times = quantum_times(repo, f"u/bench/{name}")
                    span = max(e for _, e in times.values()) - min(p for p, _ in times.values())
                    figures = {"submit": wall, "rate": len(times) / wall, "span_rate": len(times) / span}
                    results[count].append(figures)
                    print(
                        f"  {count} node(s) run {run}: submit {wall:6.1f} s, {figures['rate']:5.1f} quanta/s "
                        f"({figures['span_rate']:5.1f} over the quanta's span), {len(times)} quanta",
                        flush=True,
                    )
        finally:
            cluster.stop()
    return results


def print_nodes_line(results: dict[int, list[dict[str, float]]], slots: int) -> None:
    """Medians per node count and the ratio of the many-node one to one node."""
    medians = medians_of(results)
    for count, m in medians.items():
        print(
            f"  {count} node(s), {slots} job slots: {m['rate']:5.1f} quanta/s "
            f"({m['span_rate']:5.1f} over the span), submit {m['submit']:6.1f} s"
        )
    many = max(results)
    if 1 in medians and many in medians:
        one, spread = medians[1], medians[many]
        print(
            f"  {many} nodes / 1 node: quanta/s x{spread['rate'] / one['rate']:.2f}, "
            f"over the span x{spread['span_rate'] / one['span_rate']:.2f}"
        )


def main() -> None:
    """Run the multi-node line alone."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--detectors", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--slots", type=int, default=3, help="job slots in all (Work Queue cores)")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each quantum sleeps")
    parser.add_argument("--workdir", help="keep repository and runs here")
    args = parser.parse_args()
    if (reason := nodes_unavailable_reason()) is not None:
        print(f"Multi-node line skipped: {reason}")
        return
    workdir, repo = demo_workdir(args.workdir, "gen3wf_bench_nodes_", args.visits, args.detectors)
    print(f"Multi-node line: 1 node against {args.nodes}, {args.slots} job slots, {args.runs} runs")
    print_nodes_line(nodes_figures(repo, workdir, args.runs, args.nodes, args.slots, args.sleep), args.slots)


if __name__ == "__main__":
    main()
