"""The small requests' hot path (issue 14): one invoice and ``subscriptiondetails`` take one
connection besides the key look-up, the look-up needs no transaction of its own, and pooled
PostgreSQL connections are pinged only after resting."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import Pool

from billing_api import db
from billing_api.access.models import Company
from billing_api.app import create_app
from billing_api.billing.models import BillingRun, Invoice, PriceLine
from billing_api.billing.run import bill_partner
from billing_api.db import make_engine, transaction
from billing_api.environments import Environment
from billing_api.export import source, stream
from billing_api.loop_reads import SQLITE_LOOP_WAIT_MS, LoopReads
from billing_api.settings import Settings
from billing_api.sync.state import invoice_state, partner_state
from tests import factories as f
from tests.access_helpers import Partner, make_partner
from tests.http_server import serve
from tests.test_ops import price_lines, sample, scrape


@dataclass
class Billed:
    partner: Partner
    invoice_number: str
    subscription_id: int


@pytest.fixture
def billed(factory: sessionmaker[Session], settings: Settings) -> Billed:
    partner = make_partner(factory, settings)
    with transaction(factory) as session:
        f.distributor(session)
        company = session.get_one(Company, partner.company_id)
        _, period, rate = f.plan(session, f.vendor(session, "Microsoft"))
        sub, _ = f.subscription(session, f.customer(session, company), period, rate,
                                amount=Decimal(3), start=dt.date(2026, 9, 1))
    with transaction(factory, writer=True) as session:
        bill_partner(session, partner.company_id, Environment.PRODUCTION, "2026-09",
                     dt.date(2026, 10, 23))
    with transaction(factory) as session:
        number = session.scalars(select(Invoice.invoice_number).where(
            Invoice.partner_id == partner.company_id, Invoice.kind == "purchase")).one()
    return Billed(partner, number, sub.id)


@pytest.fixture
def checkouts(settings: Settings) -> Iterator[tuple[str, list[int]]]:
    """A served app, and the pool checkouts of every engine while it serves (on PostgreSQL
    the event loop's reads have an asyncio engine of their own, made at first use)."""
    app = create_app(settings)
    seen: list[int] = []

    def note(*_: Any) -> None:
        seen.append(1)

    event.listen(Pool, "checkout", note)
    try:
        with serve(app) as base:
            yield base, seen
    finally:
        event.remove(Pool, "checkout", note)


def test_one_invoice_and_details_take_one_connection_besides_the_key_lookup(
    billed: Billed, checkouts: tuple[str, list[int]], backend: str
) -> None:
    """On PostgreSQL two checkouts from the loop's pool; on SQLite none: the loop reads on
    the one connection it keeps (``loop_reads._KeptConnection``), never on a pool's."""
    base, seen = checkouts
    expected = 2 if backend == "postgresql" else 0
    key = {"X-Api-Key": billed.partner.secret}
    paths = [f"/api/v4/invoices/{billed.invoice_number}?format=json",
             f"/api/v4/invoices/{billed.invoice_number}?format=xml",
             f"/api/v4/subscriptiondetails?subscriptionId={billed.subscription_id}"]
    # The key's first use stamps last_used_at (a writer connection of its own).
    assert httpx.get(base + paths[0], headers=key, timeout=30).status_code == 200
    for path in paths:
        seen.clear()
        answer = httpx.get(base + path, headers=key, timeout=30)
        assert answer.status_code == 200, answer.text
        assert len(seen) == expected, path  # the key look-up, then the document
    assert billed.invoice_number in httpx.get(base + paths[1], headers=key, timeout=30).text
    seen.clear()
    missing = httpx.get(base + "/api/v4/invoices/NOPE-1?format=json", headers=key, timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "invoice_not_found"
    assert len(seen) == expected


def test_loop_statements_open_no_transaction(engine: Engine, backend: str) -> None:
    """The key look-up's connection (``LoopReads.statements``) sends no BEGIN; a snapshot on
    the same pooled connection afterwards still begins one."""
    reads = LoopReads(engine, pool_size=1)
    sent: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    def autocommit(connection: Connection) -> bool:
        if backend == "sqlite":  # the driver is always in autocommit mode; BEGIN is ours
            return True
        return bool(connection.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]

    def alone(connection: Connection) -> bool:
        assert connection.execute(text("SELECT 1")).scalar() == 1
        return autocommit(connection)

    def together(connection: Connection) -> bool:
        connection.execute(text("SELECT 1"))
        return autocommit(connection)

    async def run() -> tuple[bool, bool, list[str]]:
        target = (reads._async_engine().sync_engine if backend == "postgresql"
                  else reads.engine)
        event.listen(target, "before_cursor_execute", note)
        try:
            first = await reads.statements(alone)
            after_alone = list(sent)
            second = await reads.snapshot(together)
            return first, second, after_alone
        finally:
            event.remove(target, "before_cursor_execute", note)
            await reads.dispose()

    alone_autocommit, snapshot_autocommit, after_alone = asyncio.run(run())
    assert after_alone == ["SELECT 1"]  # no BEGIN (SQLite's goes through SQLAlchemy)
    if backend == "postgresql":
        assert alone_autocommit and not snapshot_autocommit  # ended with the look-up
    else:
        assert sent == ["SELECT 1", "BEGIN DEFERRED", "SELECT 1"]


def _backend_pid(engine: Engine) -> Any:
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            return id(connection.connection.dbapi_connection)
        return connection.execute(text("SELECT pg_backend_pid()")).scalar()


def test_a_rested_connection_is_pinged_and_a_dead_one_replaced(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(database_url, pool_size=1)
    admin = make_engine(database_url)
    try:
        first = _backend_pid(engine)
        if engine.dialect.name == "sqlite":
            assert _backend_pid(engine) == first  # the pool keeps its connection
            return
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            connection.commit()
        # Used a moment ago: not pinged, so the dead connection fails its statement, which
        # invalidates the pool (a 503 for that request)...
        with pytest.raises(OperationalError), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        second = _backend_pid(engine)  # ...and the next one connects afresh
        assert second != first
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": second})
            connection.commit()
        # After a rest the ping finds it dead first: the pool reconnects, nothing fails.
        monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.05)
        time.sleep(0.1)
        assert _backend_pid(engine) not in (first, second)
    finally:
        engine.dispose()
        admin.dispose()


def test_small_requests_answer_while_every_pooled_connection_streams(
    billed: Billed, settings: Settings
) -> None:
    """Downloads hold the threads' pool connections until their last chunk; the event loop's
    reads do not queue for them (waiting there would stop the loop that sends those chunks:
    nothing moved until the pool timeout)."""
    app = create_app(settings.model_copy(update={"database_pool_size": 2}))
    key = {"X-Api-Key": billed.partner.secret}
    with serve(app) as base:
        # First use stamps last_used_at from the threads' pool: before it is emptied.
        first = httpx.get(f"{base}/api/v4/invoices/{billed.invoice_number}", headers=key,
                          timeout=30)
        assert first.status_code == 200, first.text
        held = [app.state.engine.connect() for _ in range(2)]  # as two streaming downloads
        try:
            for path in (f"/api/v4/invoices/{billed.invoice_number}?format=json",
                         f"/api/v4/subscriptiondetails?subscriptionId={billed.subscription_id}",
                         "/api/v4/invoices?startDate=20261023&endDate=20261023&format=json"):
                started = time.monotonic()
                answer = httpx.get(base + path, headers=key, timeout=60)
                assert answer.status_code == 200, (path, answer.text)
                assert time.monotonic() - started < 5, path  # the pool timeout is 30 s
        finally:
            for connection in held:
                connection.close()


def test_one_invoice_is_found_by_its_number_with_one_index_probe(
    billed: Billed, engine: Engine, backend: str
) -> None:
    """The 304 state statement (which also gives the invoice's id and date) finds the
    invoice through (partner, environment, kind, invoice_number), not by scanning every
    invoice of the partner's kind."""
    sent: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.startswith("SELECT"):  # not SQLite's BEGIN
            sent.append((statement, parameters))

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", note)
        state = invoice_state(connection, "purchase", billed.partner.company_id,
                              "production", billed.invoice_number)
        event.remove(connection, "before_cursor_execute", note)
        assert state is not None and len(sent) == 1
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        if backend == "postgresql":
            # Costs on a two-row table decide nothing: without a sequential scan and the
            # other indexes (dropped in this transaction, rolled back) the plan shows that
            # the index matches the statement. SQLite's plan below shows it is chosen.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("DROP INDEX ix_invoices_partner_date")
            cursor.execute("ALTER TABLE invoices DROP CONSTRAINT "
                           "uq_invoices_environment_sender_company_id_invoice_number")
            cursor.execute("EXPLAIN " + sent[0][0], sent[0][1])
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sent[0][0], sent[0][1])
        plan = [str(row[-1]) for row in cursor.fetchall()]
        connection.rollback()
    assert any("ix_invoices_partner_number" in line for line in plan), plan


def test_documents_answered_on_the_loop_count_their_lines_once(
    billed: Billed, checkouts: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-chunk document counts its lines when sent; a longer one, tried on the loop and
    then streamed by a thread, counts them once too (not the loop's attempt)."""
    base, _ = checkouts
    key = {"X-Api-Key": billed.partner.secret}
    one = f"{base}/api/v4/invoices/{billed.invoice_number}?format=json"
    day = f"{base}/api/v4/invoices?startDate=20261023&endDate=20261023&format=json"
    for url, chunk in ((one, 400), (day, 400), (day, 1)):  # 1: every line a chunk of its own
        monkeypatch.setattr(stream, "LINES_PER_CHUNK", chunk)
        before = scrape(base)
        answer = httpx.get(url, headers=key, timeout=30)
        assert answer.status_code == 200, answer.text
        lines = price_lines(answer.json())
        counted = (sample(scrape(base), "billing_api_export_lines_streamed_total",
                          document="invoices")
                   - sample(before, "billing_api_export_lines_streamed_total",
                            document="invoices"))
        assert lines >= 1 and counted == lines, (url, chunk)


def test_a_short_collection_reads_on_plain_cursors_a_long_one_on_server_side_ones(
    billed: Billed, checkouts: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection its runs keep under a chunk is read at once: on PostgreSQL a DECLAREd
    cursor would cost round trips and a fresh plan each time. A longer one streams from
    server-side cursors, so its rows never sit in memory all at once."""
    base, _ = checkouts
    key = {"X-Api-Key": billed.partner.secret}
    day = f"{base}/api/v4/invoices?startDate=20261023&endDate=20261023&format=xml"
    cursors: list[str] = []
    real_stream = source.stream

    def noting(connection: Any, query: Any) -> Any:
        cursors.append(query.cursor_name)
        return real_stream(connection, query)

    monkeypatch.setattr(source, "stream", noting)
    expected = httpx.get(day, headers=key, timeout=30)
    assert expected.status_code == 200 and billed.invoice_number in expected.text
    assert cursors == ["", ""]  # the invoices and the lines, each on a plain cursor
    monkeypatch.setattr(stream, "LINES_PER_CHUNK", 1)  # the run's lines are now "long"
    cursors.clear()
    answer = httpx.get(day, headers=key, timeout=30)
    assert answer.status_code == 200 and answer.content == expected.content
    assert cursors == ["export_invoices", "export_lines"]


def test_reads_end_with_commit_so_the_driver_keeps_its_prepared_statements(
        settings: Settings, backend: str) -> None:
    """psycopg forgets every prepared statement at each ROLLBACK, which is what closing a
    connection in a transaction sends: reads end with COMMIT (``db.close_read``)."""
    engine = make_engine(settings.database_url, pool_size=1)
    ended: list[str] = []
    event.listen(engine, "commit", lambda *_: ended.append("commit"))
    event.listen(engine, "rollback", lambda *_: ended.append("rollback"))
    try:
        for _ in range(8):  # psycopg prepares a statement on its 6th execution
            connection = stream.open_export(engine)
            assert connection.execute(select(func.count()).select_from(Invoice)).scalar() == 0
            db.close_read(connection)
        assert ended == ["commit"] * 8
        if backend == "postgresql":  # the one pooled connection still holds the statement
            with engine.connect() as connection:
                statements = connection.exec_driver_sql(
                    "SELECT statement FROM pg_prepared_statements").scalars().all()
            assert any("invoices" in statement for statement in statements), statements
    finally:
        engine.dispose()


def test_served_reads_end_with_commit_not_rollback(
    billed: Billed, checkouts: tuple[str, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every document read, on the event loop or a thread, ends its snapshot with COMMIT."""
    base, _ = checkouts
    key = {"X-Api-Key": billed.partner.secret}
    day = "/api/v4/invoices?startDate=20261023&endDate=20261023"
    paths = [f"/api/v4/invoices/{billed.invoice_number}?format=json",
             f"/api/v4/invoices/{billed.invoice_number}?format=ubl",
             f"/api/v4/subscriptiondetails?subscriptionId={billed.subscription_id}",
             day, f"{day}&format=ubl"]
    ended: list[str] = []

    def note(what: str) -> Any:
        def noted(conn: Any) -> None:
            options = conn.get_execution_options()
            # The key look-up opens no transaction at the database (autocommit; SQLite
            # without BEGIN): SQLAlchemy's rollback of it sends nothing.
            if (options.get("isolation_level") != "AUTOCOMMIT"
                    and options.get(db.SQLITE_BEGIN_OPTION) != db.SQLITE_NO_BEGIN):
                ended.append(what)
        return noted

    assert httpx.get(base + paths[0], headers=key, timeout=30).status_code == 200  # stamp
    listeners = {"commit": note("commit"), "rollback": note("rollback")}
    for name, listener in listeners.items():
        event.listen(Engine, name, listener)
    try:
        for chunk in (400, 1):  # 1: the collection streams from a thread
            monkeypatch.setattr(stream, "LINES_PER_CHUNK", chunk)
            for path in paths:
                ended.clear()
                answer = httpx.get(base + path, headers=key, timeout=30)
                # UBL: 409, the fixture's distributor lacks Peppol fields, found by reading.
                assert answer.status_code == (409 if "ubl" in path else 200), (path, answer.text)
                # subscriptiondetails reads without a transaction (nothing to end).
                # A long one-invoice document is tried on the loop first: two snapshots.
                assert set(ended) == ({"commit"} if "subscriptiondetails" not in path
                                      else set()), (path, chunk, ended)
    finally:
        for name, listener in listeners.items():
            event.remove(Engine, name, listener)


def test_the_states_tell_a_long_document_before_it_is_read(billed: Billed, engine: Engine
                                                           ) -> None:
    """A document that may be longer than one chunk goes straight to a worker thread: both
    states carry the line count of the runs, so no price line is read to know it."""
    with engine.connect() as connection:
        billed_lines = connection.execute(select(BillingRun.line_count)).scalar_one()
        lines = connection.execute(
            select(func.count()).select_from(PriceLine).join(Invoice)
            .where(Invoice.invoice_number == billed.invoice_number)).scalar_one()
        assert billed_lines >= lines >= 1
        state = invoice_state(connection, "purchase", billed.partner.company_id,
                              "production", billed.invoice_number)
        assert state is not None and state.run_lines == billed_lines
        runs = partner_state(connection, billed.partner.company_id, "production").runs
        assert [run.lines for run in runs] == [billed_lines]


def test_loop_reads_wait_briefly_on_sqlite_and_take_a_snapshot(engine: Engine,
                                                              backend: str) -> None:
    """The event loop's reads: on SQLite a short busy wait (never the writers' 30 s on the
    loop); a snapshot is one repeatable-read transaction on PostgreSQL."""
    reads = LoopReads(engine, pool_size=2)

    async def run() -> tuple[Any, Any]:
        try:
            if backend == "sqlite":
                sql = "PRAGMA busy_timeout"
            else:
                sql = "SELECT current_setting('transaction_isolation')"
            alone = await reads.statements(lambda c: c.exec_driver_sql(sql).scalar())
            together = await reads.snapshot(lambda c: c.exec_driver_sql(sql).scalar())
            return alone, together
        finally:
            await reads.dispose()

    alone, together = asyncio.run(run())
    if backend == "sqlite":
        assert alone == together == SQLITE_LOOP_WAIT_MS
    else:
        assert (alone, together) == ("read committed", "repeatable read")


def _loop_read_probe(engine: Engine) -> tuple[LoopReads, Any, Any]:
    """A LoopReads on ``engine``, a writer that sets a company's name, and a reader of it."""
    with engine.begin() as connection:
        connection.execute(Company.__table__.insert().values(id=9001, name="before"))

    def rename(name: str) -> None:
        with engine.begin() as connection:
            connection.execute(Company.__table__.update().where(Company.id == 9001)
                               .values(name=name))

    def name(connection: Connection) -> str:
        return str(connection.execute(select(Company.name).where(Company.id == 9001))
                   .scalar_one())

    return LoopReads(engine, pool_size=1), rename, name


def test_each_loop_read_sees_what_was_committed_before_it(engine: Engine) -> None:
    """The loop's reads end their transactions (SQLite keeps its connection between reads):
    a change committed between two reads, a revoked key say, is seen by the very next."""
    reads, rename, name = _loop_read_probe(engine)

    async def run() -> list[str]:
        seen = []
        try:
            for turn, read in enumerate([reads.statements, reads.snapshot, reads.snapshot,
                                         reads.statements, reads.statements]):
                rename(f"name {turn}")
                seen.append(await read(name))
        finally:
            await reads.dispose()
        return seen

    assert asyncio.run(run()) == [f"name {turn}" for turn in range(5)]


def test_a_failed_loop_read_leaves_the_next_one_answering(engine: Engine) -> None:
    """A read whose function raises (a 404) or whose statement fails still ends its
    transaction; the next read answers with fresh data."""
    reads, rename, name = _loop_read_probe(engine)

    def read_then_refuse(connection: Connection) -> str:
        name(connection)
        raise LookupError("not the caller's")

    def bad_statement(connection: Connection) -> str:
        return str(connection.exec_driver_sql("SELECT no_such_column FROM companies").scalar())

    async def run() -> list[str]:
        seen = []
        try:
            for failing in (read_then_refuse, bad_statement):
                for read in (reads.snapshot, reads.statements):
                    with pytest.raises((LookupError, DBAPIError)):
                        await read(failing)
                    rename(f"after {failing.__name__} in {read.__name__}")
                    seen.append(await reads.snapshot(name))
        finally:
            await reads.dispose()
        return seen

    assert asyncio.run(run()) == [f"after {failing} in {read}"
                                  for failing in ("read_then_refuse", "bad_statement")
                                  for read in ("snapshot", "statements")]


def test_sqlite_loop_reads_keep_one_connection_a_finished_document_included(
        engine: Engine, backend: str) -> None:
    """SQLite: every loop read, one whose document closes its connection too
    (``db.close_read``), runs on the same driver connection, kept out of the pool between
    reads. PostgreSQL: each read's connection goes back to the loop's asyncio pool."""
    reads, _, name = _loop_read_probe(engine)

    def driver_connection(connection: Connection) -> int:
        name(connection)
        return id(connection.connection.driver_connection)

    def finished_document(connection: Connection) -> int:
        found = driver_connection(connection)
        db.close_read(connection)
        return found

    async def run() -> tuple[list[int], int]:
        try:
            used = [await reads.statements(driver_connection),
                    await reads.snapshot(finished_document),
                    await reads.snapshot(driver_connection),
                    await reads.statements(finished_document),
                    await reads.statements(driver_connection)]
            pool = (reads._async_engine().sync_engine.pool if backend == "postgresql"
                    else reads.engine.pool)
            return used, pool.checkedout()  # type: ignore[attr-defined]
        finally:
            await reads.dispose()

    used, checked_out = asyncio.run(run())
    if backend == "sqlite":
        assert len(set(used)) == 1 and checked_out == 1
    else:
        assert checked_out == 0


def test_compiled_queries_answer_exactly_as_sqlalchemy_does(
        billed: Billed, engine: Engine, factory: sessionmaker[Session]) -> None:
    """The hot statements on the driver's cursor (``compiled_query``) come back with the
    values and types ``Connection.execute`` gives: aware timestamps (a key's expiry and
    revocation decide a refusal), dates, booleans, decimals, the parties' JSON."""
    from billing_api.access import grants
    from billing_api.access.models import ApiKey, WhitelistEntry
    from billing_api.api import conditional
    from billing_api.export import details
    from billing_api.sync import state

    stamp = dt.datetime(2026, 11, 30, 23, 59, 58, 123456, tzinfo=dt.UTC)
    with transaction(factory) as session:
        key = session.get_one(ApiKey, billed.partner.key_id)
        key.expires_at, key.revoked_at, key.last_used_at = (
            stamp + dt.timedelta(days=1), stamp, stamp - dt.timedelta(hours=1))
        session.add(WhitelistEntry(company_id=billed.partner.company_id,
                                   network="2001:db8::/64", description="office"))
        digest = key.digest
    partner = {"state_partner": billed.partner.company_id, "state_environment": "production"}
    cases = [
        (grants._BY_DIGEST, {"wanted": digest}),
        (grants._BY_ID, {"wanted": billed.partner.key_id}),
        (grants._BY_ID, {"wanted": -1}),
        (state._invoice_query(), partner | {"state_kind": "purchase",
                                            "state_number": billed.invoice_number}),
        (state._partner_query(), partner),
        (details._SUBSCRIPTION, {"subscription_id": billed.subscription_id,
                                 "partner_id": billed.partner.company_id,
                                 "environment": "production"}),
        (details._RESOURCES, {"subscription_id": billed.subscription_id}),
        (conditional._details_query(), {"wanted": billed.subscription_id,
                                        "partner": billed.partner.company_id,
                                        "environment": "production"}),
    ]
    with engine.connect() as connection:
        for query, params in cases:
            expected = [tuple(row) for row in connection.execute(query.statement, params)]
            assert expected or params == {"wanted": -1}  # each case reads something
            for _ in range(2):  # the first run learns the result types, the next uses them
                assert query.all(connection, params) == expected
                assert ([[type(value) for value in row] for row in query.all(connection, params)]
                        == [[type(value) for value in row] for row in expected])
    grant = grants.grant_for_key_id(engine.connect(), billed.partner.key_id)
    assert grant is not None and grant.revoked_at == stamp and grant.status() == "revoked"
    assert grant.networks == ("127.0.0.1/32", "2001:db8::/64")


def test_a_compiled_query_that_fails_raises_sqlalchemys_error(engine: Engine) -> None:
    """A driver error arrives as SQLAlchemy's (a database that is down is a 503 through
    ``api.problems``), and the connection's transaction can be ended as after ``execute``."""
    from sqlalchemy import bindparam, literal_column
    from sqlalchemy import table as table_

    from billing_api.compiled_query import CompiledQuery

    broken = CompiledQuery(select(literal_column("no_such_column"))
                           .select_from(table_("companies"))
                           .where(literal_column("id") == bindparam("wanted")))
    with engine.connect() as connection:
        with pytest.raises(DBAPIError) as raised:
            broken.all(connection, {"wanted": 1})
        assert "no_such_column" in str(raised.value)
        connection.rollback()
        assert connection.execute(text("SELECT 1")).scalar() == 1
