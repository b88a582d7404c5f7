"""The job-state store: what it keeps, how states change, what readers see,
and when a run's submitting process counts as alive."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from synthetic import job, set_run, write_store

from desc.gen3_workflow.constants import STORE_FILENAME
from desc.gen3_workflow.errors import RunNotFoundError
from desc.gen3_workflow.execution.runner.scheduler import scheduler_for
from desc.gen3_workflow.store.job_store import JobStateStore
from desc.gen3_workflow.store.liveness import Liveness, liveness
from desc.gen3_workflow.store.records import JobCommand, JobKind, JobState, JobUpdate, RunInfo, RunState
from desc.gen3_workflow.store.schema import in_chunks
from desc.gen3_workflow.store.templates import JobTemplate, WorkflowPlan


def _run(submit_dir: Path) -> JobStateStore:
    """pipetaskInit -> isr 1, 2 -> calibrate 3 (after isr 1) -> finalJob."""
    jobs = [job(0, "pipetaskInit", submit_dir), job(1, "isr", submit_dir), job(2, "isr", submit_dir)]
    jobs += [job(3, "calibrate", submit_dir), job(4, "finalJob", submit_dir)]
    jobs[1].command = JobCommand(("pipetask", "run-qbb", "a b"), (("X", "1"),))
    info = RunInfo(operator="me", output_run="u/me/r", parsl_config={"executor": "ThreadPool"})
    return write_store(submit_dir, jobs, [(0, 1), (0, 2), (1, 3)], name="r", info=info)


def test_plan_is_read_back_as_written(tmp_path: Path) -> None:
    with _run(tmp_path):
        pass
    with JobStateStore.open(str(tmp_path)) as store:
        run = store.run()
        assert (run.name, run.submit_dir, run.state, run.pid, run.submissions) == (
            "r",
            str(tmp_path),
            RunState.PREPARED,
            None,
            0,
        )
        assert run.info.operator == "me" and run.info.parsl_config == {"executor": "ThreadPool"}
        everything = store.jobs()
        assert [j.seq for j in everything] == [0, 1, 2, 3, 4]
        assert store.job("isr_1") == everything[1]
        assert everything[1].command == JobCommand(("pipetask", "run-qbb", "a b"), (("X", "1"),))
        assert store.job("nothing") is None
        assert [j.name for j in store.jobs(kind=JobKind.FINAL)] == ["finalJob_4"]
        assert sorted(store.edges()) == [(0, 1), (0, 2), (1, 3)]
        assert store.labels() == ["isr", "calibrate"]
        assert store.labels(kind=None) == ["pipetaskInit", "isr", "calibrate", "finalJob"]


def test_updates_set_times_attempts_and_counts(tmp_path: Path) -> None:
    with _run(tmp_path) as store:
        store.start_run()
        store.apply([JobUpdate(1, JobState.LAUNCHED, 10.0), JobUpdate(2, JobState.LAUNCHED, 11.0)])
        store.apply([JobUpdate(1, JobState.RUNNING, 12.0)])
        store.apply([JobUpdate(1, JobState.EXEC_DONE, 20.0, attempts=1, exit_code=0)])
        store.apply([JobUpdate(2, JobState.FAILED, 30.0, attempts=2, exit_code=1, message="exit code 1")])
        store.apply([JobUpdate(3, JobState.DEP_FAIL, 30.0, attempts=0)])
        isr1, isr2 = store.jobs(kind=JobKind.QUANTUM)[:2]
        assert (isr1.t_launched, isr1.t_running, isr1.t_end, isr1.attempts) == (10.0, 12.0, 20.0, 1)
        assert (isr2.state, isr2.exit_code, isr2.message, isr2.attempts) == (
            JobState.FAILED,
            1,
            "exit code 1",
            2,
        )
        assert isr2.t_running is None and isr2.t_end == 30.0
        counts = store.counts()
        assert counts["isr"][JobState.EXEC_DONE] == 1 and counts["isr"][JobState.FAILED] == 1
        assert counts["calibrate"][JobState.DEP_FAIL] == 1
        assert set(counts["isr"]) == set(JobState)  # every state present
        # Ended since t=25: the failure only; first starts per label.
        _, recent, first = store.label_stats(ended_since=25.0)
        # The earliest launch or start of any of the label's jobs.
        assert recent == {"isr": 1, "calibrate": 0} and first == {"isr": 10.0}
        rows = store.history_rows()
        assert rows[1][:6] == ("isr", "exec_done", 12.0, 20.0, 1, 0)
        assert rows[2][2] == 11.0  # never seen running: its launch stands for its start

        # A restart: what did not succeed, and the final job, start again.
        store.apply([JobUpdate(4, JobState.EXEC_DONE, 40.0)])
        assert store.reset_unfinished() == 4  # pipetaskInit never ran here
        assert [j.state for j in store.jobs()] == [
            JobState.PENDING,  # never ran in this test
            JobState.EXEC_DONE,
            JobState.PENDING,
            JobState.PENDING,
            JobState.PENDING,
        ]
        reset = store.jobs()[2]
        assert (reset.exit_code, reset.message, reset.t_end, reset.attempts) == (None, None, None, 2)
        store.end_run(RunState.FAILED)
        run = store.run()
        assert run.state == RunState.FAILED and run.pid == os.getpid() and run.submissions == 1
        assert run.end_time is not None and run.start_time is not None and run.end_time >= run.start_time


def test_the_scheduler_reads_states_priorities_and_edges_from_the_store(tmp_path: Path) -> None:
    """What a run (or a restart) starts from: ctrl_bps's priorities, as
    numbers or text, per label; done and pending jobs; edges as blocks."""
    jobs = [job(0, "pipetaskInit", tmp_path), *(job(seq, "isr", tmp_path) for seq in (1, 2))]
    jobs += [job(3, "calibrate", tmp_path), job(4, "calibrate", tmp_path), job(5, "finalJob", tmp_path)]
    for record, priority in zip(jobs[1:5], (7, 7, "9", "high"), strict=True):
        record.resources["priority"] = priority
    jobs[1].state = JobState.EXEC_DONE
    jobs[2].state = JobState.FAILED
    with write_store(tmp_path, jobs, [(0, 1), (0, 2), (1, 3), (2, 4)]) as store:
        assert list(store.priorities()) == [0, 7, 7, 9, 0, 0]  # "high" is not a number
        assert list(store.seqs(states=[JobState.EXEC_DONE])) == [1]
        assert list(store.seqs(kind=JobKind.QUANTUM, states=[JobState.PENDING])) == [3, 4]
        assert store.edges() == [(0, 1), (0, 2), (1, 3), (2, 4)]
        assert store.seqs_named(["calibrate_4", "nothing", "isr_1"]) == {"isr_1": 1, "calibrate_4": 4}
        scheduler = scheduler_for(store)
        # 3's parent succeeded; 4's failed, so it waits for ever (the runner marks it dep_fail).
        assert (scheduler.pending, scheduler.take(5)) == (2, [3])
        assert scheduler_for(store, selected={4}).take(5) == []


def test_readers_see_commits_and_cannot_write(tmp_path: Path) -> None:
    with _run(tmp_path) as writer, JobStateStore.open(str(tmp_path)) as reader:
        # (the plan is written under a rollback journal; readers and the
        # runner's writes then share the store through the write-ahead log)
        with sqlite3.connect(tmp_path / STORE_FILENAME) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        writer.apply([JobUpdate(1, JobState.RUNNING, 1.0)])
        assert reader.job("isr_1").state == JobState.RUNNING  # type: ignore[union-attr]
        with pytest.raises(Exception, match="readonly"):
            reader.apply([JobUpdate(1, JobState.FAILED, 2.0)])


def test_missing_or_empty_stores(tmp_path: Path) -> None:
    with pytest.raises(RunNotFoundError, match="No gen3_workflow job-state store"):
        JobStateStore.open(str(tmp_path))
    with JobStateStore.open(str(tmp_path), writable=True) as store, pytest.raises(RunNotFoundError):
        store.run()  # created, but prepare has not written the run yet


def test_liveness(tmp_path: Path) -> None:
    with _run(tmp_path) as store:
        assert liveness(store.run()) == Liveness.ENDED  # prepared
        store.start_run()
        run = store.run()
        assert liveness(run) == Liveness.ALIVE  # this process
        assert run.start_time is not None
        # A pid reused by a process that started long after the run did.
        assert liveness(dataclasses.replace(run, start_time=run.start_time - 3600)) == Liveness.GONE
        assert liveness(dataclasses.replace(run, host="elsewhere.example")) == Liveness.ELSEWHERE
        gone = subprocess.Popen(["true"])
        gone.wait()
        set_run(tmp_path, pid=gone.pid)
        assert liveness(store.run()) == Liveness.GONE
        store.end_run(RunState.SUCCEEDED)
        assert liveness(store.run()) == Liveness.ENDED
        assert time.time() >= run.start_time


_LEGACY_JOBS = """CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, label TEXT NOT NULL,
    kind TEXT NOT NULL, data_id TEXT NOT NULL, command TEXT NOT NULL, resources TEXT NOT NULL,
    stdout TEXT NOT NULL, stderr TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, exit_code INTEGER,
    t_launched REAL, t_running REAL, t_end REAL, message TEXT
)"""


def test_a_store_written_before_templates_is_read_and_restarted(tmp_path: Path) -> None:
    """A run prepared by an older plug-in (each job's whole command in its
    row) is still read, reported and restarted after an upgrade."""
    db = sqlite3.connect(tmp_path / STORE_FILENAME)
    db.execute(_LEGACY_JOBS)
    db.execute("CREATE TABLE edges (parent INTEGER NOT NULL, child INTEGER NOT NULL)")
    db.execute(
        "CREATE TABLE run (id INTEGER PRIMARY KEY CHECK (id = 1), name TEXT NOT NULL, "
        "submit_dir TEXT NOT NULL, info TEXT NOT NULL, state TEXT NOT NULL, pid INTEGER, host TEXT, "
        "start_time REAL, end_time REAL, submissions INTEGER NOT NULL DEFAULT 0)"
    )
    db.execute(
        "INSERT INTO run (id, name, submit_dir, info, state) VALUES (1, 'old', ?, '{}', 'failed')",
        (str(tmp_path),),
    )
    command = JobCommand(("pipetask", "run-qbb", "a b"), (("X", "1"),))
    for seq, state in ((0, "exec_done"), (1, "failed")):
        db.execute(
            "INSERT INTO jobs (seq, name, label, kind, data_id, command, resources, stdout, stderr, state) "
            "VALUES (?, ?, 'isr', 'quantum', '{}', ?, '{\"priority\": 3}', ?, ?, ?)",
            (seq, f"isr_{seq}", command.to_json(), f"/l/isr_{seq}.out", f"/l/isr_{seq}.err", state),
        )
    db.execute("INSERT INTO edges VALUES (0, 1)")
    db.commit()
    db.close()
    with JobStateStore.open(str(tmp_path)) as store:
        failed = store.job("isr_1")
        assert failed is not None and (failed.command, failed.stderr) == (command, "/l/isr_1.err")
        assert store.counts()["isr"][JobState.FAILED] == 1
        assert list(store.priorities()) == [3, 3]
        assert [row[8] for row in store.history_rows()] == ["/l/isr_0.err", "/l/isr_1.err"]
        assert store.edges() == [(0, 1)]  # its edges are rows, not blocks
    with JobStateStore.open(str(tmp_path), writable=True) as store:
        assert store.edges() == [(0, 1)]
        assert store.reset_unfinished() == 1
        assert [job.state for job in store.jobs()] == [JobState.EXEC_DONE, JobState.PENDING]


def test_a_template_takes_exactly_one_word_per_hole() -> None:
    template = JobTemplate(("pipetask", "--qgraph-node-id", None), (("X", "1"),), {}, "/logs/isr")
    assert template.command(["abc"]) == JobCommand(("pipetask", "--qgraph-node-id", "abc"), (("X", "1"),))
    for words in ([], ["a", "b"]):
        with pytest.raises(ValueError, match="holes"):
            template.command(words)


def test_a_plan_written_while_a_reader_looks_goes_through_the_log(tmp_path: Path) -> None:
    """bps status (or a benchmark's poller) may open a store while prepare
    writes it: the plan is written anyway, and readers keep reading."""
    path = str(tmp_path / STORE_FILENAME)
    with JobStateStore(path, writable=True) as writer, JobStateStore(path) as reader:
        plan = WorkflowPlan.from_records([job(0, "isr", tmp_path), job(1, "calibrate", tmp_path)], [(0, 1)])
        writer.write_plan("r", str(tmp_path), RunInfo(), plan)
        assert [j.name for j in reader.jobs()] == ["isr_0", "calibrate_1"]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_lookups_of_many_jobs_go_in_chunks_sqlite_takes(tmp_path: Path) -> None:
    assert [(len(chunk), marks.count("?")) for chunk, marks in in_chunks(list(range(1001)))] == [
        (500, 500),
        (500, 500),
        (1, 1),
    ]
    jobs = [job(seq, "isr", tmp_path) for seq in range(1203)]
    with write_store(tmp_path, jobs) as store:
        wanted = list(range(1202, -1, -2))
        assert [record.seq for record in store.jobs_by_seq(wanted)] == wanted
        assert store.seqs_named([f"isr_{seq}" for seq in wanted]) == {f"isr_{seq}": seq for seq in wanted}
