"""What an e-invoice is made of, read for one invoice or streamed for a date window.

Money stays integer units of 1/10,000 (``db.SCALE``) and dates arrive as ``YYYYMMDD`` text
rendered by the database, as on the export path: no ``Decimal``, ``date`` or ORM object per
line. Lines come from the same range scan as the v4 documents (``ix_price_lines_export``)
on the bulk path, and from ``ix_price_lines_invoice`` for one invoice. Every statement binds
the caller's partner and environment.

Parties: the invoice's sender and receiver snapshots (taken at billing time) win; a field an
older snapshot lacks (the Peppol ones, added later) is read from the party's current row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, Connection, String, bindparam, cast, select
from sqlalchemy.engine import Dialect

from billing_api.access.models import Company
from billing_api.billing.models import BillingRun, Invoice, PriceLine, TaxZone
from billing_api.customers.models import Customer
from billing_api.export import source as export_source
from billing_api.export.source import Scope, compact_date

# Positions in a line row (``_line_columns``).
(
    L_INVOICE,
    L_DESCRIPTION,
    L_SKU,
    L_QUANTITY,
    L_UNIT_PRICE,
    L_DISCOUNT,
    L_EXTENDED,
    L_VAT,
    L_ZONE,
    L_PERCENT,
    L_START,
    L_END,
    L_DURATION,
    L_DURATION_TYPE,
    L_CHARGE_TYPE,
    L_SUBSCRIPTION,
    L_CONSUMER,
) = range(17)


@dataclass(frozen=True, slots=True)
class Header:
    """One invoice's header: totals in units, dates as ``YYYYMMDD``."""

    id: int
    kind: str  # purchase | customer
    number: str
    description: str
    date: str
    due: str
    currency: str
    terms_days: int
    partner_id: int
    sender_company_id: int
    customer_id: int | None
    sender: str  # the snapshots as stored: JSON text (``Parties`` reads each text once)
    receiver: str
    total_excl: int
    total_vat: int
    total_incl: int
    vendor_id: int = 0


@dataclass(slots=True)
class EInvoice:
    """A header with its lines (plain tuples, see ``L_*``) and both parties, completed."""

    header: Header
    lines: list[Sequence[Any]]
    seller: dict[str, Any]
    buyer: dict[str, Any]
    zones: dict[int, str] = field(default_factory=dict)  # tax zone id → code
    # A credit note's corrected invoice: (InvoiceID, YYYYMMDD), see ``corrected_invoice``.
    corrects: tuple[str, str] | None = None


def _units(column: Any) -> Any:
    return cast(column, BigInteger)


def _header_columns(dialect: str) -> list[Any]:
    i = Invoice
    return [
        i.id,
        i.kind,
        i.invoice_number,
        i.description,
        compact_date(i.invoice_date, dialect),
        compact_date(i.due_date, dialect),
        i.currency,
        i.terms_of_payment_days,
        i.partner_id,
        i.sender_company_id,
        i.customer_id,
        cast(i.sender, String),
        cast(i.receiver, String),
        _units(i.total_excluding_vat),
        _units(i.total_vat),
        _units(i.total_including_vat),
        i.vendor_id,
    ]


def _line_columns(dialect: str) -> list[Any]:
    pl = PriceLine
    return [
        pl.invoice_id,
        pl.description,
        pl.sku,
        _units(pl.quantity),
        _units(pl.unit_price),
        _units(pl.discount),
        _units(pl.extended_price),
        _units(pl.vat),
        pl.tax_zone_id,
        _units(pl.tax_percentage),
        compact_date(pl.start_date, dialect),
        compact_date(pl.end_date, dialect),
        _units(pl.duration),
        pl.duration_type,
        pl.charge_type,
        pl.subscription_id,
        pl.consumer_company_name,
    ]


def _header(row: Sequence[Any]) -> Header:
    # The columns are in the fields' order (``_header_columns``): positional, as this runs
    # once per invoice of a bulk ZIP.
    return Header(*row)


def find_invoice(
    connection: Connection, kind: str, partner_id: int, environment: str, number: str
) -> Header | None:
    """The caller's ``kind`` invoice numbered ``number``; None for a missing one and for one
    of another partner or environment alike."""
    sql, constants, order = _find_sql(connection.dialect)
    values = constants | {"partner": partner_id, "environment": environment, "kind": kind,
                          "number": number}
    params = tuple(values[name] for name in order) if order is not None else values
    # The driver's cursor with SQL compiled once: a one-invoice download's first query.
    rows = export_source.stream(connection, export_source.Prepared(sql, params, ""))
    try:
        row = next(rows, None)
    finally:
        rows.close()
    return None if row is None else _header(row)


@lru_cache(maxsize=8)
def _find_sql(dialect: Dialect) -> tuple[str, dict[str, Any], tuple[str, ...] | None]:
    i = Invoice
    compiled = (
        select(*_header_columns(dialect.name))
        .where(
            i.partner_id == bindparam("partner"),
            i.environment == bindparam("environment"),
            i.kind == bindparam("kind"),
            i.invoice_number == bindparam("number"),
        )
        .compile(dialect=dialect)
    )
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    return str(compiled), dict(compiled.params), order


def invoice_lines(
    connection: Connection, header: Header, environment: str
) -> list[Sequence[Any]]:
    """One invoice's lines in the v4 document's order."""
    pl = PriceLine
    stmt = (
        select(*_line_columns(connection.dialect.name))
        .where(
            pl.invoice_id == header.id,
            pl.partner_id == header.partner_id,
            pl.environment == environment,
        )
        .order_by(pl.customer_id, pl.subscription_id, pl.id)
    )
    return [tuple(row) for row in connection.execute(stmt)]


def stream_invoices(connection: Connection, kind: str, scope: Scope) -> Iterator[
    tuple[Header, list[Sequence[Any]]]
]:
    """Every ``kind`` invoice of the scope with its lines, one invoice held at a time: two
    queries ordered alike, merged in one pass (as ``export.stream`` does)."""
    dialect = connection.dialect.name
    i, pl = Invoice, PriceLine
    scoped = (
        (i, (i.partner_id, i.environment, i.kind, i.invoice_date)),
        (pl, (pl.partner_id, pl.environment, pl.kind, pl.invoice_date)),
    )
    conditions = [
        [
            partner == scope.partner_id,
            environment == scope.environment,
            kind_column == kind,
            day >= scope.start,
            day <= scope.end,
        ]
        for _table, (partner, environment, kind_column, day) in scoped
    ]
    if scope.since is not None:  # an incremental sync: the runs after the cursor only
        runs = select(BillingRun.id).where(
            BillingRun.partner_id == scope.partner_id,
            BillingRun.environment == scope.environment,
            BillingRun.sync_position > scope.since,
            BillingRun.sync_position <= scope.upto,
        )
        conditions[0].append(i.billing_run_id.in_(runs))
        conditions[1].append(pl.invoice_id.in_(
            select(i.id).where(i.billing_run_id.in_(runs))))
    headers = export_source.stream(
        connection,
        select(*_header_columns(dialect)).where(*conditions[0]).order_by(i.invoice_date, i.id),
    )
    lines = export_source.stream(
        connection,
        select(*_line_columns(dialect))
        .where(*conditions[1])
        .order_by(pl.invoice_date, pl.invoice_id, pl.customer_id, pl.subscription_id, pl.id),
    )
    try:
        current: Header | None = None
        batch: list[Sequence[Any]] = []
        for row in lines:
            if current is None or row[L_INVOICE] != current.id:
                if current is not None:
                    yield current, batch
                current = _header(next(headers))
                while current.id != row[L_INVOICE]:  # an invoice without lines: none exist
                    current = _header(next(headers))
                batch = []
            batch.append(tuple(row))
        if current is not None:
            yield current, batch
    finally:
        lines.close()
        headers.close()


def corrected_invoice(
    connection: Connection, header: Header, environment: str
) -> tuple[str, str] | None:
    """The invoice a credit note corrects: the latest earlier invoice (not itself a credit)
    from the same seller to the same buyer for the same vendor. Our corrections refund or
    re-rate charges already billed, so that invoice holds (the last of) them."""
    i = Invoice
    dialect = connection.dialect.name
    row = connection.execute(
        select(i.invoice_number, compact_date(i.invoice_date, dialect))
        .where(
            i.partner_id == header.partner_id,
            i.environment == environment,
            i.kind == header.kind,
            i.sender_company_id == header.sender_company_id,
            i.vendor_id == header.vendor_id,
            i.customer_id.is_(None) if header.customer_id is None
            else i.customer_id == header.customer_id,
            i.total_including_vat >= 0,
            i.id != header.id,
            compact_date(i.invoice_date, dialect) <= header.date,
        )
        .order_by(i.invoice_date.desc(), i.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def tax_zones(connection: Connection) -> dict[int, str]:
    """Every tax zone's code (a country code, ``RC`` or ``NON-EU``): a small table."""
    return {zone_id: code for zone_id, code in connection.execute(select(TaxZone.id, TaxZone.code))}


def _company_party(company: Any) -> dict[str, Any]:
    return {
        "AccountID": company["id"],
        "CustomerNumber": str(company["id"]),
        "CompanyName": company["name"],
        "Address": company["address"],
        "PostalCode": company["postal_code"],
        "City": company["city"],
        "CountryCode": company["country_code"],
        "VATNumber": company["vat_number"],
        "RegistrationNumber": company["chamber_of_commerce"],
        "RegistrationScheme": company["registration_scheme"],
        "EndpointID": company["endpoint_id"],
        "EndpointScheme": company["endpoint_scheme"],
        "IBAN": company["iban"],
        "BIC": company["bic"],
        "Email": company["email"],
        "Telephone": company["telephone"],
    }


def _customer_party(customer: Any) -> dict[str, Any]:
    return {
        "AccountID": customer["id"],
        "CustomerNumber": customer["customer_number"],
        "CompanyName": customer["company_name"],
        "Address": customer["address"],
        "PostalCode": customer["postal_code"],
        "City": customer["city"],
        "CountryCode": customer["country_code"],
        "VATNumber": customer["vat_number"],
        "RegistrationNumber": customer["registration_number"],
        "RegistrationScheme": customer["registration_scheme"],
        "EndpointID": customer["endpoint_id"],
        "EndpointScheme": customer["endpoint_scheme"],
        "IBAN": customer["iban"],
        "BIC": customer["bic"],
        "Email": customer["email"],
        "Telephone": customer["telephone"],
    }


# What an e-invoice needs beyond the v4 party fields; a snapshot without them (billed before
# they existed) is completed from the party's current row.
PEPPOL_KEYS = frozenset(
    {"EndpointID", "EndpointScheme", "RegistrationNumber", "RegistrationScheme", "IBAN", "BIC"}
)
PARTY_CACHE = 512  # parties per request; emptied when full


class Parties:
    """Sellers and buyers of a request's invoices: each snapshot text parsed once, a current
    row read only for a snapshot that lacks a Peppol field. The same party comes back as the
    same dict, so the renderers can cache what they make of it."""

    def __init__(self, connection: Connection, environment: str) -> None:
        self._connection = connection
        self._environment = environment
        self._parties: dict[tuple[str, int, str], dict[str, Any]] = {}

    def _company(self, company_id: int) -> dict[str, Any]:
        table = Company.__table__
        row = self._connection.execute(select(table).where(table.c.id == company_id))
        return _company_party(row.mappings().one())

    def _customer(self, partner_id: int, customer_id: int) -> dict[str, Any]:
        c = Customer.__table__.c
        row = self._connection.execute(
            select(Customer.__table__).where(
                c.id == customer_id,
                c.partner_id == partner_id,
                c.environment == self._environment,
            )
        )
        return _customer_party(row.mappings().one())

    def _party(self, kind: str, party_id: int, raw: str, partner_id: int) -> dict[str, Any]:
        key = (kind, party_id, raw)
        found = self._parties.get(key)
        if found is None:
            found = _snapshot(json.loads(raw))
            if not found.keys() >= PEPPOL_KEYS:
                current = (self._company(party_id) if kind == "company"
                           else self._customer(partner_id, party_id))
                found = current | found
            if len(self._parties) >= PARTY_CACHE:
                self._parties.clear()
            self._parties[key] = found
        return found

    def of(self, header: Header) -> tuple[dict[str, Any], dict[str, Any]]:
        """(seller, buyer): the snapshots, completed from current rows where they fall short."""
        seller = self._party("company", header.sender_company_id, header.sender,
                             header.partner_id)
        if header.kind == "purchase" or header.customer_id is None:
            buyer = self._party("company", header.partner_id, header.receiver, header.partner_id)
        else:
            buyer = self._party("customer", header.customer_id, header.receiver,
                                header.partner_id)
        return seller, buyer


def snapshot_complete(snapshot: dict[str, Any]) -> bool:
    """True when a party snapshot holds every Peppol field, so no current row is read."""
    return _snapshot(snapshot).keys() >= PEPPOL_KEYS


def _snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A snapshot in the current rows' terms, unknown (None) values left out."""
    known = {key: value for key, value in snapshot.items() if value is not None}
    if "Zip" in known:  # the receiver snapshot's name for the postal code
        known["PostalCode"] = known.pop("Zip")
    if "ChamberOfCommerce" in known and "RegistrationNumber" not in known:
        known["RegistrationNumber"] = known["ChamberOfCommerce"]
    return known
