"""A throw-away PostgreSQL server for tests with butler registries on PostgreSQL.

One directory holds the cluster (``data/``), its unix socket (``socket/``), its log
(``log/postgres.log``) and a credentials file (``db-auth.yaml``, mode 0600) in the
format `lsst.utils.db_auth.DbAuth` reads. The server listens on a free port of
127.0.0.1 only; a login role with a generated password owns one database (with the
``btree_gist`` extension the butler needs). Clients find the password through
``LSST_DB_AUTH`` (see `PostgresServer.env`), so it never appears in a butler or bps
config, on a command line or in a log. Manual runs:
``python -m desc.gen3_workflow.testing.postgres_server start|stop --dir DIR``.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from ..execution.job_io.processes import is_alive, kill_processes, process_name
from .daemons import PrivateServer

__all__ = ["PostgresServer", "PostgresServerError", "find_bindir", "postgres_unavailable_reason"]

_BINARIES = ("initdb", "pg_ctl", "postgres")
_OS_USER = "postgres"
"""The account the server runs as when we are root (PostgreSQL refuses to run as root)."""
_SUPERUSER = "postgres"
"""The cluster's superuser role, reached through the private unix socket only."""

_CONF_TEMPLATE = """\
# Written by desc.gen3_workflow.testing.postgres_server at each start.
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{socket_dir}'
unix_socket_permissions = 0700
password_encryption = 'scram-sha-256'
max_connections = 200
# A test server: speed over durability.
fsync = off
synchronous_commit = off
full_page_writes = off
"""


class PostgresServerError(RuntimeError):
    """The server could not be started or used."""


def find_bindir() -> Path | None:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or `None`.

    ``$GEN3WF_PG_BINDIR`` first, then ``PATH``, then the newest Debian
    ``/usr/lib/postgresql/<version>/bin``.
    """
    candidates: list[Path] = []
    if env_dir := os.environ.get("GEN3WF_PG_BINDIR"):
        candidates.append(Path(env_dir))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)]
    for candidate in candidates:
        if all(os.access(candidate / name, os.X_OK) for name in _BINARIES):
            return candidate
    return None


def postgres_unavailable_reason() -> str | None:
    """Say why a `PostgresServer` cannot run here, or return `None` if it can."""
    if find_bindir() is None:
        return "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found (install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_OS_USER)
        except KeyError:
            return f"running as root, but there is no {_OS_USER!r} account to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (v3) is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer(PrivateServer):
    """A private PostgreSQL cluster, database and login role on this machine.

    Parameters
    ----------
    directory : `str` or `~pathlib.Path`, optional
        Directory for the cluster, socket, log and credentials. A temporary one is
        made (and removed by `stop`) if not given; a given one is kept, and a
        cluster already in it is reused by `start`.
    database : `str`, optional
        Name of the database to create.
    user : `str`, optional
        Name of the login role that owns it.
    start_timeout : `float`, optional
        Seconds `start` waits for the server to accept connections.

    Attributes
    ----------
    directory : `~pathlib.Path`
        Directory holding everything the server writes.
    data_dir, socket_dir, log_path, auth_path : `~pathlib.Path`
        The cluster, its unix socket directory, its log and the credentials file.
    host : `str`
        ``127.0.0.1``.
    port : `int` or `None`
        TCP port, once started.
    database, user : `str`
        Database and login role for clients.
    env : `dict` [`str`, `str`]
        Variables (``LSST_DB_AUTH``) clients need in their environment.
    start_seconds : `float`
        How long `start` took.
    """

    RECORD = "server.json"
    DIR_PREFIX = "pg-server-"

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        database: str = "butler",
        user: str = "gen3wf",
        start_timeout: float = 60.0,
    ) -> None:
        super().__init__(directory)
        self.data_dir = self.directory / "data"
        self.socket_dir = self.directory / "socket"
        self.log_path = self.directory / "log" / "postgres.log"
        self.auth_path = self.directory / "db-auth.yaml"
        self.env = {"LSST_DB_AUTH": str(self.auth_path)}
        self.host = "127.0.0.1"
        self.port: int | None = None
        self.database = database
        self.user = user
        self.start_timeout = start_timeout
        self.start_seconds = 0.0
        self._bindir: Path | None = None
        self._run_as = _OS_USER if os.geteuid() == 0 else None

    def __repr__(self) -> str:
        return f"PostgresServer({str(self.directory)!r}, port={self.port}, database={self.database!r})"

    # ---------------------------------------------------------------- URLs

    def url(self, driver: str = "psycopg") -> str:
        """Return the SQLAlchemy URL of the database, without any password.

        Parameters
        ----------
        driver : `str`, optional
            SQLAlchemy driver after ``postgresql+``; empty for plain ``postgresql://``.
        """
        if self.port is None:
            raise PostgresServerError("the server has not been started")
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{self.database}"

    def seed_config(self, namespace: str | None = None) -> dict[str, Any]:
        """Return a butler seed config for a registry in this database.

        Parameters
        ----------
        namespace : `str`, optional
            PostgreSQL schema holding the registry tables (made by ``Butler.makeRepo``).
        """
        registry: dict[str, Any] = {"db": self.url()}
        if namespace is not None:
            registry["namespace"] = namespace
        return {"registry": registry}

    # ------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        """Whether the postmaster of this cluster is running."""
        return self._postmaster_pid() is not None

    def start(self) -> PostgresServer:
        """Initialise the cluster if needed, start it, set up the role and database.

        A new password is generated at each start and written to `auth_path` only.

        Raises
        ------
        PostgresServerError
            If a step fails; the message holds the tail of the server log.
            Anything started is stopped again.
        """
        if self.running:
            if self.port is not None:
                return self
            raise PostgresServerError(f"a server already runs in {self.data_dir}: stop it first")
        begin = time.monotonic()
        bindir = find_bindir()
        if bindir is None:
            raise PostgresServerError("PostgreSQL server binaries not found (install postgresql)")
        self._bindir = bindir
        atexit.register(self.stop)
        try:
            self._prepare_dirs()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb()
            for attempt in range(3):
                self.port = _free_port()
                self._write_server_conf()
                self._write_info()
                if self._pg_ctl_start():
                    break
                if attempt == 2 or "could not bind" not in self._log_tail():
                    raise PostgresServerError(f"pg_ctl start failed\n{self._log_tail()}")
            self._setup_role_and_database()
            self.start_seconds = time.monotonic() - begin
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``); idempotent.

        A temporary root directory (none given) is removed; a given one is kept.
        """
        atexit.unregister(self.stop)
        pid = self._postmaster_pid()
        if pid is not None:
            bindir = self._bindir or find_bindir()
            if bindir is not None:
                pg_ctl = str(bindir / "pg_ctl")
                args = [pg_ctl, "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30"]
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self._run(args, timeout=40)
            if is_alive(pid):
                # Still there: an immediate shutdown, by pid.
                kill_processes({pid}, timeout=10.0)
        self._forget()

    @classmethod
    def attach(cls, directory: str | Path) -> PostgresServer:
        # Docstring inherited.
        server = cls(directory)
        info = server._read_record()
        server.port = info.get("port")
        server.database = info.get("database", server.database)
        server.user = info.get("user", server.user)
        if "bindir" in info:
            server._bindir = Path(info["bindir"])
        return server

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> None:
        # Docstring inherited.
        parser.add_argument("--database", default="butler")
        parser.add_argument("--user", default="gen3wf")

    @classmethod
    def from_options(cls, directory: Path, options: argparse.Namespace) -> PostgresServer:
        # Docstring inherited.
        reason = postgres_unavailable_reason()
        if reason is not None:
            raise PostgresServerError(reason)
        server = cls.attach(directory)
        if server.running and server.port is not None:
            return server  # start() returns at once
        return cls(directory, database=options.database, user=options.user)

    # -------------------------------------------------------------- helpers

    def admin_connect(self, dbname: str = "postgres") -> Any:
        """Return an autocommit `psycopg.Connection` as the superuser, through the unix socket.

        Parameters
        ----------
        dbname : `str`, optional
            Database to connect to.
        """
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=_SUPERUSER, dbname=dbname, autocommit=True
        )

    def _prepare_dirs(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._run_as is None:
            for sub in (self.socket_dir, self.log_path.parent):
                sub.mkdir(exist_ok=True)
            return
        # The server account must get into root_dir (not read it) and own its own parts.
        self.directory.chmod(0o711)
        if closed := [p for p in self.directory.parents if not p.stat().st_mode & 0o001]:
            raise PostgresServerError(f"user {self._run_as} cannot get through {closed[0]} (not o+x)")
        for sub in (self.data_dir, self.socket_dir, self.log_path.parent):
            sub.mkdir(exist_ok=True)
            shutil.chown(sub, self._run_as, self._run_as)
            sub.chmod(0o700)

    def _run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        # PG* variables of the caller must not redirect the tools elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(
            args, cwd=self.directory, env=env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL, user=self._run_as, group=self._run_as, check=False,
        )  # fmt: skip

    def _initdb(self) -> None:
        assert self._bindir is not None
        args = [
            str(self._bindir / "initdb"), "-D", str(self.data_dir), "-U", _SUPERUSER,
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-locale", "-E", "UTF8",
            "--no-sync",
        ]  # fmt: skip
        result = self._run(args, timeout=120)
        if result.returncode != 0:
            raise PostgresServerError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write("\ninclude_if_exists = 'gen3wf.conf'\n")

    def _write_server_conf(self) -> None:
        conf = self.data_dir / "gen3wf.conf"
        conf.write_text(_CONF_TEMPLATE.format(port=self.port, socket_dir=self.socket_dir))
        conf.chmod(0o644)

    def _write_info(self) -> None:
        info = {"port": self.port, "database": self.database, "user": self.user, "bindir": str(self._bindir)}
        self._save_record(info)

    def _pg_ctl_start(self) -> bool:
        assert self._bindir is not None
        args = [
            str(self._bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_path),
            "-w", "-t", str(int(self.start_timeout)),
        ]  # fmt: skip
        return self._run(args, timeout=self.start_timeout + 10).returncode == 0

    def _setup_role_and_database(self) -> None:
        from psycopg import sql

        password = secrets.token_urlsafe(24)
        with self.admin_connect() as conn:
            # Only a SCRAM verifier reaches the server: the password itself is in no
            # statement, so not even a logged statement could show it.
            verifier = conn.pgconn.encrypt_password(password.encode(), self.user.encode(), b"scram-sha-256")
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (self.user,)).fetchone()
            conn.execute(
                sql.SQL("{} ROLE {} LOGIN PASSWORD {}").format(
                    sql.SQL("ALTER" if exists else "CREATE"),
                    sql.Identifier(self.user),
                    sql.Literal(verifier.decode()),
                )
            )
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(self.database), sql.Identifier(self.user)
                    )
                )
        with self.admin_connect(self.database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        self._write_auth(password)

    def _write_auth(self, password: str) -> None:
        entry = {"url": self.url(driver=""), "password": password}
        # Created 0600 from the start: the password is never readable by others.
        tmp = self.auth_path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            yaml.safe_dump([entry], out)
        os.replace(tmp, self.auth_path)

    def _postmaster_pid(self) -> int | None:
        """The pid of this cluster's running postmaster (a stale pid file gives `None`)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if is_alive(pid) and process_name(pid) == "postgres" else None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            tail = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no server log)"
        return f"--- {self.log_path} ---\n" + "\n".join(tail)


if __name__ == "__main__":
    sys.exit(PostgresServer.main(description=__doc__.splitlines()[0]))
