"""What the suite's private servers (Slurm, PostgreSQL) share.

Each lives in one directory: its configuration, state, logs and a JSON
record of what runs there, so that another process can `attach` to it and
stop it.  Each is a context manager, and each has the same command line::

    python -m desc.gen3_workflow.testing.<module> start|stop --dir DIR

``start`` leaves the server running and prints the ``export`` lines its
clients need (on stdout, and what else it made on stderr); ``stop`` stops
what the directory's record names.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, ClassVar, Self

__all__ = ["PrivateServer"]


class PrivateServer:
    """Base of `~.slurm_cluster.SlurmCluster` and `~.postgres_server.PostgresServer`.

    Parameters
    ----------
    directory : `str` or `~pathlib.Path`, optional
        Where everything goes. A temporary one is made (and removed by
        `stop`) if not given; a given one is kept.
    """

    RECORD: ClassVar[str]
    """Name of the JSON record in the directory."""
    DIR_PREFIX: ClassVar[str]
    """Prefix of a temporary directory."""

    env: dict[str, str]
    """Variables clients need in their environment."""
    start_seconds: float = 0.0
    """How long `start` took."""

    def __init__(self, directory: str | Path | None = None) -> None:
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix=self.DIR_PREFIX) if directory is None else directory)
        self.directory = self.directory.resolve()

    def start(self) -> Self:
        """Start the server; return ``self`` once it serves."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop everything the server started; idempotent."""
        raise NotImplementedError

    @classmethod
    def attach(cls, directory: str | Path) -> Self:
        """Return a handle (for `stop`) on a server another process started
        in ``directory``."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _save_record(self, info: dict[str, Any]) -> None:
        (self.directory / self.RECORD).write_text(json.dumps(info, indent=1) + "\n")

    def _read_record(self) -> dict[str, Any]:
        path = self.directory / self.RECORD
        return json.loads(path.read_text()) if path.exists() else {}

    def _forget(self) -> None:
        """After a stop: no record left, and a temporary directory removed."""
        (self.directory / self.RECORD).unlink(missing_ok=True)
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        """Add the server's own ``start`` options to the command line."""

    @classmethod
    def from_options(cls, directory: Path, options: argparse.Namespace) -> Self:
        """The server ``start`` makes, from its options."""
        return cls(directory)

    def describe(self) -> list[str]:
        """Lines that tell a person what ``start`` made (beyond `env`), e.g. addresses."""
        return []

    @classmethod
    def main(cls, argv: list[str] | None = None, description: str = "") -> int:
        """The command line: start or stop the server in ``--dir``; return the exit status.

        Parameters
        ----------
        argv : `list` [`str`], optional
            Command-line arguments; `sys.argv` if not given.
        description : `str`, optional
            What ``--help`` says first.
        """
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("action", choices=["start", "stop"])
        parser.add_argument("--dir", required=True, type=Path, help="directory for config, state and logs")
        cls.add_options(parser)
        args = parser.parse_args(argv)
        if args.action == "stop":
            cls.attach(args.dir).stop()
            return 0
        args.dir.mkdir(parents=True, exist_ok=True)
        try:
            server = cls.from_options(args.dir, args).start()
        except RuntimeError as exc:
            print(f"cannot start: {exc}", file=sys.stderr)
            return 1
        # The server must outlive this command.
        atexit.unregister(server.stop)
        print(f"started in {server.start_seconds:.1f} s: {server!r}", file=sys.stderr)
        # On stderr, so that stdout stays fit for the shell's eval.
        for line in server.describe():
            print(line, file=sys.stderr)
        for name, value in server.env.items():
            print(f"export {name}={value}")
        return 0
