"""``pipetask run-qbb`` jobs in a warm executor, the QuantumGraph read once.

Through pipetask's command line, every quantum job of a warm executor
(`desc.gen3_workflow.execution.warm.in_process_runner`) would open the
QuantumGraph again: its header, its pipeline graph (task classes and
configs), its init quanta and *all* its dimension records -- a cost that
grows with the graph -- and then build a butler configuration from the
repository's YAML files for the quantum-backed butler.  Here an executor
opens each graph once (`OpenGraph`): it keeps the reader, the init quanta,
the dimension records and one `~lsst.daf.butler.ButlerConfig`, and per job
reads only the job's quanta.

A job then runs as `lsst.ctrl.mpexec.cli.script.run_qbb` runs it: its
options parsed by pipetask's own ``run-qbb`` command, logging set up by
pipetask's own command loader, and its quanta executed by pipe_base's
`~lsst.pipe.base.single_quantum_executor.SingleQuantumExecutor` under an
`~lsst.pipe.base.mp_graph_executor.MPGraphExecutor` of one process, with
the same job metadata, summary file, log lines and exit codes.  A job with
an option this path does not reproduce (``-j`` above 1, ``--pdb``,
``--profile``, ``--debug``, coverage, an old ``.qgraph`` file) returns
`None` from `run_qbb_job`, and runs through pipetask's command line.

An executor is a fork of its runner and opens its graphs itself, after the
fork: a reader's file handle is never shared between processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import uuid
from typing import Any

__all__ = ["OpenGraph", "run_qbb_job"]

# The run-qbb options this path reproduces, and the values of the others
# under which it is still what pipetask would do.
_HANDLED = {
    "repo",
    "qgraph",
    "config_search_path",
    "qgraph_id",
    "qgraph_node_id",
    "processes",
    "start_method",
    "timeout",
    "fail_fast",
    "raise_on_partial_outputs",
    "summary",
    "enable_implicit_threading",
    "cores_per_quantum",
    "memory_per_quantum",
    "no_existing_outputs",
    "cov_report",  # (these two are read only with --coverage)
    "cov_packages",
}


@dataclasses.dataclass
class OpenGraph:
    """A QuantumGraph file held open by an executor, with what every job of
    it shares."""

    path: str
    reader: Any
    """`lsst.pipe.base.quantum_graph.PredictedQuantumGraphReader`, entered."""
    base: Any
    """The reader's components with init quanta and dimension records."""
    butler_config: Any
    """`lsst.daf.butler.ButlerConfig` of the repository, defaults merged."""
    dataset_types: dict[str, Any]
    closer: contextlib.ExitStack

    @classmethod
    def open(cls, path: str, repo: str) -> OpenGraph:
        """Open ``path`` for jobs writing to the repository at ``repo``."""
        from lsst.daf.butler import ButlerConfig
        from lsst.pipe.base.quantum_graph import PredictedQuantumGraph

        closer = contextlib.ExitStack()
        reader = closer.enter_context(PredictedQuantumGraph.open(path))
        reader.read_init_quanta()
        reader.read_dimension_data()
        pipeline_graph = reader.components.pipeline_graph
        return cls(
            path=path,
            reader=reader,
            base=reader.components,
            butler_config=ButlerConfig(repo),
            dataset_types={d.name: d.dataset_type for d in pipeline_graph.dataset_types.values()},
            closer=closer,
        )

    def read(self, quantum_ids: set[uuid.UUID]) -> Any:
        """The `~lsst.pipe.base.quantum_graph.PredictedQuantumGraph` of
        these quanta alone (the reader fills a fresh set of components each
        time, so no job's quanta pile up in the executor)."""
        from lsst.pipe.base.quantum_graph import PredictedQuantumGraphComponents

        components = PredictedQuantumGraphComponents(
            header=self.base.header, pipeline_graph=self.base.pipeline_graph
        )
        components.init_quanta = self.base.init_quanta
        components.dimension_data = self.base.dimension_data
        self.reader.components = components
        try:
            self.reader.read_quantum_datasets(quantum_ids)
        finally:
            self.reader.components = self.base
        return components.assemble()

    def butler_factory(self) -> Any:
        """What makes each quantum's `~lsst.daf.butler.QuantumBackedButler`
        (from the configuration read once: `~lsst.daf.butler.ButlerConfig`
        takes a merged one as it is)."""
        from lsst.daf.butler import QuantumBackedButler

        universe = self.base.pipeline_graph.universe

        def make(quantum: Any) -> Any:
            return QuantumBackedButler.initialize(
                config=self.butler_config,
                quantum=quantum,
                dimensions=universe,
                dataset_types=self.dataset_types,
            )

        return make


_OPEN: dict[tuple[int, str, str], OpenGraph] = {}
"""Graphs this process opened, by (pid, graph, repository): a fork does not
use its parent's."""


def _graph(path: str, repo: str) -> OpenGraph:
    key = (os.getpid(), path, repo)
    graph = _OPEN.get(key)
    if graph is None:
        graph = _OPEN[key] = OpenGraph.open(path, repo)
        how = "opened by this executor for this job"
    else:
        how = "held open by this executor since an earlier job"
    # For the operator reading the job's log (stderr), and the tests.
    print(f"gen3_workflow in_process: QuantumGraph {how}", file=sys.stderr, flush=True)
    return graph


def _parse(argv: list[str]) -> dict[str, Any] | None:
    """pipetask's own parse of a ``run-qbb`` command line (its options), with pipetask's
    logging set up for it as its command loader does; `None` if it asks for
    something only pipetask's command line does."""
    from lsst.ctrl.mpexec.cli.pipetask import cli

    split = argv.index("run-qbb")
    group = cli.make_context(os.path.basename(argv[0]), argv[1 : split + 1])
    command = cli.get_command(group, "run-qbb")  # sets up logging (LoaderCLI)
    if command is None:
        return None
    params = command.make_context("run-qbb", argv[split + 1 :], parent=group).params
    if any(value and name not in _HANDLED for name, value in params.items()):
        return None  # --pdb, --profile, --debug, coverage, options of newer pipetasks
    if (
        params["processes"] != 1
        or params["start_method"] == "fork"
        or not params["qgraph_node_id"]
        or not str(params["qgraph"]).endswith(".qg")
    ):
        return None
    return params


def run_qbb_job(argv: list[str]) -> int | None:
    """Run one ``pipetask ... run-qbb`` job in this process.

    Parameters
    ----------
    argv : `list` [`str`]
        The job's argument vector (``pipetask`` first).

    Returns
    -------
    code : `int` or `None`
        The exit code pipetask would have returned; `None` if the job must
        run through pipetask's command line (see the module's
        documentation).
    """
    params = _parse(argv)
    return None if params is None else _run(params)


def _run(params: dict[str, Any]) -> int:
    """`lsst.ctrl.mpexec.cli.script.run_qbb`, on a graph held open."""
    import astropy.units as u
    import lsst.utils.timer
    from lsst.ctrl.mpexec.cli.butler_factory import ButlerFactory
    from lsst.ctrl.mpexec.cli.utils import MP_TIMEOUT, summarize_quantum_graph
    from lsst.pipe.base import ExecutionResources
    from lsst.pipe.base.mp_graph_executor import MPGraphExecutor
    from lsst.pipe.base.single_quantum_executor import SingleQuantumExecutor
    from lsst.resources import ResourcePath
    from lsst.utils.logging import VERBOSE, getLogger
    from lsst.utils.threads import disable_implicit_threading

    log = getLogger("lsst.ctrl.mpexec.cli.script.run_qbb")  # where pipetask logs these lines
    if not params["enable_implicit_threading"]:
        disable_implicit_threading()
    quantum_ids = {q if isinstance(q, uuid.UUID) else uuid.UUID(q) for q in params["qgraph_node_id"]}
    graph = _graph(str(params["qgraph"]), str(params["repo"]))
    with lsst.utils.timer.time_this(log, msg=f"Reading {len(quantum_ids)} quanta.", level=VERBOSE) as read:
        qg = graph.read(quantum_ids)
    summarize_quantum_graph(qg)
    ButlerFactory.define_datastore_cache()
    quantum_executor = SingleQuantumExecutor(
        butler=None,
        task_factory=None,
        enable_lsst_debug=False,
        limited_butler_factory=graph.butler_factory(),
        resources=ExecutionResources(
            num_cores=params["cores_per_quantum"],
            max_mem=params["memory_per_quantum"],
            default_mem_units=u.MB,
        ),
        assume_no_existing_outputs=params["no_existing_outputs"],
        skip_existing=True,
        clobber_outputs=True,
        raise_on_partial_outputs=params["raise_on_partial_outputs"],
        job_metadata={"qg_read_time": read.duration, "qg_size": len(qg)},
    )
    executor = MPGraphExecutor(
        num_proc=1,
        timeout=MP_TIMEOUT if params["timeout"] is None else params["timeout"],
        start_method=params["start_method"],
        quantum_executor=quantum_executor,
        fail_fast=params["fail_fast"],
        pdb=None,
    )
    try:
        executor.execute(qg)
    finally:
        if params["summary"] and (report := executor.getReport()):
            with ResourcePath(params["summary"]).open("w") as out:
                out.write(report.model_dump_json(exclude_none=True, indent=2))
    return 0
