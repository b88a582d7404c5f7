"""Running ``bps submit`` for a benchmark: in a session of its own, killed
whole on the way out, with its wall time and the peak RSS of its process
tree."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from ..testing.null_run import kill_session

K = TypeVar("K")

__all__ = ["demo_workdir", "medians_of", "submit"]


def submit(
    path: Path,
    workdir: Path,
    venv: str = sys.prefix,
    launcher: tuple[str, ...] = (),
    extra_env: dict[str, str] | None = None,
) -> tuple[int, float, float, str]:
    """Run ``bps submit`` of ``venv`` (through ``launcher``, e.g. ``salloc
    -N 3``); exit status, wall seconds, peak RSS (MB), output."""
    bin_dir = os.path.join(venv, "bin")
    env = {**os.environ, "PWD": str(workdir), **(extra_env or {})}
    if venv != sys.prefix:
        # Another installation: its own pipetask and butler commands.
        env.update(PATH=f"{bin_dir}:{env['PATH']}", CTRL_MPEXEC_DIR=venv, DAF_BUTLER_DIR=venv)
    start = time.perf_counter()
    with open(workdir / (path.stem + ".log"), "w+") as log:
        # A session of its own, killed whole on the way out: a benchmark
        # stopped mid-run must not leave a plug-in's workers or interchange.
        proc = subprocess.Popen(
            [*launcher, os.path.join(bin_dir, "bps"), "--no-log-tty", "submit", str(path)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            kill_session(proc.pid)
        wall = time.perf_counter() - start
        log.seek(0)
        output = log.read()
    return os.waitstatus_to_exitcode(status), wall, usage.ru_maxrss / 1024, output


def medians_of(results: Mapping[K, list[dict[str, float]]]) -> dict[K, dict[str, float]]:
    """The median of each figure, per set-up that has runs."""
    return {
        setup: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for setup, runs in results.items()
        if runs
    }


def demo_workdir(workdir: str | None, prefix: str, visits: int, detectors: int) -> tuple[Path, Path]:
    """A benchmark's working directory (``workdir``, else a new temporary
    one) and the demo repository in it, made at the given size if absent."""
    from ..demo.repo import make_demo_repo
    from ..host.environment import prepare_environment

    prepare_environment()
    where = Path(workdir or tempfile.mkdtemp(prefix=prefix)).resolve()
    repo = where / "repo"
    if not repo.exists():
        make_demo_repo(str(repo), n_visits=visits, n_detectors=detectors)
    return where, repo
