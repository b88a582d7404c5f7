"""``gen3wf-demo``: build the demo repository and run it through ``bps submit``.

What ``make demo`` runs.  The repository (SQLite registry) is built once in
``WORKDIR/repo``; every call then submits the packaged ``bps_drp.yaml``
example with this plug-in, from ``WORKDIR`` (so submit directories land in
``WORKDIR/submit``), shows ``bps report`` of the run and lists the datasets
it registered.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import resources

import click

from ..constants import SERVICE_CLASS

__all__ = ["main"]


def example_config(name: str) -> str:
    """Path of a bps example shipped in the package's ``config/``."""
    return str(resources.files("desc.gen3_workflow").joinpath("config", name))


def _bps() -> str:
    # The bps script that belongs to this interpreter, even when its
    # environment is not activated.
    return shutil.which("bps", path=os.path.join(sys.prefix, "bin")) or "bps"


@click.command()
@click.option("--workdir", default="demo_work", show_default=True, help="Where the repository and runs go.")
@click.option("--visits", default=4, show_default=True, help="Visits in a newly built repository.")
@click.option(
    "--detectors", default=4, show_default=True, help="Detectors per visit in a newly built repository."
)
@click.option(
    "--config", "bps_file", default=None, help="bps file to submit (default: the packaged bps_drp.yaml)."
)
def main(workdir: str, visits: int, detectors: int, bps_file: str | None) -> None:
    """Build (once) the demo repository, run the demo pipeline, show the result."""
    from ..demo.repo import make_demo_repo
    from ..reporting.outputs import print_outputs

    workdir = os.path.abspath(workdir)
    repo = os.path.join(workdir, "repo")
    os.makedirs(workdir, exist_ok=True)
    if not os.path.exists(os.path.join(repo, "butler.yaml")):
        shutil.rmtree(repo, ignore_errors=True)
        start = time.monotonic()
        make_demo_repo(repo, n_visits=visits, n_detectors=detectors)
        click.echo(
            f"Built demo repository {repo} ({visits} visits x {detectors} detectors) "
            f"in {time.monotonic() - start:.1f} s"
        )
    else:
        click.echo(f"Using existing demo repository {repo}")
    bps_file = os.path.abspath(bps_file or example_config("bps_drp.yaml"))
    # ctrl_bps puts submit directories under ${PWD}, which must follow cwd.
    env = dict(os.environ, GEN3WF_DEMO_REPO=repo, PWD=workdir)
    command = [_bps(), "--no-log-tty", "submit", bps_file]
    click.echo(f"$ GEN3WF_DEMO_REPO={repo} {' '.join(command[1:])}")
    start = time.monotonic()
    proc = subprocess.run(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    elapsed = time.monotonic() - start
    click.echo(proc.stdout.rstrip())
    match = re.search(r"^Submit dir: (.+)$", proc.stdout, re.MULTILINE)
    if match:
        submit_dir = match.group(1).strip()
        report = [_bps(), "report", "--id", submit_dir]
        click.echo(f"\n$ BPS_WMS_SERVICE_CLASS={SERVICE_CLASS} {' '.join(report[1:])}")
        subprocess.run(report, env=dict(env, BPS_WMS_SERVICE_CLASS=SERVICE_CLASS), check=False)
        print_outputs(submit_dir)
    click.echo(f"\nbps submit finished in {elapsed:.1f} s with exit code {proc.returncode}")
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
