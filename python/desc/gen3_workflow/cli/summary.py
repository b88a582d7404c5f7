"""``workflow_summary SUBMIT_DIR [--json]``: what a run did, per task label.

Job counts by state, total and mean wall time, CPU time and peak memory
(with parsl resource monitoring), the slowest jobs and every failure with
its exit code, message and log file.  Read-only: it works during a run,
after it, and on a copy of a submit directory.
"""

from __future__ import annotations

import json
import sys

import click

__all__ = ["main"]


@click.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of text.")
@click.option("--slowest", default=5, show_default=True, help="How many of the longest jobs to list.")
@click.option("--max-failures", default=20, show_default=True, help="Failed jobs listed in the text output.")
def main(submit_dir: str, as_json: bool, slowest: int, max_failures: int) -> None:
    """Summarize the run in SUBMIT_DIR (its job-state store and, if there is
    one, parsl's monitoring.db)."""
    from ..reporting.history import load_job_history
    from ..reporting.summary import format_summary, summarize
    from ..store.job_store import UNREADABLE

    try:
        history = load_job_history(submit_dir)
    except UNREADABLE as exc:
        click.echo(f"workflow_summary: {exc}", err=True)
        sys.exit(2)
    summary = summarize(history, slowest=slowest)
    if as_json:
        click.echo(json.dumps(summary, indent=1))
    else:
        click.echo(format_summary(summary, max_failures=max_failures))


if __name__ == "__main__":
    main()
