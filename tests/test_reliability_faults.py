"""Database faults and a killed billing run (issue 8, items 1 and 2; docs/reliability.md).

Every test here brings its own database, never the suite's (``BILLING_API_TEST_DATABASE_URL``):
a private PostgreSQL server (``tests/pg_instance.py``) that a test may stop, freeze and
restart without disturbing the suite's server, and SQLite files of its own. The fault tests
therefore run alike in both CI passes; the killed billing run follows the pass's backend
(a SQLite file in the SQLite pass, the private server in the PostgreSQL pass). The data is
the demo world (2,000 customers per environment, October 2026 billed), built once per module
on SQLite and loaded into PostgreSQL with ``COPY``: building it on PostgreSQL through the
ORM takes several times longer.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import etree
from psycopg import sql
from pydantic import SecretStr
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from billing_api import migrate
from billing_api.access import keys, permissions, whitelist
from billing_api.access.models import Company, User
from billing_api.app import create_app
from billing_api.billing.models import BillingRun, Invoice, InvoiceSequence, PriceLine
from billing_api.billing.run import RunSummary, bill_partner
from billing_api.db import Base, make_engine, make_session_factory, transaction
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests.conftest import TEST_SECRET, skip_or_fail
from tests.http_server import serve
from tests.pg_instance import PgInstance, PostgresUnavailable, private_postgres

DEMO_CUSTOMERS = 2000  # per environment: ~6,600 production lines a month
DEMO_TODAY = dt.date(2026, 11, 15)  # the demo bills October 2026, invoices dated 15 November
BILLED = {"startDate": "20261101", "endDate": "20261130"}
NEW_PERIOD, NEW_INVOICE_DATE = "2026-11", dt.date(2026, 12, 23)  # billed by the tests
DOCUMENT = "/api/v4/customerinvoices"  # the largest document: ~13 MB of XML here
LARGE = 4 * 1024 * 1024
DOWN_ANSWER_WITHIN = 5.0  # seconds for a 503 while the database is down or frozen
CONNECT_TIMEOUT = 2  # the private server's URLs carry ?connect_timeout=2
BILL_COMMAND = [
    sys.executable, "-m", "billing_api", "bill", "--period", NEW_PERIOD,
    "--environment", "production", "--invoice-date", NEW_INVOICE_DATE.isoformat(),
]


# --- worlds ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file holding the billed demo world; tests work on copies of it."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
        build_demo(
            make_session_factory(engine), customers=DEMO_CUSTOMERS, months=1, today=DEMO_TODAY
        )
    finally:
        engine.dispose()  # the last connection checkpoints the WAL into the file
    return path


def copy_sqlite(source: Path, target: Path) -> str:
    shutil.copyfile(source, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def pg() -> Iterator[PgInstance]:
    try:
        with private_postgres() as instance:
            yield instance
    except PostgresUnavailable as exc:
        skip_or_fail(f"a private PostgreSQL server is needed: {exc}")


@pytest.fixture(scope="module")
def demo_pg(pg: PgInstance, demo_sqlite: Path) -> str:
    """The name of a template database holding the same demo world as ``demo_sqlite``."""
    url = pg.create_database("demo")
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    load_sqlite_into_postgres(demo_sqlite, pg, "demo")
    return "demo"


def load_sqlite_into_postgres(source: Path, pg: PgInstance, database: str) -> None:
    """Copy every table's rows from a migrated SQLite file into a migrated PostgreSQL
    database (its seeded reference rows are replaced), then move the id sequences on.

    Both sides store exactly the same column values (money as integers, dates and JSON as
    text), so a plain text ``COPY`` carries them over unchanged."""
    tables = Base.metadata.sorted_tables
    reader = sqlite3.connect(source)
    try:
        with pg.connect(database) as target:
            target.execute(
                sql.SQL("TRUNCATE {} CASCADE").format(
                    sql.SQL(", ").join(sql.Identifier(t.name) for t in tables)
                )
            )
            for table in tables:
                names = [c.name for c in table.columns]
                columns = sql.SQL(", ").join(sql.Identifier(n) for n in names)
                rows = reader.execute(
                    f'SELECT {", ".join(names)} FROM "{table.name}"'  # noqa: S608 (our names)
                )
                copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table.name), columns
                )
                with target.cursor().copy(copy) as writer:
                    for row in rows:
                        writer.write_row(row)
                if "id" in table.c and table.c.id.primary_key:
                    target.execute(
                        sql.SQL(
                            "SELECT setval(pg_get_serial_sequence({}, 'id'), "
                            "(SELECT coalesce(max(id), 0) + 1 FROM {}), false)"
                        ).format(sql.Literal(table.name), sql.Identifier(table.name))
                    )
            target.execute("ANALYZE")
    finally:
        reader.close()


def open_api(url: str, settings: Settings, *, name: str = "erp") -> str:
    """Switch the demo partner's API on for 127.0.0.1 (once) and return a new production key."""
    engine = make_engine(url)
    try:
        with transaction(make_session_factory(engine)) as session:
            admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
            company = session.get_one(Company, admin.company_id)
            if not company.api_enabled:
                permissions.set_api_enabled(session, company, admin, True)
                whitelist.add_entry(session, company, "127.0.0.1", actor=admin)
            _, secret = keys.create_key(
                session, settings, company, environment=Environment.PRODUCTION, name=name,
                actor=admin,
            )
            return secret
    finally:
        engine.dispose()


def test_settings(url: str) -> Settings:
    return Settings(database_url=url, secret_key=SecretStr(TEST_SECRET), redis_url=None)


test_settings.__test__ = False  # type: ignore[attr-defined]


# --- HTTP helpers ---------------------------------------------------------------------------


def well_formed(body: bytes) -> bool:
    try:
        etree.fromstring(body)
    except etree.XMLSyntaxError:
        return False
    return True


def interrupted_download(
    url: str, headers: dict[str, str], after_bytes: int, fault: Callable[[], None]
) -> tuple[bytes, Exception | None]:
    """Stream ``url``; once ``after_bytes`` have arrived, call ``fault`` and read on.

    Returns what arrived and the transport error that ended the transfer (None if it ended
    normally). A small receive buffer keeps the server from racing ahead into the kernel's
    buffers, so most of the document is still to be read from the database."""
    transport = httpx.HTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)]
    )
    body = bytearray()
    error: Exception | None = None
    pending: Callable[[], None] | None = fault
    with httpx.Client(transport=transport, timeout=30) as client:
        try:
            with client.stream("GET", url, params=BILLED, headers=headers) as response:
                assert response.status_code == 200, response.read()
                for chunk in response.iter_raw(16 * 1024):
                    body += chunk
                    if pending is not None and len(body) >= after_bytes:
                        pending()
                        pending = None
        except httpx.TransportError as exc:  # RemoteProtocolError: incomplete chunked read
            error = exc
    assert pending is None, f"the document ended after {len(body)} bytes, before the fault"
    return bytes(body), error


def expect_database_unavailable(url: str, secret: str, *, json_too: bool = True) -> list[float]:
    """GET ``url`` as XML (the default) and as JSON: both must be a quick 503 problem with
    ``Retry-After`` in the negotiated format. Returns how long each answer took."""
    took = []
    for accept, media_type in (
        (None, "application/problem+xml"),
        ("application/json", "application/problem+json"),
    )[: 2 if json_too else 1]:
        headers = {"X-Api-Key": secret}
        if accept:
            headers["Accept"] = accept
        started = time.monotonic()
        response = httpx.get(url, params=BILLED, headers=headers, timeout=30)
        took.append(time.monotonic() - started)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == media_type
        assert int(response.headers["retry-after"]) > 0
        if accept:
            problem = response.json()
            assert problem["code"] == "database_unavailable" and problem["status"] == 503
        else:
            root = etree.fromstring(response.content)
            ns = {"p": "urn:ietf:rfc:7807"}
            assert root.findtext("p:code", namespaces=ns) == "database_unavailable"
            assert root.findtext("p:status", namespaces=ns) == "503"
        assert took[-1] < DOWN_ANSWER_WITHIN, f"503 after {took[-1]:.1f} s"
    return took


# --- 1. PostgreSQL faults -------------------------------------------------------------------


def test_postgres_stopped_mid_download_then_down_then_back(pg: PgInstance, demo_pg: str) -> None:
    pg.create_database("faults", template=demo_pg)
    url = pg.url("faults", connect_timeout=str(CONNECT_TIMEOUT))
    settings = test_settings(url)
    secret = open_api(url, settings)
    headers = {"X-Api-Key": secret}
    with serve(create_app(settings)) as base:
        reference = httpx.get(base + DOCUMENT, params=BILLED, headers=headers, timeout=60)
        assert reference.status_code == 200 and len(reference.content) > LARGE
        assert well_formed(reference.content)

        # (a) The server dies (immediate stop: every backend killed) during a download.
        received, error = interrupted_download(
            base + DOCUMENT, headers, after_bytes=256 * 1024, fault=pg.stop
        )
        assert not pg.is_running()
        assert len(received) < len(reference.content)
        assert error is not None or not well_formed(received), "a truncated document looked whole"
        assert not well_formed(received)
        assert reference.content.startswith(received[: 256 * 1024])

        # (b) While it is down: a quick 503 in the negotiated format, for every request.
        took = expect_database_unavailable(base + DOCUMENT, secret)
        took += expect_database_unavailable(base + "/api/v4/invoices", secret)
        assert httpx.get(base + "/healthz", timeout=10).status_code == 200  # the process is up

        # (c) Back up: the same app answers again, and the same bytes as before the fault.
        pg.start()
        again = httpx.get(base + DOCUMENT, params=BILLED, headers=headers, timeout=60)
        assert again.status_code == 200, again.text
        assert again.content == reference.content
    print(f"\ndocument {len(reference.content) / 2**20:.1f} MiB; transfer ended after "
          f"{len(received) / 2**20:.2f} MiB with {type(error).__name__}; 503s in "
          f"{min(took):.3f}–{max(took):.3f} s")


def test_postgres_frozen_answers_503_within_the_connect_timeout(
    pg: PgInstance, demo_pg: str
) -> None:
    """A hung server (postmaster stopped with SIGSTOP: TCP connects, no answer) must not hang
    requests: a new connection gives up after ``connect_timeout``."""
    pg.create_database("frozen", template=demo_pg)
    url = pg.url("frozen", connect_timeout=str(CONNECT_TIMEOUT))
    settings = test_settings(url)
    secret = open_api(url, settings)
    app = create_app(settings)
    with serve(app) as base:
        assert httpx.get(base + DOCUMENT, params=BILLED, headers={"X-Api-Key": secret},
                         timeout=60).status_code == 200
        app.state.engine.dispose()  # pooled connections have live backends: start afresh
        pg.pause()
        try:
            took = expect_database_unavailable(base + DOCUMENT, secret, json_too=False)
        finally:
            pg.resume()
        assert all(t > CONNECT_TIMEOUT - 0.5 for t in took), took  # it did wait, then gave up
        print(f"\nfrozen server: 503 after {took[0]:.2f} s (connect_timeout={CONNECT_TIMEOUT})")
        again = httpx.get(base + DOCUMENT, params=BILLED, headers={"X-Api-Key": secret},
                          timeout=60)
        assert again.status_code == 200


def test_postgres_engines_get_a_connect_timeout_by_default(pg: PgInstance) -> None:
    """Without ``connect_timeout`` libpq waits for ever on a hung server: ``make_engine``
    sets one unless the URL chooses its own."""
    seen: list[Any] = []

    def record(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        seen.append(params.get("connect_timeout"))

    for url, expected in ((pg.url("postgres"), 10), (pg.url("postgres", connect_timeout="3"), 3)):
        engine = make_engine(url)
        event.listen(engine, "do_connect", record)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
        assert seen and int(seen[-1]) == expected


# --- 1. SQLite: a long billing run holds the write lock, API reads go on ---------------------


def test_sqlite_reads_succeed_while_a_billing_run_holds_the_write_lock(
    demo_sqlite: Path, tmp_path: Path
) -> None:
    path = tmp_path / "locked.db"
    url = copy_sqlite(demo_sqlite, path)
    settings = test_settings(url)
    used_key = open_api(url, settings, name="used")
    fresh_key = open_api(url, settings, name="fresh")  # first use stamps last_used_at: a write
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        partner_id = session.scalars(select(User.company_id).where(User.email == ADMIN_EMAIL)).one()
    holding, release = threading.Event(), threading.Event()
    outcome: list[RunSummary | BaseException] = []

    def hold(_done: int, _total: int) -> None:
        # After the first 500 customers' lines are written: keep the transaction open.
        holding.set()
        release.wait(60)

    def billing_run() -> None:
        try:
            with transaction(factory, writer=True) as session:
                outcome.append(bill_partner(
                    session, partner_id, "production", NEW_PERIOD, NEW_INVOICE_DATE, hold))
        except BaseException as exc:
            outcome.append(exc)

    try:
        with serve(create_app(settings)) as base:
            def download(secret: str) -> httpx.Response:
                return httpx.get(base + DOCUMENT, params=BILLED, headers={"X-Api-Key": secret},
                                 timeout=20)

            reference = download(used_key)
            assert reference.status_code == 200 and well_formed(reference.content)
            runner = threading.Thread(target=billing_run)
            runner.start()
            try:
                assert holding.wait(30), "the billing run did not start"
                assert write_locked(path), "the billing run should hold SQLite's write lock"
                timings = []
                for secret in (used_key, fresh_key, used_key, fresh_key):
                    started = time.monotonic()
                    response = download(secret)
                    timings.append(time.monotonic() - started)
                    assert response.status_code == 200, response.text
                    assert response.content == reference.content
                # The run is still in its transaction: the reads did not wait for it.
                assert runner.is_alive() and write_locked(path)
                assert max(timings) < 5, timings
                print(f"\nreads under the write lock: {len(timings)} downloads of "
                      f"{len(reference.content) / 2**20:.1f} MiB in "
                      f"{min(timings):.2f}–{max(timings):.2f} s")
            finally:
                release.set()
                runner.join(60)
            assert len(outcome) == 1 and isinstance(outcome[0], RunSummary), outcome
            assert outcome[0].lines > 0
    finally:
        engine.dispose()


def write_locked(path: Path) -> bool:
    """True while another connection holds the database's write lock."""
    probe = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return True
    finally:
        probe.close()


# --- 2. A billing run killed with SIGKILL -----------------------------------------------------


@dataclass
class PeriodTotals:
    runs: int
    invoices: int
    lines: int
    line_sum: int  # extended price of every line, in 1/10,000 units
    line_vat: int
    invoice_total: int  # including VAT
    invoice_numbers: list[str]
    sequences: list[tuple[int, str, int]]


def period_totals(url: str) -> PeriodTotals:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            line = PriceLine.__table__.c
            invoice = Invoice.__table__.c
            dated = NEW_INVOICE_DATE
            line_sum, line_vat, lines = session.execute(
                select(func.coalesce(func.sum(line.extended_price), 0),
                       func.coalesce(func.sum(line.vat), 0), func.count())
                .where(line.invoice_date == dated)
            ).one()
            invoice_total, invoices = session.execute(
                select(func.coalesce(func.sum(invoice.total_including_vat), 0), func.count())
                .where(invoice.invoice_date == dated)
            ).one()
            return PeriodTotals(
                runs=session.scalar(select(func.count()).select_from(BillingRun)
                                    .where(BillingRun.period == NEW_PERIOD)) or 0,
                invoices=invoices,
                lines=lines,
                line_sum=int(line_sum),
                line_vat=int(line_vat),
                invoice_total=int(invoice_total),
                invoice_numbers=sorted(session.scalars(
                    select(Invoice.invoice_number).where(Invoice.invoice_date == dated))),
                sequences=[tuple(r) for r in session.execute(  # type: ignore[misc]
                    select(InvoiceSequence.sender_company_id, InvoiceSequence.environment,
                           InvoiceSequence.last_number).order_by(
                        InvoiceSequence.sender_company_id, InvoiceSequence.environment))],
            )
    finally:
        engine.dispose()


def bill_process(url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "BILLING_API_DATABASE_URL": url, "BILLING_API_SECRET_KEY": TEST_SECRET}
    return subprocess.Popen(BILL_COMMAND, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen[str], writing: Callable[[], bool],
              timeout: float = 60) -> float:
    """SIGKILL ``process`` as soon as ``writing()`` says it is well into its run; returns
    the seconds from start to kill. Fails if the run ended first."""
    started = time.monotonic()
    try:
        while not writing():
            assert process.poll() is None, f"the run ended before the kill: {process.communicate()}"
            assert time.monotonic() - started < timeout, "the run never started writing"
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before the kill"
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        assert process.returncode == -signal.SIGKILL
        return time.monotonic() - started
    finally:
        if process.poll() is None:  # a failed assertion above: leave no run behind
            process.kill()
            process.communicate(timeout=30)


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


@dataclass
class KillTarget:
    """Two copies of the demo world on one backend, and how to watch a run on the first."""

    url: str
    reference_url: str
    writing: Callable[[], bool]  # True once the run is well into writing its lines
    settled: Callable[[], None]  # returns once the killed run's work is rolled back


def suite_backend() -> str:
    configured = os.environ.get("BILLING_API_TEST_DATABASE_URL", "")
    return "postgresql" if configured.startswith("postgresql") else "sqlite"


@pytest.fixture
def kill_target(request: pytest.FixtureRequest, demo_sqlite: Path,
                tmp_path: Path) -> Iterator[KillTarget]:
    """The backend of the CI pass (the private server in the PostgreSQL pass): each pass
    kills a run once, on its own database kind."""
    if suite_backend() == "sqlite":
        killed = tmp_path / "killed.db"
        wal = Path(f"{killed}-wal")

        def wal_filling() -> bool:
            # Uncommitted pages spill into the WAL once the page cache is full: >1 MiB
            # there means several chunks of customers have been written.
            return wal.exists() and wal.stat().st_size > 1024 * 1024 and write_locked(killed)

        yield KillTarget(copy_sqlite(demo_sqlite, killed),
                         copy_sqlite(demo_sqlite, tmp_path / "reference.db"),
                         wal_filling, lambda: None)
        return
    pg: PgInstance = request.getfixturevalue("pg")
    template: str = request.getfixturevalue("demo_pg")
    name = f"killed_{secrets.token_hex(3)}"
    pg.create_database(name, template=template)
    pg.create_database(f"{name}_reference", template=template)
    with pg.connect(name) as watcher:
        def relation_size() -> int:
            row = watcher.execute("SELECT pg_relation_size('price_lines')").fetchone()
            assert row is not None
            return int(row[0])

        baseline = relation_size()

        def table_growing() -> bool:
            # Uncommitted rows take their space in the table at once.
            return relation_size() > baseline + 1024 * 1024

        def backend_gone() -> None:
            # The server notices the dead client and rolls back; until its backend is gone
            # the advisory lock is held and a rerun would be refused ("running now").
            deadline = time.monotonic() + 10
            while watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND pid <> pg_backend_pid()", (name,)
            ).fetchone() != (0,):
                assert time.monotonic() < deadline, "the killed run's backend did not go away"
                time.sleep(0.05)

        yield KillTarget(pg.url(name), pg.url(f"{name}_reference"), table_growing,
                         backend_gone)


def test_billing_run_killed_mid_run_leaves_nothing_and_its_rerun_equals_an_uninterrupted_run(
    kill_target: KillTarget,
) -> None:
    target = kill_target
    before = period_totals(target.url)
    assert before.runs == before.invoices == before.lines == 0
    assert period_totals(target.reference_url) == before

    killed_after = kill_when(bill_process(target.url), target.writing)
    target.settled()
    assert period_totals(target.url) == before, "the killed run left rows behind"

    # Rerun on the killed database and run once on the untouched copy, side by side.
    rerun, uninterrupted = bill_process(target.url), bill_process(target.reference_url)
    rerun_out, reference_out = finish(rerun), finish(uninterrupted)
    assert "invoices" in rerun_out and rerun_out == reference_out
    totals = period_totals(target.url)
    assert totals.runs == 1 and totals.invoices > 0 and totals.lines > 0
    assert totals == period_totals(target.reference_url)
    print(f"\n{suite_backend()}: killed {killed_after:.1f} s after start; rerun = "
          f"uninterrupted run: {totals.invoices} invoices, {totals.lines} lines")
