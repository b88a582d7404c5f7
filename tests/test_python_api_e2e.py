"""The Python API: start_pipeline, ParslGraph.status/run/restore, in real processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import DRP_LABELS as LABELS
from conftest import N_DETECTORS, N_VISITS, QUANTA
from harness import expected_outputs, registered_outputs, write_bps_file


def _python(script: str, cwd: Path) -> dict:
    """Run a script in a fresh interpreter; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        env={"PWD": str(cwd), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _restored_status(submit_dir: str, cwd: Path) -> dict:
    return _python(
        f"""
        import json
        from desc.gen3_workflow import ParslGraph
        print(json.dumps(ParslGraph.restore({submit_dir!r}).status(file=None)))
        """,
        cwd,
    )


def test_start_pipeline_then_run_in_background(demo_repo: str, tmp_path: Path) -> None:
    # isr sleeps 2 s, so that polls see quanta running (warm quanta take ~0.15 s).
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "ThreadPool", "max_threads": 2},
        "demo_drp",
        "api",
        extraQgraphOptions="-c isr:sleep=2",
    )
    result = _python(
        f"""
        import json, time
        from desc.gen3_workflow import start_pipeline

        if __name__ == "__main__":
            graph = start_pipeline({str(bps_file)!r})
            before = graph.status(file=None)
            query = graph.config["dataQuery"]
            staged = graph.copy_exec_butler_files()
            graph.run(block=False)
            seen = set()
            while True:
                now = graph.status(file=None)
                seen |= {{s for by_state in now.values() for s, n in by_state.items() if n}}
                if all(n == 0 for by_state in now.values() for s, n in by_state.items()
                       if s in ("pending", "launched", "running")):
                    break
                time.sleep(0.5)
            state = graph.wait()
            print(json.dumps({{"before": before, "after": graph.status(file=None), "seen": sorted(seen),
                              "state": state.value, "submit_dir": graph.submit_dir, "query": query,
                              "staged": staged}}))
        """,
        tmp_path,
    )
    assert result["query"] == "instrument = 'DemoCam'"
    assert result["staged"] == []  # quantum-backed butler on a shared filesystem
    assert list(result["before"]) == LABELS
    for label, by_state in result["before"].items():
        assert by_state["pending"] == sum(by_state.values()) == QUANTA[label]
    for label, by_state in result["after"].items():
        assert by_state["exec_done"] == sum(by_state.values()) == QUANTA[label]
    # status() followed the run while it went, not only before and after.
    assert {"running", "exec_done"} <= set(result["seen"])
    assert result["state"] == "succeeded"
    assert registered_outputs(result["submit_dir"]) == expected_outputs(N_VISITS, N_DETECTORS, LABELS)
    # Another process sees the same counts.
    assert _restored_status(result["submit_dir"], tmp_path) == result["after"]


def test_failure_then_restore_after_the_fix(demo_repo: str, tmp_path: Path) -> None:
    switch = tmp_path / "filesystem_broken"
    switch.touch()
    bps_file = write_bps_file(
        tmp_path,
        demo_repo,
        {"executor": "ThreadPool", "max_threads": 2},
        "demo_drp",
        "api_fail",
        extraQgraphOptions=f"-c isr:failOn=visit:1,detector:1 -c isr:onlyWhileExists={switch}",
    )
    first = _python(
        f"""
        import json
        from desc.gen3_workflow import start_pipeline

        if __name__ == "__main__":
            graph = start_pipeline({str(bps_file)!r})
            state = graph.run(block=True)
            failed = graph.get_jobs("isr", status="failed")
            job = graph[failed[0]]
            ends = {{name: graph[name].t_end for name in graph.get_jobs("isr", status="exec_done")}}
            print(json.dumps({{"state": state.value, "status": graph.status(file=None), "failed": failed,
                              "exit_code": job.exit_code, "log": job.stderr, "ends": ends,
                              "submit_dir": graph.submit_dir}}))
        """,
        tmp_path,
    )
    assert first["state"] == "failed"
    status = first["status"]
    assert status["isr"]["failed"] == 1 and status["isr"]["exec_done"] == QUANTA["isr"] - 1
    assert [status[label]["dep_fail"] for label in LABELS] == [0, 1, 1, 1, 1]
    assert first["exit_code"] == 1
    assert "DemoTaskError" in Path(first["log"]).read_text()

    switch.unlink()  # the cause is fixed
    second = _python(
        f"""
        import json
        from desc.gen3_workflow import ParslGraph

        if __name__ == "__main__":
            # Finish on "the login node": another executor than the run's own.
            graph = ParslGraph.restore({first["submit_dir"]!r}, parsl_config={{"executor": "ThreadPool",
                                                                             "max_threads": 1}})
            state = graph.run()
            ends = {{name: graph[name].t_end for name in {list(first["ends"])!r}}}
            print(json.dumps({{"state": state.value, "status": graph.status(file=None), "ends": ends}}))
        """,
        tmp_path,
    )
    assert second["state"] == "succeeded"
    for label, by_state in second["status"].items():
        assert by_state["exec_done"] == QUANTA[label]
    # What had succeeded did not run again.
    assert second["ends"] == first["ends"]
    assert registered_outputs(first["submit_dir"]) == expected_outputs(N_VISITS, N_DETECTORS, LABELS)


def test_run_a_chosen_job_and_what_it_needs(demo_repo: str, tmp_path: Path) -> None:
    bps_file = write_bps_file(
        tmp_path, demo_repo, {"executor": "ThreadPool", "max_threads": 2}, "demo_sfp", "subset"
    )
    result = _python(
        f"""
        import json
        from desc.gen3_workflow import start_pipeline

        if __name__ == "__main__":
            graph = start_pipeline({str(bps_file)!r})
            target = graph.get_jobs("calibrate")[0]
            graph.run(jobs=[target])
            print(json.dumps({{"status": graph.status(file=None), "target": graph[target].state.value,
                              "final": graph["finalJob"].state.value}}))
        """,
        tmp_path,
    )
    assert result["target"] == "exec_done"
    # One chain isr -> characterizeImage -> calibrate ran; nothing else did.
    for label in ("isr", "characterizeImage", "calibrate"):
        assert result["status"][label]["exec_done"] == 1
        assert result["status"][label]["pending"] == QUANTA[label] - 1
    assert result["final"] == "pending"
