"""A private PostgreSQL server for fault tests: initdb into a temporary folder, start, stop.

The suite's own server (``BILLING_API_TEST_DATABASE_URL``) must never be stopped by a test,
so tests that kill, pause or restart the database run one of these instead. It listens on
127.0.0.1 on a free port and keeps its Unix socket inside its own folder. Durability is
switched off (``fsync=off`` and friends): the data is thrown away at the end anyway.

PostgreSQL refuses to run as root, so as root every server command runs as the ``postgres``
OS user (``runuser -u postgres --``) on a folder that user owns; as any other user the
commands run directly. Binaries come from Debian's ``/usr/lib/postgresql/<version>/bin``
(the newest installed version) or, failing that, from ``PATH``.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SERVER_USER = "postgres"
ROLE = "billing"
PASSWORD = "billing"  # a throwaway server on loopback
START_TIMEOUT = 30


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries, or no way to run them as a non-root user."""


def find_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, else ``PATH``'s."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise PostgresUnavailable("no PostgreSQL server binaries (initdb) found")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgInstance:
    """One private server: ``start``, ``stop`` (immediate by default), ``pause``/``resume``."""

    def __init__(self, bindir: Path, root: Path, port: int) -> None:
        self.bindir = bindir
        self.root = root  # owned by the server user; holds data/, the socket and the log
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self._as_server_user = os.geteuid() == 0

    # --- commands -----------------------------------------------------------------------

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_server_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip()}\n"
                f"{self.log_tail()}"
            )
        return result

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def initdb(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", SERVER_USER, "--auth=trust", "-E", "UTF8",
            "--no-locale", "--no-sync", "--no-instructions",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", str(START_TIMEOUT), "start", timeout=START_TIMEOUT + 10,
        )

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: every backend is killed at once, as in a crash or a power cut."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def is_running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def pause(self) -> None:
        """Freeze the postmaster (SIGSTOP): the port accepts TCP connections, then says
        nothing, like a hung host. Backends already connected keep working."""
        os.kill(self.postmaster_pid(), signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.postmaster_pid(), signal.SIGCONT)

    # --- roles and databases ------------------------------------------------------------

    def connect(self, database: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        """A superuser connection (autocommit) to ``database``."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SERVER_USER, dbname=database,
            autocommit=True, connect_timeout=10,
        )

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` owned by the ``billing`` role (made on first use); return its
        SQLAlchemy URL. ``template`` copies another database (it must have no sessions)."""
        with self.connect() as conn:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ROLE,))
            if exists.fetchone() is None:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(PASSWORD)
                    )
                )
            statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(ROLE)
            )
            if template is not None:
                statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
            conn.execute(statement)
        return self.url(name)

    def url(self, database: str, **query: str) -> str:
        suffix = "&".join(f"{k}={v}" for k, v in query.items())
        return (
            f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:{self.port}/{database}"
            + (f"?{suffix}" if suffix else "")
        )

    def wait_until_accepting(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect():
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


@contextmanager
def private_postgres() -> Iterator[PgInstance]:
    """A started private server; stopped and deleted afterwards whatever happened.

    Raises ``PostgresUnavailable`` when there are no server binaries or, as root, no
    ``postgres`` OS user to run them."""
    bindir = find_bindir()
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError:
            raise PostgresUnavailable(
                f"running as root and there is no {SERVER_USER!r} user"
            ) from None
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root and runuser is missing")
    # Not under pytest's tmp_path: its root-owned 0700 parents would lock the server user out.
    root = Path(tempfile.mkdtemp(prefix="billing-pg-"))
    try:
        if owner is not None:
            os.chown(root, owner.pw_uid, owner.pw_gid)
        instance = PgInstance(bindir, root, free_port())
        instance.initdb()
        instance.start()
        try:
            yield instance
        finally:
            if instance.is_running():
                with suppress(OSError, ValueError):
                    instance.resume()  # a paused postmaster cannot be stopped
                instance.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
