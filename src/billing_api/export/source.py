"""The two streaming queries behind an invoice document: invoice headers, and their lines.

Both are ordered the same way (invoice date, invoice id), so the writer merges them in one
pass and holds one invoice at a time. Lines come from one range scan of
``ix_price_lines_export``; money stays integer units and dates arrive as ``YYYYMMDD`` text
rendered by the database. The caller's partner and environment are part of every query: a
key of one environment cannot reach another's rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    Select,
    String,
    Table,
    and_,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import aliased

from billing_api.billing.models import Invoice, PriceLine
from billing_api.catalog.models import PlanCategory, ServicePlan
from billing_api.customers.models import Customer, Subscription, SubscriptionAttribute

FETCH_ROWS = 2000

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
    """Whose rows, which environment, which invoice dates (inclusive)."""

    partner_id: int
    environment: str
    start: dt.date
    end: dt.date


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


def _line_columns(dialect: str, with_attributes: bool) -> list[Any]:
    pl = PriceLine
    return [
        pl.invoice_id,
        pl.customer_id,
        Customer.customer_number,
        Customer.company_name,
        Customer.cost_center,
        pl.subscription_id,
        Subscription.name,
        ServicePlan.billing_model,
        Subscription.plan_id,
        ServicePlan.name,
        PlanCategory.name,
        compact_date(Subscription.start_date, dialect),
        Subscription.po_number,
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
        _attributes_json(dialect) if with_attributes else literal(None),
    ]


def _scoped(stmt: Select[Any], table: Any, kind: str, scope: Scope) -> Select[Any]:
    return stmt.where(
        table.partner_id == scope.partner_id,
        table.environment == scope.environment,
        table.kind == kind,
        table.invoice_date >= scope.start,
        table.invoice_date <= scope.end,
    )


def line_query(
    dialect: str, kind: str, scope: Scope, *, with_attributes: bool, with_sales: bool = False
) -> Select[Any]:
    """Every line of the partner's ``kind`` invoices dated in the scope, in document order;
    with ``with_sales`` each purchase line carries its customer line's figures (or NULLs)."""
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
    return _scoped(stmt, pl, kind, scope).order_by(
        pl.invoice_date, pl.invoice_id, pl.customer_id, pl.subscription_id, pl.id
    )


def invoice_query(dialect: str, kind: str, scope: Scope) -> Select[Any]:
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
    return _scoped(stmt, i.c, kind, scope).order_by(i.c.invoice_date, i.c.id)


def stream(connection: Connection, stmt: Select[Any]) -> Generator[Sequence[Any], None, None]:
    """Rows in batches: a server-side cursor on PostgreSQL, a plain cursor on SQLite."""
    result = connection.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(stmt)
    try:
        for partition in result.partitions(FETCH_ROWS):
            yield from partition
    finally:
        result.close()
