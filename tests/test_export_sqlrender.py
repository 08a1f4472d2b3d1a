"""PostgreSQL's rendering of header, receiver and totals equals the Python renderers', byte for
byte, on hostile values (export/sqlrender.py; the invoice query uses it on PostgreSQL).

On PostgreSQL, hypothesis draws texts (markup, quotes, CR, controls XML forbids, U+FFFE/FFFF,
non-ASCII), integers and money units; each list of fields is rendered by the database from
bound parameters and by ``compiled.xml_renderer``/``json_renderer`` from the same values, and
a whole invoice row of the rendered query is checked against the unrendered one through the
writers. On SQLite the invoice query stays unrendered (asserted).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from billing_api.export import source as s
from billing_api.export import sqlrender
from billing_api.export.compiled import json_renderer, xml_renderer
from billing_api.export.documents import (
    RECEIVER_FIELDS,
    TOTAL_FIELDS,
    Field,
    Kind,
    invoice_shape,
)
from billing_api.export.writers import JsonWriter, XmlWriter
from billing_api.settings import Settings
from tests.export_world import build_golden_world

# PostgreSQL text holds neither NUL nor lone surrogates: every other character is fair game.
TEXTS = st.one_of(
    st.none(),
    st.just(""),
    st.text(
        alphabet=st.one_of(
            st.sampled_from("&<>\"'\r\n\t \x01\x08\x0b\x0c\x1f\x7f\ufffe\uffff\\%:é€😀"),
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        ),
        max_size=12,
    ),
)
UNITS = st.one_of(st.none(), st.integers(-(10**15), 10**15), st.sampled_from([0, 5, -5, 10000]))
INTS = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
DATES = st.one_of(st.none(), st.just(""), st.sampled_from(["20260131", "19991231"]))
EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
MIXED = (
    Field("Name", 0, Kind.TEXT),
    Field("Count", 1, Kind.INT),
    Field("Amount", 2, Kind.MONEY),
    Field("Day", 3, Kind.DATE),
    Field("Other", 4, Kind.TEXT),
)


def by_name(fields: tuple[Field, ...]) -> list[Field]:
    return sorted(fields, key=lambda f: f.name.lower())


def sql_render(engine: Engine, fields: tuple[Field, ...] | list[Field], values: list[Any],
               fmt: str) -> str:
    """``fields`` rendered by PostgreSQL from bound ``values`` (cast as the invoice query's
    columns are typed)."""
    types = {Kind.TEXT: "text", Kind.DATE: "text", Kind.INT: "bigint", Kind.MONEY: "bigint"}
    kinds = {f.index: f.kind for f in fields}
    expressions = [f"CAST(:v{n} AS {types[kinds[n]]})" for n in range(len(values))]
    render = sqlrender.xml_fields if fmt == "xml" else sqlrender.json_fields
    with engine.connect() as connection:
        rendered = connection.execute(
            text(f"SELECT {render(fields, expressions)}"),
            {f"v{n}": v for n, v in enumerate(values)},
        ).scalar_one()
    return str(rendered)


SCOPE = s.Scope(2, "production", dt.date(2000, 1, 1), dt.date(2099, 12, 31))


@pytest.fixture
def postgres(engine: Engine, backend: str) -> Engine | None:
    """The engine on the PostgreSQL leg; None on the SQLite leg, where exports render in
    Python and the invoice query (asserted here) has no rendered columns."""
    if backend != "postgresql":
        query = s.invoice_query("sqlite", "customer", SCOPE, "xml")
        assert "json_to_record" not in str(query) and len(query.selected_columns) == 14
        assert not s.renders_invoices("sqlite")
        return None
    assert s.renders_invoices("postgresql")
    query = s.invoice_query("postgresql", "customer", SCOPE, "xml")
    assert "json_to_record" in str(query) and len(query.selected_columns) == 16
    return engine


@EXAMPLES
@given(name=TEXTS, count=INTS, amount=UNITS, day=DATES, other=TEXTS)
def test_sql_renders_every_kind_as_python_does(
    postgres: Engine | None, name: str | None, count: int | None, amount: int | None,
    day: str | None, other: str | None,
) -> None:
    if postgres is None:
        return
    values = [name, count, amount, day, other]
    assert sql_render(postgres, MIXED, values, "xml") == xml_renderer(MIXED)(values)
    ordered = by_name(MIXED)
    assert sql_render(postgres, ordered, values, "json") == json_renderer(ordered)(values)


@EXAMPLES
@given(values=st.lists(TEXTS, min_size=16, max_size=16), account=INTS)
def test_sql_renders_a_receiver_as_python_does(
    postgres: Engine | None, values: list[Any], account: int | None
) -> None:
    if postgres is None:
        return
    values[0] = account  # AccountID is a number
    assert sql_render(postgres, RECEIVER_FIELDS, values, "xml") == (
        xml_renderer(RECEIVER_FIELDS)(values))
    ordered = by_name(RECEIVER_FIELDS)
    assert sql_render(postgres, ordered, values, "json") == json_renderer(ordered)(values)


@EXAMPLES
@given(units=st.lists(st.integers(-(10**15), 10**15), min_size=3, max_size=3))
def test_sql_renders_totals_as_python_does(postgres: Engine | None, units: list[int]) -> None:
    if postgres is None:
        return
    assert sql_render(postgres, TOTAL_FIELDS, units, "xml") == xml_renderer(TOTAL_FIELDS)(units)
    ordered = by_name(TOTAL_FIELDS)
    assert sql_render(postgres, ordered, units, "json") == json_renderer(ordered)(units)


def test_a_rendered_invoice_row_writes_what_the_raw_row_writes(
    postgres: Engine | None, factory: sessionmaker[Session], settings: Settings
) -> None:
    """The whole invoice query, rendered and not, through both writers: hostile snapshot
    values, a missing field, a JSON null, an unknown language code."""
    if postgres is None:
        return
    build_golden_world(factory, settings)
    nasty = "A&B <\"'>\r\x01\ufffe é😀"
    receiver = {"AccountID": 7, "CompanyName": nasty, "City": None, "Zip": "",
                "Email": "a\u0007b", "Type": "Customer"}
    with postgres.begin() as connection:
        connection.execute(
            text("UPDATE invoices SET receiver = CAST(:r AS json), language_code = 'XX',"
                 " description = :d WHERE id = (SELECT min(id) FROM invoices)"),
            {"r": json.dumps(receiver), "d": nasty},
        )
    checked = 0
    for kind, endpoint in (("customer", "customerinvoices"), ("purchase", "invoices")):
        shape = invoice_shape(endpoint, v4=True)
        for fmt, writer_class in (("xml", XmlWriter), ("json", JsonWriter)):
            with postgres.connect() as connection:
                raw = connection.execute(s.invoice_query("postgresql", kind, SCOPE)).all()
                rendered = connection.execute(
                    s.invoice_query("postgresql", kind, SCOPE, fmt)).all()
            assert len(raw) == len(rendered) > 0
            plain, fast = writer_class(shape), writer_class(shape, rendered=True)
            for before, after in zip(raw, rendered, strict=True):
                assert fast.invoice_start(after, False) == plain.invoice_start(before, False)
                assert fast.invoice_end(after, (5, 1)) == plain.invoice_end(before, (5, 1))
                checked += 1
    assert checked >= 4
