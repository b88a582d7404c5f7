"""What the node runner's access checks cost per job, against a job's trip.

``python -m desc.gen3_workflow.benchmarks.bench_runner_check [--jobs 200]``
times, on a request shaped like a demo quantum's (``pipetask run-qbb`` with
its environment and log files):

- the runner's side: the peer's credentials of a connected Unix socket, the
  request's signature checked and its JSON read, its log files placed;
  against reading the JSON alone (what the runner did before the checks);
- the task's side: the run's key looked up and the request signed; against
  writing the JSON alone;
- a whole trip of a trivial job (``/bin/true``) through a real node runner,
  as a Work Queue task makes it, for scale.

Medians of ``--repeat`` rounds, in microseconds per job.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from ..execution.job_io import run_secrets
from ..execution.job_io.processes import kill_run_processes
from ..execution.warm.protocol import decode_request, encode_request, misplaced_logs, peer
from ..store.records import JobCommand

__all__ = ["main"]


def _request(submit_dir: str) -> dict[str, object]:
    """A request as a demo quantum's task sends it."""
    qg = os.path.join(submit_dir, "u_user_demo_drp_20261206T120000Z.qg")
    argv = ["pipetask", "--long-log", "--log-level=VERBOSE", "run-qbb", "/repo/main", qg]
    argv += ["--qgraph-node-id", str(uuid.uuid4())]
    env = [["OMP_NUM_THREADS", "1"], ["GEN3WF_RUN_DIR", submit_dir]]
    logs = os.path.join(submit_dir, "logs", "characterizeImage", "visit_1", "detector_2")
    return {
        "argv": argv,
        "env": env,
        "stdout": f"{logs}/characterizeImage_1_2.out",
        "stderr": f"{logs}/characterizeImage_1_2.err",
        "seq": 12345,
        "memory": 2048,
        "walltime": None,
        "cwd": "/tmp/worker-1000-1234/t.17",
    }


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - start) / calls * 1e6


def _trip_us(submit_dir: str, jobs: int) -> float:
    """A trivial job's trip through a real node runner (microseconds)."""
    from ..execution.warm.in_process import run_quantum_job

    command = JobCommand(("/bin/true",), ())
    logs = os.path.join(submit_dir, "logs")
    run_quantum_job(command, f"{logs}/0.out", f"{logs}/0.err", submit_dir, 0, node_runner=True)  # start it
    start = time.perf_counter()
    for seq in range(1, jobs + 1):
        run_quantum_job(command, f"{logs}/{seq}.out", f"{logs}/{seq}.err", submit_dir, seq, node_runner=True)
    return (time.perf_counter() - start) / jobs * 1e6


def main() -> None:
    """Print the figures (see the module documentation)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="checks timed per round")
    parser.add_argument("--jobs", type=int, default=200, help="jobs through a real runner")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gen3wf-bench-check-") as submit_dir:
        run_secrets.create(submit_dir)
        key = run_secrets.runner_key(submit_dir)
        request = _request(submit_dir)
        line = encode_request(key, request)
        body = json.dumps(request).encode()
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

        def runner_checks() -> object:
            peer(right)
            decoded = decode_request(key, line)
            assert decoded is not None
            return misplaced_logs(submit_dir, decoded)

        def task_signs() -> bytes:
            return encode_request(run_secrets.runner_key(submit_dir), request)

        figures: dict[str, list[float]] = {name: [] for name in ("checks", "loads", "signs", "dumps")}
        for _ in range(args.repeat):
            figures["checks"].append(_per_call_us(runner_checks, args.calls))
            figures["loads"].append(_per_call_us(lambda: json.loads(body), args.calls))
            figures["signs"].append(_per_call_us(task_signs, args.calls))
            figures["dumps"].append(_per_call_us(lambda: json.dumps(request).encode(), args.calls))
        left.close()
        right.close()
        med = {name: statistics.median(values) for name, values in figures.items()}
        print(f"Request of {len(line)} bytes; medians of {args.repeat} rounds, microseconds per job:")
        print(
            f"  runner: checks + JSON {med['checks']:.1f} (JSON alone {med['loads']:.1f}): "
            f"+{med['checks'] - med['loads']:.1f}"
        )
        print(
            f"  task:   key + signed JSON {med['signs']:.1f} (JSON alone {med['dumps']:.1f}): "
            f"+{med['signs'] - med['dumps']:.1f}"
        )
        try:
            trips = [_trip_us(submit_dir, args.jobs) for _ in range(max(1, args.repeat // 2))]
        finally:
            kill_run_processes(submit_dir)
        trip = statistics.median(trips)
        added = med["checks"] - med["loads"] + med["signs"] - med["dumps"]
        print(
            f"  a trivial job's trip through a real node runner: {trip:.0f} "
            f"(the checks are {added / trip * 100:.2f}% of it)"
        )


if __name__ == "__main__":
    main()
