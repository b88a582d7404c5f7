"""``plot_jobs_history SUBMIT_DIR [-o OUT.png]``: a run's history as a PNG.

A timeline of jobs by task label, the number of jobs running at once and
the jobs finished per minute (see `desc.gen3_workflow.reporting.plots`).
Headless (matplotlib's Agg backend); fast for 10^5 jobs.
"""

from __future__ import annotations

import os
import sys
import time

import click

__all__ = ["main"]

DEFAULT_NAME = "jobs_history.png"


@click.command()
@click.argument("submit_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", default=None, help=f"PNG file to write (default: SUBMIT_DIR/{DEFAULT_NAME}).")
@click.option("--bins", default=200, show_default=True, help="Time bins of the aggregated panels.")
def main(submit_dir: str, output: str | None, bins: int) -> None:
    """Plot the jobs of the run in SUBMIT_DIR."""
    from ..reporting.history import load_job_history
    from ..reporting.plots import plot_history
    from ..store.job_store import UNREADABLE

    start = time.monotonic()
    try:
        history = load_job_history(submit_dir, monitoring=False)
    except UNREADABLE as exc:
        click.echo(f"plot_jobs_history: {exc}", err=True)
        sys.exit(2)
    output = output or os.path.join(submit_dir, DEFAULT_NAME)
    plot_history(history, output, bins=max(bins, 1))
    click.echo(f"Wrote {output} ({len(history)} jobs, {time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
