"""The two streaming queries behind an invoice document: invoice headers, and their lines.

Both are ordered the same way (invoice date, invoice id), so the writer merges them in one
pass and holds one invoice at a time. Lines come from one range scan of
``ix_price_lines_export``; money stays integer units and dates arrive as ``YYYYMMDD`` text
rendered by the database. The caller's partner and environment are part of every query: a
key of one environment cannot reach another's rows.

Each query is compiled to the driver's SQL once per engine and document kind
(``prepared_*``) and read through the driver's own cursor: building and compiling the
statement per request cost more than a one-invoice download's rows (profiled under ``wrk``),
and SQLAlchemy's row objects add a layer per row that the writers do not need (they index
plain tuples).
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Date,
    Select,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import aliased

from billing_api.billing.models import BillingRun, Invoice, PriceLine
from billing_api.catalog.models import PlanCategory, ServicePlan
from billing_api.customers.models import Customer, Subscription, SubscriptionAttribute

FETCH_ROWS = 2000
PREFETCH_BATCHES = 2  # batches a PostgreSQL export reads ahead (see _prefetched)

# Column positions in a line row (see ``_line_columns``); the writers index rows by these.
(
    INVOICE_ID,
    CUSTOMER_ID,
    CUSTOMER_NUMBER,
    CUSTOMER_NAME,
    COST_CENTER,
    SUBSCRIPTION_ID,
    SUBSCRIPTION_NAME,
    BILLING_MODEL,
    PLAN_ID,
    PLAN_NAME,
    PLAN_CATEGORY,
    SUBSCRIPTION_START,
    SUBSCRIPTION_PO,
    LINE_ID,
    UID,
    DESCRIPTION,
    SKU,
    QUANTITY,
    QUANTITY_TYPE,
    UNIT_PRICE,
    DISCOUNT,
    EXTENDED_PRICE,
    VAT,
    TAX_ZONE_ID,
    TAX_PERCENTAGE,
    START_DATE,
    END_DATE,
    DURATION,
    DURATION_TYPE,
    CONSUMER_NAME,
    CONSUMER_NUMBER,
    RATE_PERIOD_ID,
    SUB_PO_NUMBER,
    CHARGE_TYPE,
    BILLING_FREQUENCY,
    ROW_HASH,
    ATTRIBUTES,
    SALES_PRICE,
    SALES_DISCOUNT,
    SALES_EXTENDED,
    SALES_VAT,
) = range(41)

# Column positions in an invoice row.
(
    H_ID,
    H_NUMBER,
    H_DESCRIPTION,
    H_DATE,
    H_DUE,
    H_CURRENCY,
    H_TERMS,
    H_TYPE,
    H_LANGUAGE,
    H_SENDER,
    H_RECEIVER,
    H_TOTAL_EXCL,
    H_TOTAL_VAT,
    H_TOTAL_INCL,
) = range(14)


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose rows, which environment, which invoice dates (inclusive); with ``since``, only
    the invoices of the runs at sync positions ``since < position <= upto`` (an incremental
    sync, ``sync/state.py``)."""

    partner_id: int
    environment: str
    start: dt.date
    end: dt.date
    since: int | None = None
    upto: int = 0


def _raw(column: Any) -> ColumnElement[Any]:
    """The stored integer, not the ``ScaledDecimal`` type's ``Decimal``."""
    return cast(column, BigInteger)


def compact_date(column: Any, dialect: str) -> ColumnElement[str]:
    """A date as ``YYYYMMDD`` text, rendered by the database."""
    if dialect == "postgresql":
        return func.to_char(column, "YYYYMMDD")
    return func.replace(cast(column, String), "-", "")


def _attributes_json(dialect: str) -> ColumnElement[Any]:
    """A subscription's configuration attributes as one JSON array text (v4 only)."""
    a = SubscriptionAttribute
    aggregate: ColumnElement[Any]
    if dialect == "postgresql":
        item = func.json_build_array(a.attribute, a.value, a.description, a.noshow)
        aggregate = cast(func.json_agg(aggregate_order_by(item, a.id)), String)
    else:
        # SQLite aggregates in scan order: the subscription_id index yields rows by id.
        item = func.json_array(a.attribute, a.value, a.description, a.noshow)
        aggregate = func.json_group_array(item)
    return select(aggregate).where(a.subscription_id == PriceLine.subscription_id).scalar_subquery()


def _first_of_subscription() -> ColumnElement[bool]:
    """True on the first line of each (invoice, customer, subscription) group in document
    order: the writers read the customer's and the subscription's columns from that line
    only, so the others carry NULLs there (less for the server to render and send, and the
    attribute subquery runs once per group instead of once per line). Partitioned by the
    export index's own prefix, so the window needs no sort of its own. PostgreSQL only:
    PostgreSQL works on its own core while the writer runs (a consolidated document 20 %
    faster in process), SQLite in the writer's thread (20 % slower there)."""
    pl = PriceLine
    number = func.row_number().over(
        partition_by=(pl.invoice_date, pl.invoice_id, pl.customer_id, pl.subscription_id),
        order_by=pl.id,
    )
    return number == 1


def _line_columns(dialect: str, with_attributes: bool) -> list[Any]:
    pl = PriceLine
    first = _first_of_subscription() if dialect == "postgresql" else None

    def group(column: Any) -> Any:
        return column if first is None else case((first, column))

    return [
        pl.invoice_id,
        pl.customer_id,
        group(Customer.customer_number),
        group(Customer.company_name),
        group(Customer.cost_center),
        pl.subscription_id,
        group(Subscription.name),
        group(ServicePlan.billing_model),
        group(Subscription.plan_id),
        group(ServicePlan.name),
        group(PlanCategory.name),
        group(compact_date(Subscription.start_date, dialect)),
        group(Subscription.po_number),
        pl.id,
        pl.uid,
        pl.description,
        pl.sku,
        _raw(pl.quantity),
        pl.quantity_type,
        _raw(pl.unit_price),
        _raw(pl.discount),
        _raw(pl.extended_price),
        _raw(pl.vat),
        pl.tax_zone_id,
        _raw(pl.tax_percentage),
        compact_date(pl.start_date, dialect),
        compact_date(pl.end_date, dialect),
        _raw(pl.duration),
        pl.duration_type,
        pl.consumer_company_name,
        pl.consumer_company_number,
        pl.rate_period_id,
        pl.sub_po_number,
        pl.charge_type,
        pl.billing_frequency,
        pl.row_hash,
        group(_attributes_json(dialect)) if with_attributes else literal(None),
    ]


def _scoped(stmt: Select[Any], table: Any, kind: str, since: bool = False) -> Select[Any]:
    # Named parameters, so that one compiled statement serves every caller and date range.
    stmt = stmt.where(
        table.partner_id == bindparam("scope_partner"),
        table.environment == bindparam("scope_environment"),
        table.kind == kind,
        table.invoice_date >= bindparam("scope_start", type_=Date),
        table.invoice_date <= bindparam("scope_end", type_=Date),
    )
    if not since:
        return stmt
    if table is PriceLine:
        return stmt.where(PriceLine.invoice_id.in_(
            select(Invoice.id).where(Invoice.billing_run_id.in_(_runs_since()))))
    return stmt.where(table.billing_run_id.in_(_runs_since()))


def _runs_since() -> Select[Any]:
    """The caller's runs after the cursor, up to the snapshot's position. The date range
    stays on the outer query (narrowed to these runs' invoice dates by the caller), so lines
    still come from one range scan of ``ix_price_lines_export``."""
    return select(BillingRun.id).where(
        BillingRun.partner_id == bindparam("scope_partner"),
        BillingRun.environment == bindparam("scope_environment"),
        BillingRun.sync_position > bindparam("scope_since"),
        BillingRun.sync_position <= bindparam("scope_upto"),
    )


def _scope_values(scope: Scope) -> dict[str, Any]:
    values: dict[str, Any] = {
        "scope_partner": scope.partner_id,
        "scope_environment": scope.environment,
        "scope_start": scope.start,
        "scope_end": scope.end,
    }
    if scope.since is not None:
        values |= {"scope_since": scope.since, "scope_upto": scope.upto}
    return values


def line_query(
    dialect: str, kind: str, scope: Scope, *, with_attributes: bool, with_sales: bool = False
) -> Select[Any]:
    """Every line of the partner's ``kind`` invoices dated in the scope, in document order;
    with ``with_sales`` each purchase line carries its customer line's figures (or NULLs)."""
    return _line_query(dialect, kind, with_attributes, with_sales,
                       scope.since is not None).params(_scope_values(scope))


def _line_query(dialect: str, kind: str, with_attributes: bool, with_sales: bool,
                since: bool = False) -> Select[Any]:
    pl = PriceLine
    columns = _line_columns(dialect, with_attributes)
    stmt = (
        select(*columns)
        .join(Customer, Customer.id == pl.customer_id)
        .join(Subscription, Subscription.id == pl.subscription_id)
        .join(ServicePlan, ServicePlan.id == Subscription.plan_id)
        .join(PlanCategory, PlanCategory.id == ServicePlan.category_id)
    )
    if with_sales:
        sales = aliased(PriceLine, name="sales")
        stmt = stmt.add_columns(
            _raw(sales.unit_price),
            _raw(sales.discount),
            _raw(sales.extended_price),
            _raw(sales.vat),
        ).outerjoin(
            sales,
            and_(
                sales.environment == pl.environment,
                sales.kind == "customer",
                sales.row_hash == pl.row_hash,
            ),
        )
    return _scoped(stmt, pl, kind, since).order_by(
        pl.invoice_date, pl.invoice_id, pl.customer_id, pl.subscription_id, pl.id
    )


def invoice_query(dialect: str, kind: str, scope: Scope) -> Select[Any]:
    """The partner's ``kind`` invoices dated in the scope, in document order."""
    return _invoice_query(dialect, kind, scope.since is not None).params(_scope_values(scope))


def _invoice_query(dialect: str, kind: str, since: bool = False) -> Select[Any]:
    i: Table = Invoice.__table__  # type: ignore[assignment]
    stmt = select(
        i.c.id,
        i.c.invoice_number,
        i.c.description,
        compact_date(i.c.invoice_date, dialect),
        compact_date(i.c.due_date, dialect),
        i.c.currency,
        i.c.terms_of_payment_days,
        i.c.type,
        i.c.language_code,
        cast(i.c.sender, String),  # raw JSON text: the writers cache its rendering
        cast(i.c.receiver, String),
        _raw(i.c.total_excluding_vat),
        _raw(i.c.total_vat),
        _raw(i.c.total_including_vat),
    )
    return _scoped(stmt, i.c, kind, since).order_by(i.c.invoice_date, i.c.id)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A query compiled to the driver's SQL, with its parameters, for ``stream``."""

    sql: str
    params: Any  # a tuple for positional drivers (sqlite3), a dict for named ones (psycopg)
    cursor_name: str  # the server-side cursor's name on PostgreSQL; "" for a client-side one


@lru_cache(maxsize=64)
def _compiled(
    dialect: Dialect, query: str, kind: str, with_attributes: bool, with_sales: bool,
    since: bool, one_invoice: bool = False,
) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
    """SQL text, constant parameters and (positional drivers) parameter order; once per
    engine's dialect and document kind."""
    if query == "lines":
        stmt = _line_query(dialect.name, kind, with_attributes, with_sales, since)
        if one_invoice:
            stmt = stmt.where(PriceLine.invoice_id == bindparam("scope_invoice"))
    else:
        stmt = _invoice_query(dialect.name, kind, since)
        if one_invoice:
            stmt = stmt.where(Invoice.id == bindparam("scope_invoice"))
    compiled = stmt.compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    return str(compiled), dict(compiled.params), order


def _prepared(
    dialect: Dialect, query: str, kind: str, scope: Scope, with_attributes: bool,
    with_sales: bool, invoice_id: int | None = None, few: bool = False,
) -> Prepared:
    one = invoice_id is not None
    sql, constants, order = _compiled(dialect, query, kind, with_attributes, with_sales,
                                      scope.since is not None, one)
    values = constants | _scope_values(scope)
    if one:
        values["scope_invoice"] = invoice_id
    if dialect.name == "sqlite":  # SQLite keeps dates as ISO text (SQLAlchemy's DATE storage)
        values["scope_start"] = scope.start.isoformat()
        values["scope_end"] = scope.end.isoformat()
    params = tuple(values[name] for name in order) if order is not None else values
    # A few rows (one invoice's, or a window its runs' line counts keep under a chunk) come
    # at once on a plain cursor: a server-side one adds round trips, and PostgreSQL plans a
    # DECLARE afresh each time where psycopg prepares a plain cursor's statement once per
    # connection (a one-day collection: 1.4 ms of server CPU against 0.34 ms).
    return Prepared(sql, params, "" if one or few else f"export_{query}")


def prepared_line_query(
    dialect: Dialect, kind: str, scope: Scope, *, with_attributes: bool, with_sales: bool = False,
    invoice_id: int | None = None, few: bool = False,
) -> Prepared:
    """``line_query``, compiled once for ``dialect``; only invoice ``invoice_id``'s lines
    when given. ``few``: the caller knows the rows are few (no server-side cursor)."""
    return _prepared(dialect, "lines", kind, scope, with_attributes, with_sales, invoice_id,
                     few)


def prepared_invoice_query(
    dialect: Dialect, kind: str, scope: Scope, *, invoice_id: int | None = None,
    few: bool = False,
) -> Prepared:
    """``invoice_query``, compiled once for ``dialect``; only invoice ``invoice_id`` when
    given. ``few`` as for ``prepared_line_query``."""
    return _prepared(dialect, "invoices", kind, scope, False, False, invoice_id, few)


def stream(
    connection: Connection, query: Prepared | Select[Any]
) -> Generator[Sequence[Any], None, None]:
    """Rows in batches: a server-side cursor on PostgreSQL, a plain cursor on SQLite.

    A ``Prepared`` query runs on the driver's own cursor inside the connection's transaction
    and yields the driver's tuples; a ``Select`` goes through SQLAlchemy."""
    if not isinstance(query, Prepared):
        result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
            query
        )
        try:
            for partition in result.partitions(FETCH_ROWS):
                yield from partition
        finally:
            result.close()
        return
    driver_connection: Any = connection.connection.dbapi_connection
    server_side = connection.dialect.name == "postgresql" and bool(query.cursor_name)
    if server_side:
        # Positional: SQLAlchemy's asyncio adapter (the event loop's reads) takes no keyword.
        cursor = driver_connection.cursor(query.cursor_name)
    else:
        cursor = driver_connection.cursor()
    try:
        cursor.execute(query.sql, query.params)
        batch = cursor.fetchmany(FETCH_ROWS)
        yield from batch
        if server_side and len(batch) == FETCH_ROWS:
            # More to come: worth a thread (a small document is done without one).
            yield from _prefetched(cursor)
        else:
            while batch := cursor.fetchmany(FETCH_ROWS):
                yield from batch
    finally:
        cursor.close()


def _prefetched(cursor: Any) -> Generator[Sequence[Any], None, None]:
    """A server-side cursor's rows, the next batch fetched by a thread while this one is
    written: the server computes rows on the other core meanwhile (psycopg waits for it
    without the GIL). Up to ``PREFETCH_BATCHES`` batches wait, so memory stays bounded; the
    thread is stopped and joined before the caller closes the cursor."""
    batches: queue.Queue[list[Any] | BaseException] = queue.Queue(maxsize=PREFETCH_BATCHES)
    stop = threading.Event()

    def hand_over(item: list[Any] | BaseException) -> None:
        while not stop.is_set():
            try:
                batches.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def fetch() -> None:
        try:
            while not stop.is_set():
                batch = cursor.fetchmany(FETCH_ROWS)
                hand_over(batch)
                if not batch:
                    return
        except BaseException as exc:  # re-raised by the reading side
            hand_over(exc)

    worker = threading.Thread(target=fetch, name="export-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = batches.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield from item
    finally:
        stop.set()
        worker.join()
