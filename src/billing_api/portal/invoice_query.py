"""What the portal's Invoices page reads: the invoice listing, the filter choices and the
monthly and per-vendor sums. SQLAlchemy Core; every statement binds the viewer's company
(``partner_id``) and the chosen environment, like the API's own queries.

Months are **invoice-date months** (``Invoice.invoice_date``): the same date the v4
documents' ``startDate``/``endDate`` window filters on, so a month's sum equals the sum of
``TotalExcludingVAT`` over the v4 document of that month's window. Sums are summed in the
database as the stored integer units (1/10,000) and become ``Decimal`` only at the end: exact.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Connection, Select, Table, cast, func, select

from billing_api.billing.models import Invoice
from billing_api.catalog.models import Vendor
from billing_api.customers.models import Customer
from billing_api.db import from_units

# purchase: distributor → partner; customer: partner → its customers
KINDS = ("purchase", "customer")
LISTING_LIMIT = 300  # rows per kind on one page: narrow the filter for more

_i: Table = Invoice.__table__  # type: ignore[assignment]
_v: Table = Vendor.__table__  # type: ignore[assignment]
_c: Table = Customer.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class Filters:
    """The page's filter, already validated: an inclusive range of dates (whole months)."""

    environment: str
    start: dt.date
    end: dt.date
    vendor_id: int | None = None
    customer_id: int | None = None


@dataclass(frozen=True)
class Row:
    """One invoice as the listing shows it."""

    kind: str
    number: str
    date: dt.date
    vendor: str
    customer: str
    currency: str
    total_excl: Decimal
    total_vat: Decimal
    total_incl: Decimal

    @property
    def month(self) -> str:
        return self.date.strftime("%Y-%m")


@dataclass(frozen=True)
class Listing:
    rows: dict[str, list[Row]]  # kind → newest first
    matched: dict[str, int]  # kind → how many matched (rows are cut at LISTING_LIMIT)


@dataclass
class Figures:
    """Purchases and sales excluding VAT in one currency: per month and per vendor."""

    currency: str
    months: list[str]  # YYYY-MM, oldest first, every month of the range (zero when none)
    purchases: dict[str, Decimal] = field(default_factory=dict)  # month → sum
    sales: dict[str, Decimal] = field(default_factory=dict)
    vendor_purchases: dict[str, Decimal] = field(default_factory=dict)  # vendor → sum
    vendor_sales: dict[str, Decimal] = field(default_factory=dict)
    other_currencies: int = 0  # invoices left out: another currency cannot be added up

    def margin(self, month: str) -> Decimal:
        return self.sales.get(month, Decimal(0)) - self.purchases.get(month, Decimal(0))

    @property
    def vendors(self) -> list[str]:
        return sorted(set(self.vendor_purchases) | set(self.vendor_sales))

    def vendor_margin(self, vendor: str) -> Decimal:
        return self.vendor_sales.get(vendor, Decimal(0)) - \
            self.vendor_purchases.get(vendor, Decimal(0))


def _scoped(stmt: Select[Any], partner_id: int, environment: str, start: dt.date,
            end: dt.date) -> Select[Any]:
    return stmt.where(_i.c.partner_id == partner_id, _i.c.environment == environment,
                      _i.c.invoice_date >= start, _i.c.invoice_date <= end)


def listing(connection: Connection, partner_id: int, filters: Filters) -> Listing:
    """Both kinds of invoice in the filter, newest first, at most ``LISTING_LIMIT`` each.
    The customer filter narrows the sales invoices only: purchase invoices are per vendor,
    not per customer."""
    rows: dict[str, list[Row]] = {}
    matched: dict[str, int] = {}
    for kind in KINDS:
        where = [_i.c.kind == kind]
        if filters.vendor_id is not None:
            where.append(_i.c.vendor_id == filters.vendor_id)
        if kind == "customer" and filters.customer_id is not None:
            where.append(_i.c.customer_id == filters.customer_id)
        count = _scoped(select(func.count()).select_from(_i), partner_id,
                        filters.environment, filters.start, filters.end).where(*where)
        matched[kind] = int(connection.scalar(count) or 0)
        stmt = _scoped(
            select(_i.c.invoice_number, _i.c.invoice_date, _v.c.name, _c.c.company_name,
                   _i.c.currency, cast(_i.c.total_excluding_vat, BigInteger),
                   cast(_i.c.total_vat, BigInteger), cast(_i.c.total_including_vat, BigInteger))
            .select_from(_i.join(_v, _v.c.id == _i.c.vendor_id)
                         .outerjoin(_c, _c.c.id == _i.c.customer_id)),
            partner_id, filters.environment, filters.start, filters.end,
        ).where(*where).order_by(_i.c.invoice_date.desc(), _i.c.id.desc()).limit(LISTING_LIMIT)
        rows[kind] = [
            Row(kind, number, date, vendor, customer or "", currency, from_units(excl),
                from_units(vat), from_units(incl))
            for number, date, vendor, customer, currency, excl, vat, incl
            in connection.execute(stmt)
        ]
    return Listing(rows, matched)


def vendor_choices(connection: Connection, partner_id: int, environment: str
                   ) -> list[tuple[int, str]]:
    """(id, name) of every vendor on one of the viewer's invoices in the environment."""
    stmt = (select(_v.c.id, _v.c.name).where(_v.c.id.in_(
        select(_i.c.vendor_id).where(_i.c.partner_id == partner_id,
                                     _i.c.environment == environment)))
            .order_by(_v.c.name))
    return [(int(i), str(n)) for i, n in connection.execute(stmt)]


def customer_choices(connection: Connection, partner_id: int, environment: str
                     ) -> list[tuple[int, str]]:
    """(id, name) of the viewer's customers in the environment that have a sales invoice."""
    stmt = (select(_c.c.id, _c.c.company_name, _c.c.customer_number)
            .where(_c.c.partner_id == partner_id, _c.c.environment == environment,
                   _c.c.id.in_(select(_i.c.customer_id).where(
                       _i.c.partner_id == partner_id, _i.c.environment == environment,
                       _i.c.kind == "customer")))
            .order_by(_c.c.company_name, _c.c.id))
    return [(int(i), f"{n} ({number})") for i, n, number in connection.execute(stmt)]


def month_range(first: dt.date, last: dt.date) -> list[str]:
    """Every ``YYYY-MM`` from ``first``'s month to ``last``'s, inclusive."""
    months: list[str] = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def figures(connection: Connection, partner_id: int, environment: str, start: dt.date,
            end: dt.date, currency: str) -> Figures:
    """Sums of ``TotalExcludingVAT`` per kind, invoice-date month and vendor in ``currency``
    (the partner's); invoices in another currency are only counted. Grouped by day in the
    database (a handful of billing dates) and folded into months here, the same on SQLite
    and PostgreSQL."""
    stmt = _scoped(
        select(_i.c.kind, _i.c.invoice_date, _v.c.name, _i.c.currency, func.count(),
               func.sum(cast(_i.c.total_excluding_vat, BigInteger)))
        .select_from(_i.join(_v, _v.c.id == _i.c.vendor_id)),
        partner_id, environment, start, end,
    ).group_by(_i.c.kind, _i.c.invoice_date, _v.c.name, _i.c.currency)
    units: dict[tuple[str, str], int] = defaultdict(int)
    vendor_units: dict[tuple[str, str], int] = defaultdict(int)
    found = Figures(currency, month_range(start, end))
    for kind, date, vendor, row_currency, count, total in connection.execute(stmt):
        if row_currency != currency:
            found.other_currencies += int(count)
            continue
        units[kind, date.strftime("%Y-%m")] += int(total or 0)
        vendor_units[kind, vendor] += int(total or 0)
    for (kind, month), value in units.items():
        (found.purchases if kind == "purchase" else found.sales)[month] = from_units(value)
    for (kind, vendor), value in vendor_units.items():
        target = found.vendor_purchases if kind == "purchase" else found.vendor_sales
        target[vendor] = from_units(value)
    return found


def month_bounds(months: Sequence[str]) -> tuple[dt.date, dt.date]:
    """The first day of the first month and the last day of the last one."""
    first = dt.date.fromisoformat(months[0] + "-01")
    year, month = map(int, months[-1].split("-"))
    following = dt.date(year + 1, 1, 1) if month == 12 else dt.date(year, month + 1, 1)
    return first, following - dt.timedelta(days=1)
