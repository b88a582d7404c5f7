"""Running ``bps submit`` for a benchmark: in a session of its own, killed
whole on the way out, with its wall time and the peak RSS of its process
tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ..testing.null_run import kill_session

__all__ = ["submit"]


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
