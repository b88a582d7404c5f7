"""CPython gh-128131 on a real run: a QuantumGraph of more than 200 quanta.

On CPython 3.12.0-3.12.8 and 3.13.0-3.13.1 zipfile mis-reads stored members
out of order, and the newest middleware reads ``.qg`` files (zip archives)
by quantum: without the plug-in's workaround every ``pipetask run-qbb`` job
but one, and the final ``butler aggregate-graph``, fail with ``EOFError``
once a graph has more than about a hundred quanta.  With it, the run
registers every output.  Runs only on an affected interpreter (the 3.12 leg).
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from harness import (
    expected_outputs,
    job_states,
    quanta_per_label,
    registered_outputs,
    run_bps,
    write_bps_file,
)

from desc.gen3_workflow.demo.repo import make_demo_repo
from desc.gen3_workflow.host import zipfix
from desc.gen3_workflow.store.records import JobState

# 5 visits x 13 detectors: 3 * 65 + 5 + 1 = 201 quanta of the demo DRP pipeline.
N_VISITS = 5
N_DETECTORS = 13

pytestmark = pytest.mark.skipif(
    not zipfix.interpreter_affected(),
    reason=f"Python {platform.python_version()} does not have CPython bug gh-128131 (this checks the "
    "workaround on 3.12.0-3.12.8 / 3.13.0-3.13.1)",
)


def test_a_graph_of_over_200_quanta_registers_every_output(tmp_path: Path) -> None:
    quanta = quanta_per_label(N_VISITS, N_DETECTORS)
    assert sum(quanta.values()) >= 200
    repo = str(tmp_path / "repo")
    make_demo_repo(repo, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    # in_process: one runner per thread reads the graph by quantum, as
    # pipetask run-qbb does, without paying 1.5 s of imports per quantum.
    parsl_config = {"executor": "ThreadPool", "max_threads": 2, "execution": "in_process"}
    bps_file = write_bps_file(tmp_path, repo, parsl_config, payload_name="zipfile")
    # With bps's log on the terminal, to see its warning.
    result = run_bps("submit", str(bps_file), cwd=tmp_path, timeout=1800, log_tty=True)
    assert result.returncode == 0, result.output[-5000:]
    assert "gh-128131" in result.output  # bps submit warned
    states = job_states(result.submit_dir, kind=None)
    assert {label: counts.get(JobState.EXEC_DONE, 0) for label, counts in states.items()} == {
        "pipetaskInit": 1,
        **quanta,
        "finalJob": 1,
    }
    # The final job (butler aggregate-graph, with spawned workers) read the
    # whole graph and registered every output.
    assert registered_outputs(result.submit_dir) == expected_outputs(N_VISITS, N_DETECTORS, list(quanta))
