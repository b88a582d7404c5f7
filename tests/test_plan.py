"""Planning: a GenericWorkflow becomes store rows (jobs in topological order,
their commands as data, resources, log paths, edges)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lsst.ctrl.bps import (
    BpsConfig,
    GenericWorkflow,
    GenericWorkflowExec,
    GenericWorkflowFile,
    GenericWorkflowJob,
)
from lsst.ctrl.bps.generic_workflow import GenericWorkflowNoopJob

import desc.gen3_workflow.plan.workflow
import desc.gen3_workflow.service
from desc.gen3_workflow.errors import CommandError, PlanError, RunNotFoundError, StoreWriteError
from desc.gen3_workflow.plan.final_job import final_script_argv, fit_aggregate_processes
from desc.gen3_workflow.plan.workflow import (
    LogLayout,
    insertion_order,
    node_items,
    plan_workflow,
    run_info,
    stream_plan,
    topological_names,
)
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.plan_process import PlanWriterProcess
from desc.gen3_workflow.store.records import JobKind, RunInfo
from desc.gen3_workflow.testing.synthetic_workflow import synthetic_workflow

PIPETASK = GenericWorkflowExec("pipetask", "/bin/pipetask")


def _job(name: str, label: str, **tags: object) -> GenericWorkflowJob:
    job = GenericWorkflowJob(name, label)
    job.executable = PIPETASK
    job.arguments = "run-qbb {butlerConfig} <FILE:runQgraphFile> --qgraph-node-id {qgraphNodeId}"
    job.cmdvals = {"butlerConfig": "/repo", "qgraphNodeId": name}
    job.tags = {"label": label, "node_number": 7, **tags}
    job.request_cpus = 1
    job.request_memory = 2048
    return job


def _workflow() -> GenericWorkflow:
    """pipetaskInit -> isr x2 -> (ordering no-op) -> summary; a final job.

    Jobs are added children first, so that insertion order is not a
    topological order.
    """
    workflow = GenericWorkflow("wf")
    workflow.add_job(_job("summary", "visitSummary", visit=1))
    workflow.add_job(GenericWorkflowNoopJob("order", "order"), child_names="summary")
    for detector in (1, 0):
        workflow.add_job(_job(f"isr_{detector}", "isr", visit=1, detector=detector), child_names="order")
    workflow.add_job(_job("pipetaskInit", "pipetaskInit"), child_names=["isr_0", "isr_1"])
    final = _job("finalJob", "finalJob")
    final.arguments = "aggregate-graph <FILE:runQgraphFile> {butlerConfig}"
    workflow.add_final(final)
    qgraph = GenericWorkflowFile("runQgraphFile", "/submit/run.qg", wms_transfer=True)
    for name in ("summary", "isr_0", "isr_1", "pipetaskInit"):
        workflow.add_job_inputs(name, qgraph)
    workflow.add_job_inputs("finalJob", qgraph)
    return workflow


def test_jobs_in_topological_order_with_no_ops_dissolved(tmp_path: Path) -> None:
    plan = plan_workflow(BpsConfig({}), _workflow(), str(tmp_path))
    names = [job.name for job in plan.records()]
    assert names[0] == "pipetaskInit" and set(names[1:3]) == {"isr_0", "isr_1"}
    assert names[3:] == ["summary", "finalJob"]
    assert [job.seq for job in plan.records()] == list(range(5))
    assert [job.kind for job in plan.records()] == [JobKind.INIT, *[JobKind.QUANTUM] * 3, JobKind.FINAL]
    # Every edge goes from an earlier job to a later one; the no-op's parents
    # are the summary's parents; the final job has no edges (it runs last).
    seq = {job.name: job.seq for job in plan.records()}
    assert sorted(plan.edges) == sorted(
        [
            (seq["pipetaskInit"], seq["isr_0"]),
            (seq["pipetaskInit"], seq["isr_1"]),
            (seq["isr_0"], seq["summary"]),
            (seq["isr_1"], seq["summary"]),
        ]
    )


def test_topological_order_is_networkx_order_and_a_cycle_is_refused() -> None:
    """The plan's own walk gives networkx's order (so job numbers do not
    change with it), iteratively, and names a cycle instead of looping."""
    import random

    import networkx

    from desc.gen3_workflow.testing.synthetic_workflow import synthetic_workflow

    shuffled = networkx.DiGraph()
    draw = random.Random(3)
    shuffled.add_nodes_from(draw.sample(range(300), 300))
    shuffled.add_edges_from(
        (a, b) for a, b in ((draw.randrange(300), draw.randrange(300)) for _ in range(900)) if a < b
    )
    for graph in (synthetic_workflow(500, detectors=5), _workflow(), shuffled):
        assert list(topological_names(graph)) == list(networkx.topological_sort(graph))
    chain = networkx.DiGraph([(i, i + 1) for i in range(100_000)])  # deeper than any recursion limit
    assert next(reversed(list(topological_names(chain)))) == 100_000
    with pytest.raises(PlanError, match="cycle through 3 jobs"):
        list(topological_names(networkx.DiGraph([("a", "b"), ("b", "c"), ("c", "a"), ("x", "a")])))


def test_job_rows_carry_command_resources_logs_and_data_id(tmp_path: Path) -> None:
    plan = plan_workflow(BpsConfig({}), _workflow(), str(tmp_path))
    isr = next(job for job in plan.records() if job.name == "isr_1")
    assert isr.command.argv == (
        "/bin/pipetask",
        "run-qbb",
        "/repo",
        "/submit/run.qg",
        "--qgraph-node-id",
        "isr_1",
    )
    assert isr.command.env == ()
    assert isr.resources == {
        "cpus": 1,
        "memory": 2048,
        "disk": None,
        "walltime": None,
        "priority": None,
        # The retry rules; this workflow has none (test_retry_rules has them).
        "retries": None,
        "retry_unless_exit": [],
        "memory_multiplier": None,
        "memory_max": None,
        "compute_site": None,
    }
    assert isr.stdout == str(tmp_path / "logs" / "isr" / "isr_1.stdout")
    assert isr.stderr == str(tmp_path / "logs" / "isr" / "isr_1.stderr")
    # The data ID without ctrl_bps's bookkeeping tags.
    assert json.loads(isr.data_id) == {"visit": 1, "detector": 1}
    final = plan.records()[-1]
    assert final.command.argv == ("/bin/pipetask", "aggregate-graph", "/submit/run.qg", "/repo")


def test_a_labels_jobs_share_one_template_and_keep_only_their_own_words(tmp_path: Path) -> None:
    plan = plan_workflow(BpsConfig({}), _workflow(), str(tmp_path))
    isr_rows = [row for row in plan.rows if row[2] == "isr"]
    (template,) = {row[5] for row in isr_rows}
    # Only the QuantumGraph node id is the job's own; the rest is stored once.
    assert plan.templates[template].argv == (
        "/bin/pipetask",
        "run-qbb",
        "/repo",
        "/submit/run.qg",
        "--qgraph-node-id",
        None,
    )
    assert sorted(json.loads(row[6]) for row in isr_rows) == [["isr_0"], ["isr_1"]]
    # Read back through the store, every job has its whole command.
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        store.write_plan("wf", str(tmp_path), RunInfo(), plan)
        from_store = {job.name: job for job in store.jobs()}
    assert {name: job.command for name, job in from_store.items()} == {
        job.name: job.command for job in plan.records()
    }
    assert from_store["isr_0"].stderr == str(tmp_path / "logs" / "isr" / "isr_0.stderr")


def test_unsharable_words_stay_with_each_job(tmp_path: Path) -> None:
    """A placeholder naming an option list, or a value naming another
    placeholder, that differs between jobs: each job keeps its whole command."""
    workflow = _workflow()
    for detector, options in ((0, "--a 1"), (1, "--b 2 --c")):
        isr = workflow.get_job(f"isr_{detector}")
        isr.arguments += " {extraOptions} {where}"
        isr.cmdvals = {**isr.cmdvals, "extraOptions": options, "where": "{butlerConfig}/x"}
    summary = workflow.get_job("summary")
    summary.arguments += " {where}"
    summary.cmdvals = {**summary.cmdvals, "where": "{butlerConfig}/y"}
    plan = plan_workflow(BpsConfig({}), workflow, str(tmp_path))
    argv = {job.name: job.command.argv for job in plan.records()}
    assert argv["isr_0"][-3:] == ("--a", "1", "/repo/x")
    assert argv["isr_1"][-4:] == ("--b", "2", "--c", "/repo/x")
    assert argv["summary"][-1] == "/repo/y"
    assert {plan.templates[row[5]].argv for row in plan.rows if row[2] == "isr"} == {None}


def test_command_prepend_per_label(tmp_path: Path) -> None:
    config = BpsConfig({"commandPrepend": "time", "pipetask": {"isr": {"commandPrepend": "nice -n 5"}}})
    plan = plan_workflow(config, _workflow(), str(tmp_path))
    argv = {job.label: job.command.argv for job in plan.records()}
    assert argv["isr"][:4] == ("nice", "-n", "5", "/bin/pipetask")
    assert argv["visitSummary"][:2] == ("time", "/bin/pipetask")


def test_a_command_that_cannot_be_built_stops_the_plan(tmp_path: Path) -> None:
    workflow = _workflow()
    workflow.get_job("isr_0").cmdvals = {"butlerConfig": "/repo"}  # no qgraphNodeId
    with pytest.raises(CommandError, match=r"job isr_0: no value for placeholder \{qgraphNodeId\}"):
        plan_workflow(BpsConfig({}), workflow, str(tmp_path))


def test_run_info_from_the_bps_config() -> None:
    config = BpsConfig(
        {"operator": "me", "payloadName": "drp", "outputRun": "u/me/drp/1", "butlerConfig": "/repo"}
    )
    info = run_info(config, {"executor": "ThreadPool"})
    assert (info.operator, info.payload_name, info.output_run, info.butler_config) == (
        "me",
        "drp",
        "u/me/drp/1",
        "/repo",
    )
    assert info.project is None and info.parsl_config == {"executor": "ThreadPool"}


def test_logs_of_a_large_label_are_split_into_directories_of_a_thousand() -> None:
    layout = LogLayout("/run", {"isr": 2500, "calibrate": 10})
    isr = [layout.paths(GenericWorkflowJob(f"isr_{i}", "isr"))[1] for i in range(2500)]
    assert isr[0] == "/run/logs/isr/0000/isr_0.stderr"
    assert isr[999].startswith("/run/logs/isr/0000/") and isr[1000].startswith("/run/logs/isr/0001/")
    assert isr[-1] == "/run/logs/isr/0002/isr_2499.stderr"
    # A small label keeps one directory.
    assert layout.paths(GenericWorkflowJob("calibrate_1", "calibrate")) == (
        "/run/logs/calibrate/calibrate_1.stdout",
        "/run/logs/calibrate/calibrate_1.stderr",
    )


_FINAL_SCRIPT = """#!/bin/bash

set -e
set -x
qgraphFile=$1
butlerConfig=$2
${DAF_BUTLER_DIR}/bin/butler --long-log --log-level=VERBOSE aggregate-graph ${qgraphFile} \
${butlerConfig} -j 16 --register-dataset-types --update-output-chain
"""


@pytest.mark.parametrize(("quanta", "processes"), [(53, 1), (1999, 1), (2000, 2), (10**5, 16)])
def test_final_job_gets_one_scanning_process_per_thousand_quanta(
    tmp_path: Path, quanta: int, processes: int
) -> None:
    script = tmp_path / "final_job.bash"
    script.write_text(_FINAL_SCRIPT)
    assert fit_aggregate_processes(str(script), quanta) == (16, processes)
    text = script.read_text()
    assert f"${{butlerConfig}} -j {processes} --register-dataset-types" in text
    assert text.replace(f"-j {processes} ", "-j 16 ") == _FINAL_SCRIPT


def test_a_final_command_of_the_users_own_is_left_alone(tmp_path: Path) -> None:
    script = tmp_path / "final_job.bash"
    script.write_text("#!/bin/bash\nmy-registration-tool -j 8 $1\n")
    assert fit_aggregate_processes(str(script), 50) is None
    assert script.read_text() == "#!/bin/bash\nmy-registration-tool -j 8 $1\n"


@pytest.mark.parametrize("butler", ["${DAF_BUTLER_DIR}/bin/butler", "butler"])  # older, newer ctrl_bps
def test_the_final_script_ctrl_bps_writes_becomes_one_butler_command(tmp_path: Path, butler: str) -> None:
    script = tmp_path / "final_job.bash"
    script.write_text(_FINAL_SCRIPT.replace("${DAF_BUTLER_DIR}/bin/butler", butler))
    assert final_script_argv(str(script), ["/sub/run.qg", "/repo"]) == [
        butler,
        *"--long-log --log-level=VERBOSE aggregate-graph /sub/run.qg /repo -j 16".split(),
        "--register-dataset-types",
        "--update-output-chain",
    ]


@pytest.mark.parametrize(
    "command",
    [
        "${DAF_BUTLER_DIR}/bin/butler aggregate-graph ${qgraphFile} ${butlerConfig}; rm -rf /",
        "${DAF_BUTLER_DIR}/bin/butler aggregate-graph ${qgraphFile} ${other}",
        "${DAF_BUTLER_DIR}/bin/butler aggregate-graph $(cat x) ${butlerConfig}",
        "${DAF_BUTLER_DIR}/bin/butler aggregate-graph ${qgraphFile} > out.log",
        "my-tool ${qgraphFile} ${butlerConfig}",
        "${DAF_BUTLER_DIR}/bin/butler aggregate-graph ${qgraphFile} ${butlerConfig}\necho done",
    ],
)
def test_any_other_final_script_is_left_to_bash(tmp_path: Path, command: str) -> None:
    script = tmp_path / "final_job.bash"
    script.write_text(f"#!/bin/bash\nset -e\nqgraphFile=$1\nbutlerConfig=$2\n{command}\n")
    assert final_script_argv(str(script), ["/sub/run.qg", "/repo"]) is None


def test_final_job_is_fitted_to_the_quanta_of_every_job_clustered_or_not(tmp_path: Path) -> None:
    """The final job's ``aggregate-graph -j`` is fitted to the quanta the
    jobs carry (ctrl_bps's per-job ``quanta_counts``), not to the jobs."""
    from collections import Counter

    workflow = _workflow()
    for name, count in (("summary", 1), ("isr_0", 1500), ("isr_1", 1500)):  # two clustered jobs
        workflow.get_job(name).quanta_counts = Counter({workflow.get_job(name).label: count})
    script = tmp_path / "final_job.bash"
    script.write_text(_FINAL_SCRIPT)
    workflow.get_final().executable = GenericWorkflowExec("final", str(script))
    plan_workflow(BpsConfig({}), workflow, str(tmp_path))
    assert "${butlerConfig} -j 3 --register-dataset-types" in script.read_text()


def test_a_placeholder_found_to_vary_late_gets_a_template_of_its_own(tmp_path: Path) -> None:
    """Rows are made as jobs arrive: a value that differs only from a later
    job on starts a new template there; earlier jobs keep theirs, and every
    job reads back its own whole command."""
    workflow = GenericWorkflow("wf")
    for detector in range(4):
        job = _job(f"isr_{detector}", "isr", visit=1, detector=detector)
        job.arguments += " --where {where}"
        job.cmdvals = {**job.cmdvals, "where": "a" if detector < 2 else f"b{detector}"}
        workflow.add_job(job)
        workflow.add_job_inputs(job.name, GenericWorkflowFile("runQgraphFile", "/submit/run.qg"))
    plan = plan_workflow(BpsConfig({}), workflow, str(tmp_path))
    argv = {job.name: job.command.argv[-2:] for job in plan.records()}
    assert argv == {
        "isr_0": ("--where", "a"),
        "isr_1": ("--where", "a"),
        "isr_2": ("--where", "b2"),
        "isr_3": ("--where", "b3"),
    }
    template_of = {row[1]: row[5] for row in plan.rows}
    assert template_of["isr_0"] == template_of["isr_1"] != template_of["isr_2"] == template_of["isr_3"]
    assert plan.templates[template_of["isr_0"]].argv[-3:] == (None, "--where", "a")
    assert plan.templates[template_of["isr_2"]].argv[-3:] == (None, "--where", None)


def _store_contents(submit_dir: Path) -> tuple[object, ...]:
    with JobStateStore.open(str(submit_dir)) as store:
        return (
            store.run().name,
            [(job.seq, job.name, job.kind, job.data_id, job.command, job.stdout) for job in store.jobs()],
            sorted(store.edges()),
            store.label_stats(),
        )


def test_the_writer_process_writes_what_write_plan_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`bps submit` plans into a child process that writes the store while
    the plan is made; the store is the one a plan held in memory gives.
    Chunks of one row: the child has written pipetaskInit's when the planner
    finds that _workflow's jobs were not added in a topological order, and
    drops it as the planner starts over."""
    monkeypatch.setattr(desc.gen3_workflow.plan.workflow, "CHUNK", 1)
    workflow, streamed, in_memory = _workflow(), tmp_path / "streamed", tmp_path / "in_memory"
    streamed.mkdir(), in_memory.mkdir()
    with PlanWriterProcess(str(streamed), "wf", RunInfo()) as writer:
        assert stream_plan(BpsConfig({}), workflow, str(streamed), writer) == 5
        writer.commit(timeout=60)
    plan = plan_workflow(BpsConfig({}), workflow, str(streamed))
    with JobStateStore.open(str(in_memory), writable=True) as store:
        store.write_plan("wf", str(streamed), RunInfo(), plan)
    assert _store_contents(streamed) == _store_contents(in_memory)


def test_planning_that_stops_midway_leaves_no_plan_and_no_process(tmp_path: Path) -> None:
    workflow = _workflow()
    workflow.get_job("summary").arguments += " {missing}"
    with pytest.raises(CommandError, match="missing"):
        with PlanWriterProcess(str(tmp_path), "wf", RunInfo()) as writer:
            child = writer._process  # noqa: SLF001 (the test looks at the child itself)
            stream_plan(BpsConfig({}), workflow, str(tmp_path), writer)
    assert child.returncode == 3
    # The store made for this plan is gone with it.
    with pytest.raises(RunNotFoundError):
        JobStateStore.open(str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_a_writer_that_fails_is_reported_with_its_reason(tmp_path: Path) -> None:
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        store.write_plan("earlier", str(tmp_path), RunInfo(), plan_workflow(BpsConfig({}), _workflow(), "x"))
    with pytest.raises(StoreWriteError, match="UNIQUE constraint failed"):
        with PlanWriterProcess(str(tmp_path), "wf", RunInfo()) as writer:
            stream_plan(BpsConfig({}), _workflow(), str(tmp_path), writer)
            writer.commit(timeout=60)
    assert _store_contents(tmp_path)[0] == "earlier"


def test_ctrl_bps_order_is_kept_when_it_is_topological(tmp_path: Path) -> None:
    """ctrl_bps adds quanta in topological order and pipetaskInit after
    them: the plan numbers pipetaskInit first, then jobs as added (one
    pass); an order that is not topological goes through Kahn's walk."""
    workflow = GenericWorkflow("wf")
    qgraph = GenericWorkflowFile("runQgraphFile", "/submit/run.qg", wms_transfer=True)
    added = []
    for detector in (0, 1):
        isr = _job(f"isr_{detector}", "isr", detector=detector)
        calibrate = _job(f"calibrate_{detector}", "calibrate", detector=detector)
        workflow.add_job(isr)
        workflow.add_job(calibrate, parent_names=[isr.name])
        added += [isr.name, calibrate.name]
    workflow.add_job(_job("pipetaskInit", "pipetaskInit"), child_names=["isr_0", "isr_1"])
    for name in [*added, "pipetaskInit"]:
        workflow.add_job_inputs(name, qgraph)
    plan = plan_workflow(BpsConfig({}), workflow, str(tmp_path))
    assert [row[1] for row in plan.rows] == ["pipetaskInit", *added]
    assert list(insertion_order(workflow)) == ["pipetaskInit", *added]
    assert all(parent < child for parent, child in plan.edges)
    # Added children first: Kahn's order instead.
    kahn = [name for name in topological_names(_workflow()) if name != "order"]  # (the no-op)
    assert [row[1] for row in plan_workflow(BpsConfig({}), _workflow(), str(tmp_path)).rows] == [
        *kahn,
        "finalJob",
    ]


def test_nodes_zipped_in_insertion_order_as_looked_up_by_name(tmp_path: Path) -> None:
    """The planner reads nodes, their data and parents by zipping networkx's
    dictionaries; the same plan comes out when they do not share an order
    (each node then looked up by name)."""
    workflow = synthetic_workflow(2000, detectors=5)
    items = list(node_items(workflow, kahn=False))
    nodes, pred = workflow._node, workflow._pred
    assert [name for (name, _), _ in items] == list(insertion_order(workflow))
    assert all(data is nodes[name] and parents is pred[name] for (name, data), parents in items)
    zipped = plan_workflow(BpsConfig({}), workflow, str(tmp_path))
    # The same graph, its node dictionary in another order (the order is the
    # predecessor dictionary's).
    workflow._node = dict(reversed(nodes.items()))
    items = list(node_items(workflow, kahn=False))
    assert [name for (name, _), _ in items] == list(insertion_order(workflow))
    looked_up = plan_workflow(BpsConfig({}), workflow, str(tmp_path))
    assert looked_up.rows == zipped.rows and len(zipped.rows) == len(nodes)
    assert list(looked_up.edges) == list(zipped.edges)


@pytest.mark.parametrize("monitoring", [True, False])
def test_prepare_warns_of_parsl_monitoring_on_a_big_run(
    tmp_path: Path, monitoring: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(desc.gen3_workflow.service, "MONITORING_WARNING_JOBS", 500)
    config = BpsConfig({"operator": "me", "payloadName": "big", "parsl_config": {"monitoring": monitoring}})
    service = desc.gen3_workflow.service.ParslService(config)
    with caplog.at_level("WARNING", logger="desc.gen3_workflow.service"):
        service.prepare(config, synthetic_workflow(600), str(tmp_path))
    with JobStateStore.open(str(tmp_path)) as store:
        assert len(store.jobs()) > 500
    warned = [r.getMessage() for r in caplog.records if "monitoring.db will grow" in r.getMessage()]
    assert len(warned) == (1 if monitoring else 0), warned
    if monitoring:
        assert "set monitoring: false" in warned[0]
