"""Benchmark ``bps submit`` in process and in_process modes and ctrl_bps_parsl.

Builds a demo repository (default 10 visits x 20 detectors: 611 quanta of the
demo DRP pipeline), then runs the modes alternately ``--runs`` times, each in
its own output collection, with HighThroughput workers on this machine's
cores (ctrl_bps_parsl: its ``Local`` site, same cores).  Per run it measures

- ``submit``: wall time of the ``bps submit`` subprocess;
- ``span``: first quantum start to last quantum end;
- per-quantum ``overhead`` (median, p95): ``ready -> start`` of each quantum,
  i.e. (ready -> done) minus the quantum's own time.  A quantum's own time is
  ``prepUtc -> endUtc`` of its task metadata (``SingleQuantumExecutor``'s
  own measurement, the same in every mode).  ``ready`` is the later of its
  parents' ends and the moment an execution slot (one per core) freed up:
  quanta are replayed in start order over ``cores`` slots, each taking the
  slot that became free last before it started.  Process start-up, graph
  reading, butler set-up and parsl dispatch all land in the overhead;
- ``rss``: peak RSS of the ``bps submit`` process tree (``wait4``);
- ``per_quantum``: core-seconds per quantum, span x cores / quanta.

Modes: HighThroughput in ``process`` and ``in_process`` execution,
lsst-ctrl-bps-parsl, and the walkthrough's Work Queue set-up in both
(``wq_process``, ``wq_in_process``).  With ``--floors`` it also measures
the floors of `bench_floors`: the same quanta run by the middleware alone
in one warm process (its per-quantum cost, and ours over it), and an empty
Work Queue task of parsl.  Then the multi-node line (`bench_nodes`, unless
``--no-nodes``): the walkthrough's Work Queue set-up on 1 node against 3
nodes of a private Slurm cluster on this machine, same job slots.

and prints medians across runs and same-run ratios.  Then it times planning
(GenericWorkflow -> store rows -> SQLite) of synthetic workflows
(``--plan-jobs``), against its floors, with cProfile's top entries
(`bench_plan`, which also runs alone with more runs per size).
Never a pass/fail test: figures on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from .bench_floors import LABELS, middleware_floor, quantum_times, work_queue_task_floors
from .bench_nodes import nodes_figures, nodes_unavailable_reason, print_nodes_line
from .bench_plan import plan_figures
from .bps_runs import submit

__all__ = ["MODES", "bps_file", "main", "overheads", "run_modes"]

MODES = ("process", "in_process", "ctrl_bps_parsl", "wq_process", "wq_in_process")
"""HighThroughput in each execution mode, lsst-ctrl-bps-parsl, Work Queue in each mode."""
PIPELINE = Path(__file__).resolve().parents[1] / "config" / "pipelines" / "demo_drp.yaml"


def bps_file(workdir: Path, repo: Path, mode: str, run: int, cores: int, sleep: float) -> Path:
    """The bps file of one benchmark run."""
    content: dict[str, Any] = {
        "pipelineYaml": str(PIPELINE),
        "operator": "bench",
        "payload": {
            "payloadName": f"{mode}_{run}",
            "butlerConfig": str(repo),
            "inCollection": "DemoCam/defaults",
            "dataQuery": "instrument = 'DemoCam'",
        },
    }
    if sleep:
        content["extraQgraphOptions"] = " ".join(f"-c {label}:sleep={sleep}" for label in LABELS)
    if mode == "ctrl_bps_parsl":
        content["wmsServiceClass"] = "lsst.ctrl.bps.parsl.ParslService"
        content["computeSite"] = "local"
        content["site"] = {"local": {"class": "lsst.ctrl.bps.parsl.sites.Local", "cores": cores}}
    elif mode.startswith("wq_"):  # the walkthrough's set-up
        content["wmsServiceClass"] = "desc.gen3_workflow.ParslService"
        content["parsl_config"] = {
            "executor": "WorkQueue",
            "provider": "Local",
            "worker_options": f"--cores={cores} --memory=8000",
            "execution": mode.removeprefix("wq_"),
            "progress": False,
        }
    else:
        content["wmsServiceClass"] = "desc.gen3_workflow.ParslService"
        content["parsl_config"] = {
            "executor": "HighThroughput",
            "max_workers": cores,
            "execution": mode,
            "progress": False,
        }
    path = workdir / f"bps_{mode}_{run}.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def overheads(times: dict[tuple[str, Any, Any], tuple[float, float]], cores: int) -> list[float]:
    """Per-quantum ready -> start, replaying the quanta over ``cores`` slots."""
    keys = sorted(times, key=lambda k: times[k][0])
    calibrate_by_visit: dict[Any, list] = {}
    for key in keys:
        if key[0] == "calibrate":
            calibrate_by_visit.setdefault(key[1], []).append(key)
    t0 = times[keys[0]][0]
    slots = [t0] * cores
    result = []
    for key in keys:
        prep, end = times[key]
        label, visit, detector = key
        if label == "visitSummary":
            parents = calibrate_by_visit.get(visit, [])
        elif label == "globalTable":
            parents = [k for k in keys if k[0] == "visitSummary"]
        elif label != LABELS[0]:
            parents = [(LABELS[LABELS.index(label) - 1], visit, detector)]
        else:
            parents = []
        free = [i for i, t in enumerate(slots) if t <= prep]
        slot = max(free, key=lambda i: slots[i]) if free else min(range(cores), key=lambda i: slots[i])
        ready = max([slots[slot], *(times[p][1] for p in parents if p in times)])
        result.append(max(0.0, prep - ready))
        slots[slot] = end
    return result


def _p95(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.95 * len(values)))]


def run_modes(args: argparse.Namespace) -> None:
    from ..demo.repo import make_demo_repo
    from ..host.environment import prepare_environment

    # ctrl_bps's default commands call ${CTRL_MPEXEC_DIR}/bin/pipetask; this
    # plug-in sets it for its jobs, ctrl_bps_parsl does not.
    prepare_environment()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="gen3wf_bench_")).resolve()
    repo = workdir / "repo"
    n_quanta = 3 * args.visits * args.detectors + args.visits + 1
    if not repo.exists():
        make_demo_repo(str(repo), n_visits=args.visits, n_detectors=args.detectors)
    print(f"Repository {repo}: {n_quanta} quanta, sleep {args.sleep} s, {args.cores} cores, {args.runs} runs")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in args.modes}
    for run in range(args.runs):
        for mode in args.modes:
            path = bps_file(workdir, repo, mode, run, args.cores, args.sleep)
            venv = args.official_venv if mode == "ctrl_bps_parsl" else sys.prefix
            code, wall, rss, output = submit(path, workdir, venv)
            if code != 0:
                tail = "\n    ".join(output.strip().splitlines()[-5:])
                print(f"  {mode} run {run}: bps submit failed (exit {code}); skipped:\n    {tail}")
                continue
            times = quantum_times(repo, f"u/bench/{mode}_{run}")
            extra = overheads(times, args.cores)
            figures = {
                "submit": wall,
                "span": max(e for _, e in times.values()) - min(p for p, _ in times.values()),
                "overhead_median": statistics.median(extra),
                "overhead_p95": _p95(extra),
                "rss": rss,
                "quanta": len(times),
            }
            figures["per_quantum"] = figures["span"] * args.cores / len(times)
            results[mode].append(figures)
            print(
                f"  {mode:>15} run {run}: submit {wall:7.1f} s, span {figures['span']:7.1f} s, overhead "
                f"median {figures['overhead_median'] * 1000:7.0f} ms p95 "
                f"{figures['overhead_p95'] * 1000:7.0f} ms, peak RSS {rss:6.0f} MB, {len(times)} quanta, "
                f"{figures['per_quantum'] * 1000:5.0f} core-ms/quantum",
                flush=True,
            )
    print("\nMedians across runs:")
    medians = {}
    for mode, runs in results.items():
        if not runs:
            print(f"  {mode:>15}: no successful run")
            continue
        medians[mode] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        m = medians[mode]
        print(
            f"  {mode:>15}: submit {m['submit']:7.1f} s, span {m['span']:7.1f} s, overhead median "
            f"{m['overhead_median'] * 1000:7.0f} ms p95 {m['overhead_p95'] * 1000:7.0f} ms, peak RSS "
            f"{m['rss']:6.0f} MB, {m['per_quantum'] * 1000:5.0f} core-ms/quantum"
        )
    for other, ours in (
        ("process", "in_process"),
        ("ctrl_bps_parsl", "in_process"),
        ("wq_process", "wq_in_process"),
    ):
        if ours in medians and other in medians:
            a, b = medians[other], medians[ours]
            print(
                f"  {other} / {ours}: submit x{a['submit'] / b['submit']:.1f}, span "
                f"x{a['span'] / b['span']:.1f}, "
                f"overhead x{a['overhead_median'] / max(b['overhead_median'], 1e-6):.1f}"
            )
    if args.floors:
        _print_floors(args, workdir, repo, medians)
    if args.nodes:
        print("\nMulti-node line (bench_nodes): the walkthrough's Work Queue set-up on 1 node against 3")
        if (reason := nodes_unavailable_reason()) is not None:
            print(f"  skipped: {reason}")
        else:
            print_nodes_line(nodes_figures(repo, workdir, args.runs, nodes=3, slots=3, sleep=args.sleep), 3)


def _print_floors(
    args: argparse.Namespace, workdir: Path, repo: Path, medians: dict[str, dict[str, float]]
) -> None:
    """The floors of `bench_floors`, and our per-quantum cost over them."""
    print("\nFloors:")
    floors = [
        middleware_floor(repo, PIPELINE, f"u/bench/floor_{run}", workdir)["per_quantum"]
        for run in range(args.runs)
    ]
    floor = statistics.median(floors)
    print(
        f"  the middleware alone, one warm process: {floor * 1000:.0f} core-ms/quantum "
        f"(median of {len(floors)})"
    )
    for mode, m in medians.items():
        print(
            f"  {mode:>15}: {m['per_quantum'] * 1000:5.0f} core-ms/quantum, "
            f"x{m['per_quantum'] / floor:.2f} the floor"
        )
    wq = work_queue_task_floors(60, args.cores, args.runs)
    print(
        f"  empty Work Queue task: parsl's script {wq['parsl'] * 1000:.0f} core-ms, the plug-in's start "
        f"{wq['wq_task'] * 1000:.0f} core-ms"
    )
    if "wq_in_process" in medians:
        extra = medians["wq_in_process"]["per_quantum"] - floor
        print(
            f"  wq_in_process over the middleware floor: {extra * 1000:.0f} core-ms/quantum; over parsl's "
            f"empty task plus the floor: {(extra - wq['parsl']) * 1000:+.0f} core-ms"
        )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--visits", type=int, default=10)
    parser.add_argument("--detectors", type=int, default=20)
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each quantum sleeps")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--workdir", help="keep repository and runs here (default: a new temporary dir)")
    parser.add_argument(
        "--plan-jobs", type=int, nargs="*", default=[100_000], help="synthetic workflow sizes"
    )
    parser.add_argument("--profile-top", type=int, default=12)
    parser.add_argument(
        "--official-venv",
        default=os.environ.get("GEN3WF_OFFICIAL_VENV", sys.prefix),
        help="virtual environment holding lsst-ctrl-bps-parsl (it needs parsl <= 2025.12.1, "
        "older than this plug-in's; `make bench` builds .venv-official)",
    )
    parser.add_argument("--skip-runs", action="store_true", help="only the planning figures")
    parser.add_argument(
        "--no-nodes",
        dest="nodes",
        action="store_false",
        help="skip the multi-node line (1 node against 3 of a private Slurm cluster; needs root)",
    )
    parser.add_argument(
        "--floors", action="store_true", help="also the middleware's and Work Queue's floors (bench_floors)"
    )
    args = parser.parse_args()
    # SIGTERM (a pkill) unwinds like Ctrl-C, so that each run's session is killed.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    if not args.skip_runs:
        run_modes(args)
    for n_jobs in args.plan_jobs:
        plan_figures(n_jobs, runs=1, top=args.profile_top)


if __name__ == "__main__":
    main()
