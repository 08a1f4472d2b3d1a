"""``BILLING_API_READ_DATABASE_URL``: document downloads from a PostgreSQL hot standby.

A primary and a streaming replica are built for this test alone, from Debian's PostgreSQL
binaries, on free loopback ports in a temporary folder (``initdb``, ``pg_basebackup -R``), so
the test needs no ``BILLING_API_TEST_DATABASE_URL`` and runs in both of CI's runs. initdb
refuses to run as root: as root (CI) the clusters run as the ``postgres`` OS user in a folder
it owns. The API is served by real uvicorn (tests/http_server.py) with the primary as its
database and the standby as its read replica. With the standby's replay paused (so it
provably lags), the test shows that downloads read the standby, that a key revoked on the
primary is refused at once, and that with the standby gone downloads are 503 problem details
while authentication still works.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text

from billing_api import migrate
from billing_api.access import keys
from billing_api.app import create_app
from billing_api.cli.serve import configuration_lines
from billing_api.db import make_engine, make_session_factory, transaction
from billing_api.demo.generator import build_demo
from billing_api.environments import Environment
from billing_api.settings import ConfigurationError, Settings, load_settings
from tests.access_helpers import open_demo_api, test_app
from tests.conftest import TEST_SECRET, skip_or_fail
from tests.http_server import serve
from tests.test_ops import _free_port

TODAY = dt.date(2026, 11, 25)
WINDOW = "startDate=20200101&endDate=20301231"
PASSWORD = secrets.token_urlsafe(16)  # the clusters' superuser "billing"
CHANGED = "Changed on the primary only"
WHOAMI = "/api/v4/whoami"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL server binaries (``/usr/lib/postgresql/N/bin``)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    return found[-1].parent if found else None


@dataclass
class Cluster:
    """Commands run as the ``postgres`` OS user when this process is root."""

    bin: Path
    folder: Path
    as_postgres: bool

    def run(self, *command: str, **env: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        environment = {**os.environ, **env}
        # runuser keeps the environment; HOME must be one the user can read.
        done = subprocess.run([*prefix, str(self.bin / command[0]), *command[1:]],
                              env=environment, cwd=self.folder, capture_output=True,
                              text=True, timeout=180, check=False)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"

    def start(self, data: str) -> None:
        self.run("pg_ctl", "-D", data, "-l", f"{data}.log", "-w", "-t", "120", "start")

    def stop(self, data: str) -> None:
        if (self.folder / data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")


def url(port: int, database: str = "billing") -> str:
    return f"postgresql+psycopg://billing:{PASSWORD}@127.0.0.1:{port}/{database}"


@dataclass
class Replicated:
    primary_url: str
    standby_url: str
    cluster: Cluster

    def stop_standby(self) -> None:
        self.cluster.stop("standby")


@pytest.fixture
def replicated() -> Iterator[Replicated]:
    """A primary with the schema and a hot standby streaming it."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        skip_or_fail("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin "
                     "(Debian package postgresql)")
        return
    as_postgres = os.geteuid() == 0
    folder = Path(tempfile.mkdtemp(prefix="billing-replica-", dir="/tmp"))
    cluster = Cluster(bin_dir, folder, as_postgres)
    primary_port, standby_port = _free_port(), _free_port()
    with ExitStack() as cleanup:
        cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
        (folder / "password").write_text(PASSWORD + "\n")
        if as_postgres:
            shutil.chown(folder, "postgres", "postgres")
            shutil.chown(folder / "password", "postgres", "postgres")
        cluster.run("initdb", "-D", "primary", "-U", "billing", "--pwfile=password",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync")
        with (folder / "primary" / "postgresql.conf").open("a") as conf:
            # Its own socket folder: the machine's server has the default one.
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {primary_port}\n"
                       f"unix_socket_directories = '{folder}'\nfsync = off\n"
                       "shared_buffers = 16MB\nmax_connections = 60\n")
        cluster.start("primary")
        cleanup.callback(cluster.stop, "primary")
        admin = make_engine(url(primary_port, "postgres"),
                            isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text("CREATE DATABASE billing"))
        admin.dispose()
        engine = make_engine(url(primary_port))
        migrate.upgrade(engine)
        engine.dispose()
        cluster.run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary_port), "-U", "billing",
                    "-D", "standby", "-R", "-X", "stream", "--no-sync", PGPASSWORD=PASSWORD)
        with (folder / "standby" / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {standby_port}\n")
        cluster.start("standby")
        cleanup.callback(cluster.stop, "standby")
        yield Replicated(url(primary_port), url(standby_port), cluster)


def caught_up(primary: Engine, standby: Engine) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    with primary.connect() as connection:
        target = connection.scalar(text("SELECT pg_current_wal_lsn()"))
    deadline = time.monotonic() + 60
    while True:
        with standby.connect() as connection:
            if connection.scalar(text("SELECT pg_last_wal_replay_lsn() >= CAST(:t AS pg_lsn)"),
                                 {"t": str(target)}):
                return
        assert time.monotonic() < deadline, "the standby did not catch up"
        time.sleep(0.1)


def replay(standby: Engine, *, paused: bool) -> None:
    with standby.connect() as connection:
        connection.execute(text("SELECT pg_wal_replay_pause()" if paused
                                else "SELECT pg_wal_replay_resume()"))
        connection.commit()


def test_downloads_read_the_standby_authentication_the_primary(
        replicated: Replicated) -> None:
    primary_url, standby_url = replicated.primary_url, replicated.standby_url
    settings = Settings(database_url=primary_url, read_database_url=standby_url,
                        secret_key=TEST_SECRET, redis_url=None, rate_limit_per_minute=100_000)
    lines = "\n".join(configuration_lines(settings, "primary", 2))
    assert f"read replica: {standby_url.replace(PASSWORD, '***')} (document" in lines
    assert PASSWORD not in lines

    primary, standby = make_engine(primary_url), make_engine(standby_url)
    factory = make_session_factory(primary)
    try:
        build_demo(factory, customers=3, months=2, today=TODAY)
        with transaction(factory) as session:
            company, by_environment = open_demo_api(session, settings)
            secret = by_environment["production"]
            spare_key, spare = keys.create_key(session, settings, company,
                                               environment=Environment.PRODUCTION, name="spare")
            spare_id = spare_key.id
        caught_up(primary, standby)
        with primary.connect() as connection:
            number = connection.scalar(text(
                "SELECT invoice_number FROM invoices WHERE kind = 'purchase' "
                "AND environment = 'production' ORDER BY id LIMIT 1"))
        replay(standby, paused=True)
        with primary.begin() as connection:  # the standby does not see this while paused
            connection.execute(text("UPDATE invoices SET description = :d"), {"d": CHANGED})
        app = test_app(settings)
        with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
            def get(path: str, key: str = secret) -> httpx.Response:
                return http.get(path, headers={"X-Api-Key": key})

            documents = {path: get(path) for path in (
                f"/api/v4/invoices?{WINDOW}", f"/api/v4/customerinvoices?{WINDOW}",
                f"/api/v4/consolidatedinvoices?{WINDOW}", f"/api/v4/invoices/{number}",
                f"/api/v4/invoices/{number}?format=ubl", f"/api/v4/invoices?{WINDOW}&format=ubl")}
            spare_before = get(WHOAMI, spare)
            # Revoked on the primary while the paused standby still holds the key as active.
            with transaction(factory) as session:
                keys.revoke_key(session, company, spare_id)
            revoked = get(WHOAMI, spare)
            with standby.connect() as connection:
                active_on_standby = connection.scalar(text(
                    "SELECT revoked_at IS NULL FROM api_keys WHERE id = :i"), {"i": spare_id})
            replay(standby, paused=False)
            caught_up(primary, standby)
            after_replay = get(f"/api/v4/invoices?{WINDOW}")
            standby.dispose()
            # The standby goes away: downloads become 503s, authentication goes on.
            replicated.stop_standby()
            gone = {path: get(path) for path in documents}
            gone_details = get("/api/v4/subscriptiondetails?subscriptionId=1")
            whoami = get(WHOAMI)
    finally:
        primary.dispose()
        standby.dispose()

    for path, answer in documents.items():
        assert answer.status_code == 200, (path, answer.text)
    assert CHANGED.encode() not in documents[f"/api/v4/invoices?{WINDOW}"].content
    assert number.encode() in documents[f"/api/v4/invoices/{number}"].content
    assert spare_before.status_code == 200, spare_before.text
    assert revoked.status_code == 401, revoked.text
    assert "revoked_key" in revoked.text
    assert active_on_standby is True  # so the refusal came from the primary
    assert CHANGED.encode() in after_replay.content
    for path, answer in [*gone.items(), ("subscriptiondetails", gone_details)]:
        assert answer.status_code == 503, (path, answer.status_code, answer.text[:300])
        assert answer.headers["content-type"].startswith("application/problem+")
        assert "database_unavailable" in answer.text
        assert answer.headers["Retry-After"]
    assert whoami.status_code == 200, whoami.text


@pytest.mark.parametrize(("primary", "replica", "complaint"), [
    ("postgresql://billing@db/billing", "sqlite:////tmp/replica.db", "must be a PostgreSQL URL"),
    ("sqlite:////tmp/billing.db", "postgresql://billing@replica/billing", "needs a PostgreSQL"),
    ("postgresql://billing@db/billing", "not a url", "is not a database URL"),
])
def test_a_replica_that_cannot_work_is_refused_at_start(primary: str, replica: str,
                                                         complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint) as refused:
        load_settings(database_url=primary, read_database_url=replica, secret_key=TEST_SECRET)
    assert "READ_DATABASE_URL" in str(refused.value)


def test_without_a_replica_downloads_read_the_primary(settings: Settings) -> None:
    app = create_app(settings)
    try:
        assert app.state.read_engine is app.state.engine
    finally:
        app.state.engine.dispose()
