"""``gen3wf-watch SUBMIT_DIR``: follow a run's progress from another shell.

The view ``bps submit`` shows (see `desc.gen3_workflow.reporting.progress`), read from
the run's job-state store without writing to it.  Redrawn in place on a
terminal, else printed every ``--interval`` seconds; exits when the run
ends (status 0 if it succeeded, 1 otherwise).  ``--once`` prints one
snapshot and exits: status 1 if the run has ended without succeeding, else 0.
"""

from __future__ import annotations

import sys
import time

import click

__all__ = ["main"]

POLL_SECONDS = 1.0


@click.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--once", is_flag=True, help="Print one snapshot and exit.")
@click.option(
    "--interval",
    default=60.0,
    show_default=True,
    help="Seconds between reports when the output is not a terminal (a terminal is redrawn every second).",
)
def main(submit_dir: str, once: bool, interval: float) -> None:
    """Show the progress of the run in SUBMIT_DIR until it ends."""
    from ..reporting.progress import ProgressReporter
    from ..store.job_store import UNREADABLE, JobStateStore
    from ..store.liveness import Liveness, liveness
    from ..store.records import RunState

    try:
        store = JobStateStore.open(submit_dir)
        run = store.run()
        reporter = ProgressReporter(
            submit_dir, interval=max(interval, 0.1), stream=sys.stdout, mode="lines" if once else None
        )
    except UNREADABLE as exc:
        click.echo(f"gen3wf-watch: {exc}", err=True)
        sys.exit(2)
    try:
        click.echo(f"Run {run.name} in {run.submit_dir}: {run.state}")

        if once:
            reporter.report()
            # As its store records it: failed, cancelled or interrupted.
            ended = run.state not in (RunState.RUNNING, RunState.PREPARED, RunState.SUCCEEDED)
            sys.exit(1 if ended else 0)
        # A partial run (ParslGraph.run(jobs=...)) ends PREPARED, with an end time.
        while liveness(run) in (Liveness.ALIVE, Liveness.ELSEWHERE) or (
            run.state == RunState.PREPARED and run.end_time is None
        ):
            reporter.maybe_report()
            time.sleep(POLL_SECONDS)
            run = store.run()
        reporter.close()
        click.echo(f"Run ended: {run.state}")
        sys.exit(0 if run.state == RunState.SUCCEEDED else 1)
    finally:
        reporter.close(final_report=False)
        store.close()


if __name__ == "__main__":
    main()
