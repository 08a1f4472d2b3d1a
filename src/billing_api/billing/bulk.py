"""A billing run's bulk writes: the column order of price lines and invoices as the run
builds them, and the driver's own bulk path (``COPY`` on PostgreSQL, ``executemany`` on
SQLite) inside the session's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_api.billing.chunk import table
from billing_api.billing.context import RunContext
from billing_api.billing.models import Invoice

# A price line's columns in the order the run builds them: ``invoice_id`` (set once the
# chunk's new invoices have their ids), what differs between a charge's purchase and customer
# line, then what they share (one tuple per charge, see lines_for).
LINE_COLUMNS = (
    "invoice_id",
    "kind",
    "uid",
    "unit_price",
    "discount",
    "extended_price",
    "vat",
    "tax_zone_id",
    "tax_percentage",
    "partner_id",
    "environment",
    "invoice_date",
    "customer_id",
    "subscription_id",
    "resource_rate_id",
    "rate_period_id",
    "description",
    "sku",
    "quantity",
    "quantity_type",
    "start_date",
    "end_date",
    "duration",
    "duration_type",
    "consumer_company_name",
    "consumer_company_number",
    "charge_type",
    "billing_frequency",
    "sub_po_number",
    "row_hash",
)
# An invoice's columns as the run writes them: its id, what new_invoice knows (its
# ``fields``), then its type and totals (see insert_new_invoices).
INVOICE_COLUMNS = (
    "id",
    "partner_id",
    "environment",
    "kind",
    "billing_run_id",
    "vendor_id",
    "sender_company_id",
    "customer_id",
    "invoice_number",
    "invoice_date",
    "due_date",
    "description",
    "currency",
    "terms_of_payment_days",
    "language_code",
    "sender",
    "receiver",
    "type",
    "total_excluding_vat",
    "total_vat",
    "total_including_vat",
)


def _bulk_sql(table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    """(COPY for PostgreSQL, INSERT for SQLite), from constant column names only."""
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return (
        f"COPY {table} ({names}) FROM STDIN",
        f"INSERT INTO {table} ({names}) VALUES ({marks})",  # noqa: S608
    )


COPY_LINES, INSERT_LINES = _bulk_sql("price_lines", LINE_COLUMNS)
COPY_INVOICES, INSERT_INVOICES = _bulk_sql("invoices", INVOICE_COLUMNS)


def write_lines(session: Session, ctx: RunContext, rows: list[list[Any]]) -> None:
    """Insert the chunk's lines with the driver's bulk path."""
    bulk_insert(session, ctx, COPY_LINES, INSERT_LINES, rows)


def bulk_insert(
    session: Session, ctx: RunContext, copy_sql: str, insert_sql: str, rows: Sequence[Sequence[Any]]
) -> None:
    """``COPY`` on PostgreSQL, ``executemany`` on SQLite, inside the session's transaction."""
    driver_connection: Any = session.connection().connection.dbapi_connection
    if ctx.on_postgresql:
        with driver_connection.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in rows:
                copy.write_row(row)
        return
    cursor = driver_connection.cursor()
    try:
        cursor.executemany(insert_sql, rows)
    finally:
        cursor.close()


def new_invoice_ids(session: Session, ctx: RunContext, count: int) -> list[int]:
    """The ids the next ``count`` invoices would get from the database, in order: the
    sequence's next values on PostgreSQL; after the largest rowid on SQLite (whose rule for
    an INTEGER PRIMARY KEY without AUTOINCREMENT is exactly that, and the run holds the
    write lock)."""
    if ctx.on_postgresql:
        return list(
            session.scalars(
                select(func.nextval(func.pg_get_serial_sequence("invoices", "id"))).select_from(
                    func.generate_series(1, count)
                )
            )
        )
    largest = session.scalar(select(func.max(table(Invoice).c.id))) or 0
    return list(range(largest + 1, largest + 1 + count))
