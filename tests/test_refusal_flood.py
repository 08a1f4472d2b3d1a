"""Floods of refused requests over real HTTP (uvicorn on loopback): the per-address limit on
failed API authentications, aggregated audit rows, and portal logins counted before the
password is verified. Runs on SQLite and PostgreSQL; the Redis variants are in
tests/test_ratelimit_redis.py.

Two client addresses on one machine: Linux routes all of 127.0.0.0/8 to loopback, so a client
bound to 127.0.0.2 reaches the server on 127.0.0.1 and is seen as 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from billing_api.access import audit, keys, users
from billing_api.access.errors import TooManyFailures
from billing_api.access.models import AuditEvent
from billing_api.access.ratelimit import (
    LoginThrottle,
    SlidingWindowLimiter,
    check_failed_auth,
    client_bucket,
    count_failed_auth,
)
from billing_api.access.whitelist import parse_network
from billing_api.app import create_app
from billing_api.cli import app as cli_app
from billing_api.cli import context
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests.access_helpers import make_partner, test_app
from tests.browser import FormClient
from tests.http_server import serve

WHOAMI = "/api/v4/whoami"
ATTACKER = "127.0.0.2"
PASSWORD = "correct horse battery staple"
JSON = {"Accept": "application/json"}


def client_from(address: str | None = None) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=address) if address else None
    return httpx.Client(transport=transport, timeout=20)


class SqlLog:
    """The statements every engine runs (the served app's, its event loop's included), for
    evidence that is not timing; ``close`` stops listening."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self._lock = threading.Lock()
        event.listen(Engine, "before_cursor_execute", self._seen)

    def close(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        with self._lock:
            self.statements.append(statement.lower())

    def count(self, fragment: str) -> int:
        with self._lock:
            return sum(fragment in s for s in self.statements)


def denied(factory: sessionmaker[Session]) -> list[tuple[int | None, str, str, int]]:
    """(company, address, reason, count) of the ``api_denied`` rows, oldest first."""
    audit.flush_pending()
    with factory() as session:
        rows = session.execute(
            select(AuditEvent.company_id, AuditEvent.client_address, AuditEvent.reason,
                   AuditEvent.count)
            .where(AuditEvent.event_type == "api_denied")
            .order_by(AuditEvent.created_at, AuditEvent.id)).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def totals(rows: list[tuple[int | None, str, str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, _, reason, count in rows:
        out[reason] = out.get(reason, 0) + count
    return out


def test_a_garbage_key_flood_is_limited_per_address_and_costs_a_few_audit_rows(
        settings: Settings, factory: sessionmaker[Session]) -> None:
    limit = settings.failed_auth_per_minute  # the default
    partner = make_partner(factory, settings)  # whitelists 127.0.0.1 only
    app = test_app(settings)
    sql = SqlLog()
    started = time.monotonic()
    with (serve(app) as base, client_from(ATTACKER) as attacker, client_from() as erp,
          closing(sql)):
        answers = []
        for i in range(100):
            if i == limit:
                lookups_before_limit = sql.count("api_keys")
            garbage = keys.generate_secret(Environment.PRODUCTION)  # well-formed, unknown
            answers.append(attacker.get(base + WHOAMI, headers={"X-Api-Key": garbage, **JSON}))
        lookups_past_limit = sql.count("api_keys") - lookups_before_limit
        as_xml = attacker.get(base + WHOAMI, headers={"X-Api-Key": "garbage"})
        # The limit is per address: a valid key from the attacker's address is refused too
        # (no lookup tells it apart), the partner's own address is not affected.
        valid_from_attacker = attacker.get(base + WHOAMI,
                                           headers={"X-Api-Key": partner.secret, **JSON})
        valid = erp.get(base + WHOAMI, headers={"X-Api-Key": partner.secret, **JSON})
    elapsed = time.monotonic() - started
    audit_writes = sql.count("insert into audit_events")

    assert [a.status_code for a in answers] == [401] * limit + [429] * (100 - limit)
    assert {a.json()["code"] for a in answers[:limit]} == {"unknown_key"}
    for refused in answers[limit:]:
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "too_many_failures"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert lookups_before_limit >= limit and lookups_past_limit == 0
    assert as_xml.status_code == 429
    assert as_xml.headers["content-type"].startswith("application/problem+xml")
    assert "<code>too_many_failures</code>" in as_xml.text
    assert 1 <= int(as_xml.headers["Retry-After"]) <= 60
    assert valid_from_attacker.status_code == 429
    assert valid.status_code == 200, valid.text
    assert valid.json()["client_address"] == "127.0.0.1"

    rows = denied(factory)
    # One row per reason and minute (a minute boundary may split each in two).
    assert 2 <= len(rows) <= 4, rows
    assert {(company, address) for company, address, _, _ in rows} == {(None, ATTACKER)}
    assert totals(rows) == {"unknown_key": limit, "too_many_failures": 102 - limit}
    # At most one write when the flood began, one per FLUSH_EVERY seconds, one at shutdown.
    assert audit_writes <= 2 + elapsed / audit.FLUSH_EVERY, (audit_writes, elapsed)


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("BILLING_API_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BILLING_API_SECRET_KEY", settings.secret_key.get_secret_value())
    context.settings.cache_clear()
    context.engine.cache_clear()

    def invoke(*args: str) -> str:
        result = CliRunner().invoke(cli_app, list(args))
        assert result.exit_code == 0, result.output
        return result.stdout

    yield invoke
    context.engine().dispose()
    context.settings.cache_clear()
    context.engine.cache_clear()


def test_refusals_of_a_company_key_stay_visible_to_the_company_with_their_count(
        settings: Settings, factory: sessionmaker[Session], cli: Any) -> None:
    """A stolen key used from a non-whitelisted address: the partner sees it, counted."""
    limited = settings.model_copy(update={"failed_auth_per_minute": 12})
    partner = make_partner(factory, limited)
    app = test_app(limited)
    with serve(app) as base:
        with client_from(ATTACKER) as attacker:
            statuses = [attacker.get(base + WHOAMI, headers={"X-Api-Key": partner.secret,
                                                             **JSON}).status_code
                        for _ in range(15)]
        audit.flush_pending()
        with FormClient(base) as browser:
            assert browser.log_in(partner.admin_email, PASSWORD).status_code == 303
            activity = browser.get("/portal/activity")
    assert statuses == [403] * 12 + [429] * 3
    rows = denied(factory)
    tied = [r for r in rows if r[0] == partner.company_id]
    assert {(r[1], r[2]) for r in tied} == {(ATTACKER, "ip_not_whitelisted")}
    assert sum(r[3] for r in tied) == 12
    # Refused before the lookup: no company is known, so the row is the operator's only.
    assert totals([r for r in rows if r[0] is None]) == {"too_many_failures": 3}

    assert activity.status_code == 200
    if len(tied) == 1:  # not split by a minute boundary
        assert "×12" in activity.text
    assert "ip not whitelisted" in activity.text and ATTACKER in activity.text
    assert "too many failures" not in activity.text

    out = cli("audit", "--company", str(partner.company_id))
    denials = [line.split("\t") for line in out.splitlines() if "\tapi_denied\t" in line]
    assert sum(int(fields[8]) for fields in denials) == 12
    assert {(fields[3], fields[6]) for fields in denials} == {(ATTACKER, "ip_not_whitelisted")}


def _make_accounts(factory: sessionmaker[Session]) -> tuple[int, str]:
    with transaction(factory) as session:
        company, admin = users.create_company(session, "Acme Cloud BV", "admin@acme.example",
                                              PASSWORD)
        return company.id, admin.email


def parallel_logins(bases: list[str], logins: list[tuple[str, str]]) -> list[int]:
    """Each login from its own browser session (on the workers at ``bases`` in turn), all
    posted at the same moment."""
    clients = [FormClient(bases[i % len(bases)]) for i in range(len(logins))]
    for client in clients:
        client.get("/")
    start = threading.Barrier(len(logins))
    statuses: list[int] = [0] * len(logins)

    def post(i: int) -> None:
        email, password = logins[i]
        start.wait()
        statuses[i] = clients[i].post("/portal/login",
                                      {"email": email, "password": password}).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(logins))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.__exit__()
    return statuses


def login_failures(factory: sessionmaker[Session]) -> dict[str, int]:
    audit.flush_pending()
    with factory() as session:
        rows = session.execute(select(AuditEvent.reason, AuditEvent.count).where(
            AuditEvent.event_type == "login_failed")).all()
    out: dict[str, int] = {}
    for reason, count in rows:
        out[reason] = out.get(reason, 0) + count
    return out


@pytest.mark.parametrize("bucket", ["email", "address"])
def test_parallel_login_guesses_get_at_most_the_limit_of_password_checks(
        settings: Settings, factory: sessionmaker[Session], bucket: str) -> None:
    """20 wrong passwords posted at once: only the throttle's limit reach the password check
    (each one that does answers 400 and is audited bad_credentials), the rest are refused
    first. Before, every guess passed the check while none was counted yet."""
    _, admin = _make_accounts(factory)
    app = create_app(settings)
    if bucket == "email":  # the defaults: 5 per e-mail, 20 per address
        guesses = [(admin, f"guess {i}") for i in range(20)]
        limit = 5
    else:
        app.state.portal_login_throttle = LoginThrottle(per_email=50, per_ip=4)
        guesses = [(f"user{i}@acme.example", "guess") for i in range(20)]
        limit = 4
    with serve(app) as base:
        statuses = parallel_logins([base], guesses)
        with FormClient(base) as late:
            right = late.log_in(admin, PASSWORD)
    assert sorted(statuses) == [400] * limit + [429] * (20 - limit)
    assert right.status_code == 429  # the e-mail or the address is still blocked
    audited = login_failures(factory)
    assert audited == {"bad_credentials": limit, "throttled": 21 - limit}
    with factory() as session:
        assert session.scalar(select(AuditEvent.id).where(
            AuditEvent.count > 1).limit(1)) is not None  # aggregated, not a row each


def test_two_workers_add_to_one_row(factory: sessionmaker[Session]) -> None:
    """Two processes' logs flushing the same (address, reason, minute) at the same time: one
    row, the sum of both counts (an upsert on the unique aggregate key)."""
    now = audit.utcnow()
    logs = [audit.RefusalLog(factory, every=3600, now=lambda: now) for _ in range(2)]
    for refusals in logs:
        refusals.flush()  # the next note is not written at once
    barrier = threading.Barrier(4)

    def hammer(refusals: audit.RefusalLog) -> None:
        barrier.wait()
        for _ in range(50):
            refusals.note(audit.EventType.API_DENIED, company_id=None,
                          client_address="192.0.2.7", path=WHOAMI, reason="unknown_key")
        refusals.flush()

    threads = [threading.Thread(target=hammer, args=(logs[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for refusals in logs:
        refusals.close()
    with factory() as session:
        rows = session.execute(select(AuditEvent.client_address, AuditEvent.count)).all()
    assert [tuple(r) for r in rows] == [("192.0.2.7", 200)]


def test_a_busy_database_delays_the_counts_not_the_request(
        factory: sessionmaker[Session], engine: Engine) -> None:
    """While another transaction holds the write lock (a billing run on SQLite), a refusal
    waits at most REQUEST_LOCK_WAIT; its count is kept and written by a later flush."""
    refusals = audit.RefusalLog(factory, every=3600)
    with transaction(factory, writer=True) as holder:  # BEGIN IMMEDIATE on SQLite
        if engine.dialect.name == "postgresql":
            holder.execute(text("LOCK TABLE audit_events IN EXCLUSIVE MODE"))
        started = time.monotonic()
        refusals.note(audit.EventType.API_DENIED, company_id=None, client_address="192.0.2.8",
                      reason="missing_key")
        waited = time.monotonic() - started
        assert refusals.pending() == 1
    assert waited < 5  # SQLite's busy timeout would be 30 s
    refusals.note(audit.EventType.API_DENIED, company_id=None, client_address="192.0.2.8",
                  reason="missing_key")
    refusals.close()
    with factory() as session:
        assert session.scalars(select(AuditEvent.count)).all() in ([2], [1, 1])
        assert sum(session.scalars(select(AuditEvent.count))) == 2


def test_the_failed_auth_limit_counts_an_ipv6_client_per_64() -> None:
    limiter = SlidingWindowLimiter()
    one, other = (parse_network(a).network_address for a in ("2001:db8:1:2::1",
                                                              "2001:db8:1:2:ffff::9"))
    assert client_bucket(one) == client_bucket(other) == "2001:db8:1:2::/64"
    assert client_bucket(parse_network("192.0.2.1").network_address) == "192.0.2.1"
    assert client_bucket(None) == "unknown"
    for _ in range(3):
        asyncio.run(count_failed_auth(limiter, one, 3))
    with pytest.raises(TooManyFailures) as refused:
        asyncio.run(check_failed_auth(limiter, other, 3))  # a fresh address in the same /64
    assert 1 <= refused.value.retry_after <= 60
    asyncio.run(check_failed_auth(limiter, parse_network("2001:db8:1:3::1").network_address,
                                  3))
