"""GenericWorkflows of any size, shaped like the demo DRP pipeline, without
a QuantumGraph: for benchmarks and scale tests of planning and running.

Per visit and detector: isr -> characterizeImage -> calibrate; per visit: a
visitSummary of its calibrates; one globalTable of the summaries.  Jobs run
``pipetask`` placeholders (planning figures) or any command (null jobs).
"""

from __future__ import annotations

import random
import uuid

from lsst.ctrl.bps import GenericWorkflow, GenericWorkflowExec, GenericWorkflowFile, GenericWorkflowJob

__all__ = ["PIPETASK_ARGS", "synthetic_workflow"]

PIPETASK_ARGS = "{runPreCmdOpts} run-qbb {butlerConfig} <FILE:runQgraphFile> --qgraph-node-id {qgraphNodeId}"


def synthetic_workflow(
    n_jobs: int, detectors: int = 189, executable: str | None = None, arguments: str | None = None
) -> GenericWorkflow:
    """A DRP-shaped GenericWorkflow with about ``n_jobs`` jobs.

    Parameters
    ----------
    n_jobs : `int`
        About how many jobs (whole visits of ``detectors`` detectors).
    detectors : `int`
        Detectors per visit.
    executable, arguments : `str`, optional
        What every job runs; by default ``pipetask run-qbb`` with ctrl_bps's
        placeholders (never meant to run).
    """
    per_visit = 3 * detectors + 1
    visits = max(1, n_jobs // per_visit)
    workflow = GenericWorkflow("synthetic")
    qgraph = GenericWorkflowFile("runQgraphFile", "/submit/run.qg", wms_transfer=True)
    program = GenericWorkflowExec("program", executable or "<ENV:CTRL_MPEXEC_DIR>/bin/pipetask")
    cmdvals = {"runPreCmdOpts": "--long-log", "butlerConfig": "/repo"}
    args = PIPETASK_ARGS if arguments is None else arguments

    node_ids = random.Random(n_jobs)

    def add(what: str, label: str, parents: list[str], **data_id: int) -> str:
        # Named as ctrl_bps names a quantum's job: its QuantumGraph node id
        # (a UUID), label and data ID.
        node_id = str(uuid.UUID(int=node_ids.getrandbits(128), version=4))
        name = f"{node_id}_{what}"
        job = GenericWorkflowJob(name, label, executable=program, arguments=args)
        job.cmdvals = {**cmdvals, "qgraphNodeId": node_id}
        job.request_memory, job.request_cpus = 2048, 1
        job.tags = {"label": label, "instrument": "HSC", **data_id}  # as ctrl_bps tags a quantum
        workflow.add_job(job, parent_names=parents)
        workflow.add_job_inputs(name, qgraph)
        return name

    summaries = []
    for visit in range(visits):
        calibrated = []
        for detector in range(detectors):
            ids = {"visit": visit, "detector": detector}
            isr = add(f"isr_{visit}_{detector}", "isr", [], **ids)
            char = add(f"characterizeImage_{visit}_{detector}", "characterizeImage", [isr], **ids)
            calibrated.append(add(f"calibrate_{visit}_{detector}", "calibrate", [char], **ids))
        summaries.append(add(f"visitSummary_{visit}", "visitSummary", calibrated, visit=visit))
    add("globalTable", "globalTable", summaries)
    return workflow
