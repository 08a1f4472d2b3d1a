"""Every query a document request runs is scoped to the caller's partner and environment.

The export and subscription-details queries are prebuilt statements that filter on
``partner_id`` and ``environment`` (the leading columns of their indexes) with bound
parameters. This test listens to every statement the server sends while one partner's
production key downloads every document in every version and format, and fails on any
statement that reads a partner-owned table (one with both columns) without binding that
partner's id and environment: a query that forgot its scope cannot pass unseen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

import billing_api
from billing_api.access.models import Company
from billing_api.app import create_app
from billing_api.db import Base
from billing_api.export import source
from billing_api.settings import Settings
from billing_api.sync import cursor
from tests.access_helpers import make_partner
from tests.export_world import Client, build_rich_world
from tests.http_server import serve

PARTNER_OWNED = sorted(
    table.name for table in Base.metadata.sorted_tables
    if {"partner_id", "environment"} <= set(table.c.keys())
)


@contextmanager
def recorded_statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, Any]]]:
    """What SQLAlchemy executes, plus the export queries that ``source.stream`` runs on the
    driver's own cursor (the one place that bypasses SQLAlchemy's execution events: see
    ``test_only_the_export_stream_uses_driver_cursors``)."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        statements.append((statement, parameters))

    original_stream = source.stream

    def recording_stream(connection: Any, query: Any) -> Any:
        if isinstance(query, source.Prepared):
            statements.append((query.sql, query.params))
        return original_stream(connection, query)

    monkeypatch.setattr(source, "stream", recording_stream)
    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _values(sql: str, parameters: Any) -> set[object]:
    """The parameter values the statement actually uses (a named one only if its placeholder
    is in the SQL: psycopg ignores extra names)."""
    if isinstance(parameters, dict):
        return {value for name, value in parameters.items()
                if f"%({name})s" in sql or re.search(rf":{name}\b", sql)}
    if isinstance(parameters, Sequence) and not isinstance(parameters, str):
        return set(parameters)
    return set()


def _reads_partner_data(statement: str) -> bool:
    return any(re.search(rf"\b{name}\b", statement, re.IGNORECASE) for name in PARTNER_OWNED)


def test_only_the_export_stream_uses_driver_cursors() -> None:
    # Statements on a driver's own cursor are invisible to SQLAlchemy's events; the request
    # path may use one only in export/source.py, which the test below records.
    package = Path(billing_api.__file__).parent
    users = {
        str(path.relative_to(package))
        for folder in ("api", "access", "export", "portal", "ops")
        for path in (package / folder).rglob("*.py")
        if "dbapi_connection" in path.read_text(encoding="utf-8")
    }
    assert users == {"export/source.py"}


def test_partner_owned_tables_are_known() -> None:
    # The check below is only as good as this list: it must hold the billed data.
    assert {"customers", "subscriptions", "invoices", "price_lines"} <= set(PARTNER_OWNED)


def test_every_document_query_binds_the_callers_partner_and_environment(
    factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = build_rich_world(factory, settings)
    # Another partner with data of its own, and a sandbox key of the same partner, exist, so
    # an unscoped statement would have rows to leak.
    make_partner(factory, settings, name="Other Partner BV")
    with factory() as session:
        company_id = session.scalars(
            select(Company.id).where(Company.name == "Acme Cloud BV")).one()
    app = create_app(settings)
    requests: list[tuple[str, dict[str, str]]] = []
    for version in ("v2", "v3", "v4"):
        for document in ("invoices", "customerinvoices", "consolidatedinvoices"):
            for fmt in ("xml", "json"):
                requests.append((f"/api/{version}/{document}", {**world.window, "format": fmt}))
        if version == "v4":  # incremental sync: the runs after the first one
            since = cursor.encode(company_id, "production", 1)
            for document in ("invoices", "customerinvoices", "consolidatedinvoices"):
                requests.append((f"/api/{version}/{document}", {"since": since}))
                requests.append((f"/api/{version}/{document}",
                                 {"since": since, "startDate": "20261101", "format": "json"}))
        for subscription_id in world.subscription_ids:
            requests.append((f"/api/{version}/subscriptiondetails",
                             {"subscriptionId": str(subscription_id), "format": "json"}))
    with serve(app) as base, recorded_statements(monkeypatch) as statements:
        client = Client(base, world.secret)
        for path, params in requests:
            response = client.get(path, **params)
            assert response.status_code == 200, (path, params, response.text[:300])
    scoped = [(sql, params) for sql, params in statements if _reads_partner_data(sql)]
    assert len(scoped) >= len(requests)  # every request read partner data at least once
    for sql, params in scoped:
        values = _values(sql, params)
        assert company_id in values and "production" in values, (
            f"a statement reads partner data without the caller's scope:\n{sql}\n{params!r}"
        )
        assert re.search(r"\bpartner_id\b", sql) and re.search(r"\benvironment\b", sql), sql
