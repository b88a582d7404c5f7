"""``gen3wf-watch SUBMIT_DIR``: follow a run's progress from another shell.

The view ``bps submit`` shows (see `desc.gen3_workflow.progress`), read from
the run's job-state store without writing to it.  Redrawn in place on a
terminal, else printed every ``--interval`` seconds; exits when the run
ends (status 0 if it succeeded, 1 otherwise).  ``--once`` prints one
snapshot and exits.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from typing import Any

import click

__all__ = ["main"]

POLL_SECONDS = 1.0


def _run_over(run: dict[str, Any]) -> bool:
    """Whether the run has ended (or its submitting process died)."""
    from ..run_index import submitter_alive
    from ..state_store import RunState

    state = RunState(run["state"])
    if state == RunState.RUNNING:
        if run.get("host") and run["host"] != os.uname().nodename:
            return False  # Cannot see that process from here: trust the store.
        return run.get("pid") is not None and not submitter_alive(run["pid"], run.get("start_time"))
    if state == RunState.PREPARED:
        return run.get("end_time") is not None  # a partial run that ended
    return True


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
    from ..progress import ProgressReporter
    from ..state_store import JobStateStore, RunState

    try:
        store = JobStateStore.in_dir(submit_dir)
        run = store.run_info()
        reporter = ProgressReporter(
            store, interval=max(interval, 0.1), stream=sys.stdout, mode="lines" if once else None
        )
    except (FileNotFoundError, RuntimeError, sqlite3.Error) as exc:
        click.echo(f"gen3wf-watch: {exc}", err=True)
        sys.exit(2)
    try:
        click.echo(f"Run {run['name']} in {run['submit_dir']}: {run['state']}")
        if once:
            reporter.report()
            return
        while not _run_over(run):
            reporter.maybe_report()
            time.sleep(POLL_SECONDS)
            run = store.run_info()
        reporter.close()
        click.echo(f"Run ended: {run['state']}")
        sys.exit(0 if run["state"] == RunState.SUCCEEDED else 1)
    finally:
        reporter.close(final_report=False)
        store.close()


if __name__ == "__main__":
    main()
