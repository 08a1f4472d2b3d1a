"""The monthly billing run of one partner in one environment, in one transaction.

It claims the period (a ``billing_runs`` row that exists once, so a second run of the same
period changes nothing), walks the partner's customers in chunks, prices every subscription
resource (``charges.period_charges``), writes purchase and customer lines in bulk, and stores
each invoice's totals. The caller's session owns the transaction: nothing here commits; open
it with ``db.transaction(factory, writer=True)``.

Memory stays bounded by the chunk size, not by the number of subscriptions: a customer's
invoices are complete when its chunk is done, so they are written with their totals then and
forgotten; only the purchase invoices (one per vendor) live for the whole run.

Cost per line is what a run of a million lines is made of (profiled, see docs/performance.md):
chunks are read as named tuples rather than ORM entities (``chunk``), money is worked out in
integer units rather than Decimals (``rating.extended_units``; exact all the same), each line
is built once as a list in ``LINE_COLUMNS`` order with values already in the driver's form
(integer units, dates), and lines go to the driver's own bulk path (``COPY`` on PostgreSQL,
``executemany`` on SQLite) instead of SQLAlchemy's per-row parameter processing, which took
half of a run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.charges import Change, Charge, Pricing, SubscriptionState, period_charges
from billing_api.billing.chunk import (
    CustomerRow,
    ResourceRow,
    SubscriptionRow,
    columns,
    read_chunk,
    table,
)
from billing_api.billing.countries import country_name, language_name
from billing_api.billing.models import BillingRun, Invoice, InvoiceSequence, TaxZone
from billing_api.billing.positions import assign_sync_position
from billing_api.billing.rating import ZERO, extended_units, parse_period, vat_units
from billing_api.billing.rowhash import line_uid, row_hash
from billing_api.billing.vat import Sale, ignored_vat_number, zone_code_for
from billing_api.catalog.models import (
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)
from billing_api.customers.models import Customer, Subscription, SubscriptionChange
from billing_api.db import MAX_UNITS, SCALE, SCALE_FACTOR, from_units, to_units
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput, NotFound
from billing_api.webhooks import outbox as webhook_outbox

CUSTOMER_CHUNK = 500
Progress = Callable[[int, int], None]

# A price line's columns in the order the run builds them: ``invoice_id`` (set once the
# chunk's new invoices have their ids), what differs between a charge's purchase and customer
# line, then what they share (one tuple per charge, see _lines_for).
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
# An invoice's columns as the run writes them: its id, what _new_invoice knows (its
# ``fields``), then its type and totals (see _insert_new_invoices).
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
_UNITS_CONTEXT = Context(prec=60)  # exact for every value a BIGINT of units can hold


@dataclass(slots=True)
class RunSummary:
    partner_id: int
    environment: str
    period: str
    already_billed: bool = False
    run_id: int | None = None
    invoices: int = 0
    lines: int = 0
    total_excluding_vat: Decimal = ZERO
    total_vat: Decimal = ZERO
    # Distinct buyers' VAT numbers that fail the check and so were billed as no number.
    ignored_vat_numbers: int = 0
    # The run's place in its partner's sync order (billing/positions.py).
    sync_position: int | None = None


class _Plan(NamedTuple):
    id: int
    name: str
    vendor_id: int
    is_telecom: bool


@dataclass(slots=True)
class _InvoiceDraft:
    key: tuple[Any, ...]
    fields: tuple[Any, ...]  # INVOICE_COLUMNS from partner_id to receiver
    id: int | None = None
    excluding_vat: int = 0  # totals in units (db.to_units)
    vat: int = 0

    @property
    def is_customer_invoice(self) -> bool:
        return bool(self.key[0] == "customer")


@dataclass(slots=True)
class _Context:
    """Everything a run reads once: the parties, the catalog, the tax zones."""

    session: Session
    environment: str
    period: str
    period_first: dt.date
    period_last: dt.date
    invoice_date: dt.date
    run_id: int
    distributor: Company
    partner: Company
    plans: dict[int, _Plan]
    plan_periods: dict[int, PlanPeriod]
    rates: dict[int, ResourceRate]
    rate_periods: dict[int, RatePeriod]
    resources: dict[int, Resource]
    vendors: dict[int, Vendor]
    zones: dict[str, tuple[int, Decimal]]
    measure_units: dict[int, str]  # per resource rate
    invoices: dict[tuple[Any, ...], _InvoiceDraft] = field(default_factory=dict)
    next_numbers: dict[int, int] = field(default_factory=dict)
    # Customer invoices written and forgotten (see the module docstring): count and totals.
    done_invoices: int = 0
    done_excluding_vat: int = 0
    done_vat: int = 0
    on_postgresql: bool = False
    # Computed once per run and looked up per line (see _lines_for): the per-line work was
    # mostly re-deriving these from ORM attributes.
    senders: dict[int, _SenderFacts] = field(default_factory=dict)
    receiver_json: dict[int, str] = field(default_factory=dict)  # per customer; 0: partner
    vendor_descriptions: dict[int, str] = field(default_factory=dict)
    pricings: dict[tuple[Any, ...], Pricing] = field(default_factory=dict)
    descriptions: dict[tuple[int, int, str], str] = field(default_factory=dict)
    tax: dict[tuple[Any, ...], tuple[int, int]] = field(default_factory=dict)
    ignored_vat_numbers: set[tuple[str, str]] = field(default_factory=set)
    partner_id: int = 0
    partner_country: str = ""
    partner_vat_number: str = ""
    distributor_country: str = ""
    invoice_date_value: dt.date | str = ""
    # Catalog amounts and durations in units, and dates in the driver's form: few distinct
    # values, each converted once per run.
    units: dict[Decimal, int] = field(default_factory=dict)
    dates: dict[dt.date, dt.date | str] = field(default_factory=dict)


def bill_partner(
    session: Session,
    partner_id: int,
    environment: Environment | str,
    period: str,
    invoice_date: dt.date,
    progress: Progress | None = None,
) -> RunSummary:
    """Bill one partner's period in one environment.

    Returns the run's summary (``already_billed`` when the period was billed before, in which
    case nothing changed). Raises ``InvalidInput`` for a malformed period or missing tax zone,
    ``NotFound`` for an unknown partner, ``Conflict`` when another run of the same period holds it.
    """
    environment = Environment(environment).value
    period_first, period_last = _parse_period(period)
    summary = RunSummary(partner_id, environment, period)
    run_id = _claim_period(session, partner_id, environment, period, invoice_date)
    if run_id is None:
        summary.already_billed = True
        return summary
    summary.run_id = run_id
    ctx = _load_context(
        session, partner_id, environment, period, period_first, period_last, invoice_date, run_id
    )
    ctx.invoice_date_value = _date(ctx, invoice_date)

    customer_ids = session.scalars(
        select(Customer.id)
        .where(Customer.partner_id == partner_id, Customer.environment == environment)
        .order_by(Customer.id)
    ).all()
    for done in range(0, len(customer_ids), CUSTOMER_CHUNK):
        chunk = customer_ids[done : done + CUSTOMER_CHUNK]
        summary.lines += _bill_customers(session, ctx, chunk)
        if progress is not None:
            progress(min(done + CUSTOMER_CHUNK, len(customer_ids)), len(customer_ids))

    _store_totals(session, ctx)
    _store_sequences(session, ctx)
    summary.invoices = ctx.done_invoices + len(ctx.invoices)
    if summary.invoices:
        summary.total_excluding_vat = _cents(
            sum((d.excluding_vat for d in ctx.invoices.values()), ctx.done_excluding_vat)
        )
        summary.total_vat = _cents(sum((d.vat for d in ctx.invoices.values()), ctx.done_vat))
    summary.ignored_vat_numbers = len(ctx.ignored_vat_numbers)
    session.execute(
        update(BillingRun)
        .where(BillingRun.id == run_id)
        .values(invoice_count=summary.invoices, line_count=summary.lines)
    )
    # Last: the position's lock is held until the caller commits the run.
    summary.sync_position = assign_sync_position(session, run_id, partner_id, environment)
    webhook_outbox.invoices_created(session, run_id, summary.sync_position)  # same transaction
    return summary


def _parse_period(period: str) -> tuple[dt.date, dt.date]:
    try:
        return parse_period(period)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="period") from None


def _claim_period(
    session: Session, partner_id: int, environment: str, period: str, invoice_date: dt.date
) -> int | None:
    """Insert the run's row, or return None when the period is billed already."""
    if session.get_bind().dialect.name == "postgresql":
        # Refuse at once rather than queue behind a run of the same period.
        key = int.from_bytes(
            hashlib.sha256(f"bill:{partner_id}:{environment}:{period}".encode()).digest()[:8],
            "big",
            signed=True,
        )
        if not session.scalar(select(func.pg_try_advisory_xact_lock(key))):
            raise Conflict(
                f"a billing run for partner {partner_id}, {environment}, {period} is running now; "
                "wait for it to finish",
                code="run_in_progress",
            )
    existing = session.scalar(
        select(BillingRun.id).where(
            BillingRun.partner_id == partner_id,
            BillingRun.environment == environment,
            BillingRun.period == period,
        )
    )
    if existing is not None:
        return None
    run = BillingRun(
        partner_id=partner_id, environment=environment, period=period, invoice_date=invoice_date
    )
    session.add(run)
    session.flush()
    return run.id


def _load_context(
    session: Session,
    partner_id: int,
    environment: str,
    period: str,
    period_first: dt.date,
    period_last: dt.date,
    invoice_date: dt.date,
    run_id: int,
) -> _Context:
    partner = session.get(Company, partner_id)
    if partner is None or partner.kind != "partner":
        raise NotFound(f"no partner company with id {partner_id}")
    distributor = session.scalar(select(Company).where(Company.kind == "distributor"))
    if distributor is None:
        raise NotFound(
            "no distributor company exists yet: create it first (billing-api demo "
            "or billing-api import)"
        )
    # The catalog is small (plans, not subscriptions): read it whole, once.
    zones = {z.code: (z.id, z.vat_percentage) for z in session.scalars(select(TaxZone))}
    for zone in session.scalars(select(TaxZone).where(TaxZone.country_code.is_not(None))):
        zones.setdefault(zone.country_code or "", (zone.id, zone.vat_percentage))
    rates = {r.id: r for r in session.scalars(select(ResourceRate))}
    resources = {r.id: r for r in session.scalars(select(Resource))}
    plan_table = table(ServicePlan)
    return _Context(
        session=session,
        environment=environment,
        period=period,
        period_first=period_first,
        period_last=period_last,
        invoice_date=invoice_date,
        run_id=run_id,
        distributor=distributor,
        partner=partner,
        plans={
            p.id: p for p in map(_Plan._make, session.execute(select(*columns(plan_table, _Plan))))
        },
        plan_periods={p.id: p for p in session.scalars(select(PlanPeriod))},
        rates=rates,
        rate_periods={r.id: r for r in session.scalars(select(RatePeriod))},
        resources=resources,
        measure_units={r.id: resources[r.resource_id].measure_unit for r in rates.values()},
        vendors={v.id: v for v in session.scalars(select(Vendor))},
        zones=zones,
        on_postgresql=session.get_bind().dialect.name == "postgresql",
        partner_id=partner.id,
        partner_country=partner.country_code,
        partner_vat_number=partner.vat_number,
        distributor_country=distributor.country_code,
    )


def _bill_customers(session: Session, ctx: _Context, customer_ids: Sequence[int]) -> int:
    """Price and write every line of a chunk of customers; returns the number of lines."""
    chunk = read_chunk(
        session.connection(),
        ctx.partner_id,
        ctx.environment,
        ctx.period,
        ctx.period_first,
        ctx.period_last,
        customer_ids,
    )
    if not chunk.subscriptions:
        return 0
    lines: list[list[Any]] = []
    billed_change_ids: list[int] = []
    billed_cancellations: list[int] = []
    for sub in chunk.subscriptions:
        customer = chunk.customers[sub.customer_id]
        plan = ctx.plans[sub.plan_id]
        plan_period = ctx.plan_periods[sub.plan_period_id]
        if (
            sub.cancelled_on is not None
            and sub.cancellation_billed_run_id is None
            and sub.cancelled_on <= ctx.period_last
        ):
            billed_cancellations.append(sub.id)
        for sr in chunk.resources[sub.id]:
            all_changes: list[Change] = []
            unbilled: list[Change] = []
            for change, billed in chunk.changes.get((sub.id, sr.resource_rate_id), ()):
                all_changes.append(change)
                if not billed and change.effective_date <= ctx.period_last:
                    unbilled.append(change)
                    billed_change_ids.append(change.id)
            pricing_key = (
                sr.resource_rate_id,
                sr.rate_period_id,
                sr.sales_price,
                sr.sales_discount,
                plan_period.id,
            )
            pricing = ctx.pricings.get(pricing_key) or _remember_pricing(
                ctx, pricing_key, sr, plan_period
            )
            state = SubscriptionState(
                start_date=sub.start_date,
                expiration_date=sub.expiration_date,
                cancelled_on=sub.cancelled_on,
                cancellation_unbilled=sub.cancellation_billed_run_id is None,
                current_amount=sr.amount,
                changes=all_changes,
            )
            for charge in period_charges(
                state,
                pricing,
                unbilled,
                chunk.usage.get((sub.id, sr.resource_rate_id)),
                ctx.period_first,
                ctx.period_last,
            ):
                _lines_for(ctx, customer, sub, plan, pricing, charge, lines)

    _insert_new_invoices(session, ctx)
    for line in lines:
        line[0] = line[0].id
    if lines:
        _write_lines(session, ctx, lines)
    if billed_change_ids:
        session.execute(
            update(SubscriptionChange)
            .where(SubscriptionChange.id.in_(billed_change_ids))
            .values(billed_run_id=ctx.run_id)
        )
    if billed_cancellations:
        session.execute(
            update(Subscription)
            .where(Subscription.id.in_(billed_cancellations))
            .values(cancellation_billed_run_id=ctx.run_id)
        )
    _forget_customer_invoices(ctx)
    # Keyed by customers' VAT numbers among others: kept for a chunk only, so that a run's
    # memory does not grow with its number of customers.
    ctx.tax.clear()
    return len(lines)


def _units(value: Decimal) -> int:
    """``db.to_units`` for the exact decimals a run computes, without its per-call context;
    anything else goes to ``to_units`` itself (which refuses it the same way)."""
    if type(value) is Decimal and value.is_finite():
        scaled = value.scaleb(SCALE, _UNITS_CONTEXT)
        units = int(scaled)
        if units == scaled and -MAX_UNITS <= units <= MAX_UNITS:
            return units
    return to_units(value)


def _cents(units: int) -> Decimal:
    """A sum of lines' amounts (whole cents, in units) as a Decimal of cents, as ``12.30``
    rather than ``12.3000``: the form the summary has always had (it is printed)."""
    return Decimal(units // 100).scaleb(-2)


def _catalog_units(ctx: _Context, value: Decimal) -> int:
    """``_units`` of a price or duration: one of few values, so remembered for the run."""
    units = ctx.units.get(value)
    if units is None:
        units = ctx.units[value] = _units(value)
    return units


def _date(ctx: _Context, day: dt.date) -> dt.date | str:
    """A date as the driver takes it: psycopg adapts ``date``; SQLite stores ISO text."""
    return day if ctx.on_postgresql else day.isoformat()


def _driver_date(ctx: _Context, day: dt.date) -> dt.date | str:
    """``_date``, remembered for the run (lines repeat a few dozen distinct days)."""
    value = ctx.dates[day] = _date(ctx, day)
    return value


def _write_lines(session: Session, ctx: _Context, rows: list[list[Any]]) -> None:
    """Insert the chunk's lines with the driver's bulk path."""
    _bulk_insert(session, ctx, COPY_LINES, INSERT_LINES, rows)


def _bulk_insert(
    session: Session, ctx: _Context, copy_sql: str, insert_sql: str, rows: Sequence[Sequence[Any]]
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


def _new_invoice_ids(session: Session, ctx: _Context, count: int) -> list[int]:
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


def _forget_customer_invoices(ctx: _Context) -> None:
    """Drop the chunk's customer invoices, written with their totals, keeping their sums."""
    for key, draft in list(ctx.invoices.items()):
        if draft.is_customer_invoice:
            ctx.done_invoices += 1
            ctx.done_excluding_vat += draft.excluding_vat
            ctx.done_vat += draft.vat
            del ctx.invoices[key]
            ctx.receiver_json.pop(draft.key[1], None)


def _remember_pricing(
    ctx: _Context, key: tuple[Any, ...], sr: ResourceRow, plan_period: PlanPeriod
) -> Pricing:
    """``_pricing`` depends only on ``key``'s values: one immutable ``Pricing`` per run."""
    pricing = ctx.pricings[key] = _pricing(ctx, sr, plan_period)
    return pricing


def _pricing(ctx: _Context, sr: ResourceRow, plan_period: PlanPeriod) -> Pricing:
    rate = ctx.rates[sr.resource_rate_id]
    rate_period = ctx.rate_periods.get(sr.rate_period_id) if sr.rate_period_id else None
    if rate_period is not None:
        cycle_months = rate_period.billing_period * (
            12 if rate_period.billing_period_type == "year" else 1
        )
        recurring_cost, default_price = rate_period.recurring_cost, rate_period.recurring_price
        recurring_sku = rate_period.sku or rate.recurring_sku
    else:
        cycle_months = plan_period.cycle_months
        recurring_cost, default_price = rate.recurring_cost, rate.recurring_price
        recurring_sku = rate.recurring_sku
    return Pricing(
        resource_rate_id=rate.id,
        rate_period_id=rate_period.id if rate_period else None,
        cycle_months=cycle_months,
        included=rate.included_value,
        recurring_cost=recurring_cost,
        recurring_price=default_price if sr.sales_price is None else sr.sales_price,
        sales_discount=sr.sales_discount,
        overuse_cost=rate.overuse_cost,
        overuse_price=rate.overuse_price,
        setup_cost=rate.setup_cost,
        setup_price=rate.setup_price,
        cancellation_cost=rate.cancellation_cost,
        cancellation_price=rate.cancellation_price,
        recurring_sku=recurring_sku,
        overuse_sku=rate.overuse_sku,
        setup_sku=rate.setup_sku,
        cancellation_sku=rate.cancellation_sku,
    )


def _lines_for(
    ctx: _Context,
    customer: CustomerRow,
    sub: SubscriptionRow,
    plan: _Plan,
    pricing: Pricing,
    charge: Charge,
    out: list[list[Any]],
) -> None:
    """The purchase line and (unless the customer is the partner itself) the customer line,
    appended to ``out``, each with the draft of its invoice in place of ``invoice_id``."""
    identity = row_hash(
        environment=ctx.environment,
        subscription_id=sub.id,
        resource_rate_id=pricing.resource_rate_id,
        charge_type=charge.charge_type,
        start=charge.start,
        end=charge.end,
        rate_period_id=pricing.rate_period_id,
        source=charge.source,
    )
    described = (pricing.resource_rate_id, plan.id, charge.charge_type)
    description = ctx.descriptions.get(described) or _describe(ctx, described, plan)
    quantity = _units(charge.quantity)
    duration = _catalog_units(ctx, charge.duration)
    # Everything both lines share, in LINE_COLUMNS order.
    shared = (
        ctx.partner_id,
        ctx.environment,
        ctx.invoice_date_value,
        customer.id,
        sub.id,
        pricing.resource_rate_id,
        pricing.rate_period_id,
        description,
        charge.sku,
        quantity,
        ctx.measure_units[pricing.resource_rate_id],
        ctx.dates.get(charge.start) or _driver_date(ctx, charge.start),
        ctx.dates.get(charge.end) or _driver_date(ctx, charge.end),
        duration,
        charge.duration_type,
        customer.company_name,
        customer.customer_number,
        charge.charge_type,
        charge.billing_frequency,
        sub.po_number,
        identity,
    )
    own_use = customer.is_partner_itself
    if charge.cost != ZERO:
        tax = _tax(
            ctx,
            ctx.distributor_country,
            ctx.partner_country,
            ctx.partner_vat_number,
            plan.is_telecom,
            not own_use,
        )
        bill: tuple[Any, ...] = ("purchase", plan.vendor_id)
        draft = ctx.invoices.get(bill) or _new_invoice(ctx, bill, "purchase", customer)
        unit_price = _catalog_units(ctx, charge.cost)
        out.append(_priced(draft, "purchase", unit_price, 0, quantity, duration, tax, shared))
    if charge.price != ZERO and not own_use:
        tax = _tax(
            ctx,
            ctx.partner_country,
            customer.country_code,
            customer.vat_number,
            plan.is_telecom,
            False,
        )
        bill = ("customer", customer.id, plan.vendor_id)
        draft = ctx.invoices.get(bill) or _new_invoice(ctx, bill, "customer", customer)
        unit_price = _catalog_units(ctx, charge.price)
        discount = quantity * _catalog_units(ctx, charge.discount_per_unit)
        out.append(
            _priced(draft, "customer", unit_price, discount, quantity, duration, tax, shared)
        )


def _priced(
    draft: _InvoiceDraft,
    kind: str,
    unit_price: int,
    discount: int,
    quantity: int,
    duration: int,
    tax: tuple[int, int],
    shared: tuple[Any, ...],
) -> list[Any]:
    """One line, in units: ``discount`` is in 1/10^8 (quantity × per-unit discount)."""
    zone_id, percentage = tax
    extended = extended_units(quantity, unit_price, discount, duration)
    vat = vat_units(extended, percentage)
    draft.excluding_vat += extended
    draft.vat += vat
    discount_units, inexact = divmod(discount, SCALE_FACTOR)
    if inexact:  # more than 4 decimal places: let to_units refuse it as the column would
        to_units(Decimal(discount).scaleb(-2 * SCALE))
    return [
        draft,
        kind,
        line_uid(kind, shared[-1]),
        unit_price,
        discount_units,
        extended,
        vat,
        zone_id,
        percentage,
        *shared,
    ]


def _describe(ctx: _Context, key: tuple[int, int, str], plan: _Plan) -> str:
    resource = ctx.resources[ctx.rates[key[0]].resource_id]
    text = ctx.descriptions[key] = f"{resource.name} - {plan.name} ({key[2]})"
    return text


def _tax(
    ctx: _Context, seller: str, buyer: str, vat_number: str, telecom: bool, resells: bool
) -> tuple[int, int]:
    """(tax zone id, its percentage in units) of a sale: ``zone_code_for`` is a pure function
    of these values, so each combination is worked out once per run."""
    key = (seller, buyer, vat_number, telecom, resells)
    found = ctx.tax.get(key)
    if found is None:
        sale = Sale(seller, buyer, vat_number, telecom, buyer_resells=resells)
        zone_code = zone_code_for(sale)
        if ignored_vat_number(sale):
            ctx.ignored_vat_numbers.add((buyer, vat_number))
        try:
            zone_id, percentage = ctx.zones[zone_code]
        except KeyError:
            raise InvalidInput(
                f"no tax zone for {zone_code!r}: add it to tax_zones before billing",
                field="tax_zone",
            ) from None
        found = ctx.tax[key] = (zone_id, _units(percentage))
    return found


def _new_invoice(
    ctx: _Context, key: tuple[Any, ...], kind: str, customer: CustomerRow
) -> _InvoiceDraft:
    vendor_id = key[-1]
    if kind == "purchase":
        sender = ctx.distributor
        receiver_json = ctx.receiver_json.get(0) or _receiver_json(ctx, 0, ctx.partner)
        language = ctx.partner.language_code
        customer_id = None
    else:
        sender = ctx.partner
        customer_id = customer.id
        receiver_json = ctx.receiver_json.get(customer_id) or _receiver_json(
            ctx, customer_id, customer
        )
        language = customer.language_code
    facts = ctx.senders.get(sender.id) or _sender_facts(ctx, sender)
    number = ctx.next_numbers.get(sender.id)
    if number is None:
        number = _last_invoice_number(ctx, sender.id)
    number += 1
    ctx.next_numbers[sender.id] = number
    fields = (
        ctx.partner_id,
        ctx.environment,
        kind,
        ctx.run_id,
        vendor_id,
        sender.id,
        customer_id,
        f"{facts.number_prefix}-{number:07d}",
        ctx.invoice_date_value,
        facts.due_date,
        ctx.vendor_descriptions.get(vendor_id) or _vendor_description(ctx, vendor_id),
        facts.currency,
        facts.terms_of_payment_days,
        language,
        facts.json,
        receiver_json,
    )
    draft = _InvoiceDraft(key, fields)
    ctx.invoices[key] = draft
    return draft


@dataclass(frozen=True, slots=True)
class _SenderFacts:
    """What every invoice of one sender in one run shares."""

    number_prefix: str
    due_date: dt.date | str  # as the driver takes it (_date)
    currency: str
    terms_of_payment_days: int
    json: str  # the sender snapshot, as SQLAlchemy's JSON type would write it (json.dumps)


def _sender_facts(ctx: _Context, sender: Company) -> _SenderFacts:
    sandbox = "-SBX" if ctx.environment == Environment.SANDBOX else ""
    facts = ctx.senders[sender.id] = _SenderFacts(
        number_prefix=f"{sender.invoice_prefix}{sandbox}",
        due_date=_date(ctx, ctx.invoice_date + dt.timedelta(days=sender.terms_of_payment_days)),
        currency=sender.currency,
        terms_of_payment_days=sender.terms_of_payment_days,
        json=json.dumps(_sender(sender)),
    )
    return facts


def _receiver_json(ctx: _Context, customer_id: int, receiver: Any) -> str:
    """The receiver snapshot as JSON text; ``customer_id`` 0 is the partner (purchase
    invoices). Customers' entries are dropped with their chunk's invoices."""
    snapshot = _company_receiver(receiver) if customer_id == 0 else _customer_receiver(receiver)
    text = ctx.receiver_json[customer_id] = json.dumps(snapshot)
    return text


def _vendor_description(ctx: _Context, vendor_id: int) -> str:
    month = ctx.period_first.strftime("%B %Y")
    text = ctx.vendor_descriptions[vendor_id] = f"{ctx.vendors[vendor_id].name} services {month}"
    return text


def _last_invoice_number(ctx: _Context, sender_id: int) -> int:
    session = ctx.session
    # FOR UPDATE keeps two runs from handing out the same number on PostgreSQL; SQLite's
    # single writer already serialises them.
    row = session.execute(
        select(InvoiceSequence.last_number)
        .where(
            InvoiceSequence.sender_company_id == sender_id,
            InvoiceSequence.environment == ctx.environment,
        )
        .with_for_update()
    ).first()
    if row is None:
        session.add(
            InvoiceSequence(sender_company_id=sender_id, environment=ctx.environment, last_number=0)
        )
        session.flush()
        return 0
    return int(row[0])


def _insert_new_invoices(session: Session, ctx: _Context) -> None:
    """Insert the chunk's new invoices in the order they were opened, with the ids the
    database would have given them. Customer invoices are complete by now and get their
    totals; purchase invoices get theirs at the end of the run (``_store_totals``)."""
    pending = [d for d in ctx.invoices.values() if d.id is None]
    if not pending:
        return
    rows = []
    ids = _new_invoice_ids(session, ctx, len(pending))
    for draft, invoice_id in zip(pending, ids, strict=True):
        draft.id = invoice_id
        excl, vat = draft.excluding_vat, draft.vat
        if not draft.is_customer_invoice:
            excl = vat = 0  # the column defaults, until _store_totals
        kind = "credit" if excl + vat < 0 else "invoice"
        rows.append((invoice_id, *draft.fields, kind, excl, vat, excl + vat))
    _bulk_insert(session, ctx, COPY_INVOICES, INSERT_INVOICES, rows)


def _store_totals(session: Session, ctx: _Context) -> None:
    rows = [
        {
            "b_id": d.id,
            "b_excl": from_units(d.excluding_vat),
            "b_vat": from_units(d.vat),
            "b_incl": from_units(d.excluding_vat + d.vat),
            "b_type": "credit" if d.excluding_vat + d.vat < 0 else "invoice",
        }
        for d in ctx.invoices.values()
    ]
    if not rows:
        return
    invoices = table(Invoice)
    session.connection().execute(
        update(invoices)
        .where(invoices.c.id == bindparam("b_id"))
        .values(
            total_excluding_vat=bindparam("b_excl", type_=invoices.c.total_excluding_vat.type),
            total_vat=bindparam("b_vat", type_=invoices.c.total_vat.type),
            total_including_vat=bindparam("b_incl", type_=invoices.c.total_including_vat.type),
            type=bindparam("b_type"),
        ),
        rows,
    )


def _store_sequences(session: Session, ctx: _Context) -> None:
    for sender_id, last in ctx.next_numbers.items():
        session.execute(
            update(InvoiceSequence)
            .where(
                InvoiceSequence.sender_company_id == sender_id,
                InvoiceSequence.environment == ctx.environment,
            )
            .values(last_number=last)
        )


def _sender(company: Company) -> dict[str, Any]:
    return {
        "AccountID": company.id,
        "CompanyName": company.name,
        "Address": company.address,
        "PostalCode": company.postal_code,
        "City": company.city,
        "CountryCode": company.country_code,
        "Country": country_name(company.country_code),
        "Telephone": company.telephone,
        "Fax": company.fax,
        "ChamberOfCommerce": company.chamber_of_commerce,
        "BankAccount": company.bank_account,
        "IBAN": company.iban,
        "BIC": company.bic,
        "VATNumber": company.vat_number,
        "Website": company.website,
        "Logo": company.logo,
    } | _company_peppol(company)


def _company_peppol(company: Company) -> dict[str, Any]:
    """What a Peppol e-invoice needs beyond the v4 party fields (the writers pick theirs)."""
    return {
        "EndpointID": company.endpoint_id,
        "EndpointScheme": company.endpoint_scheme,
        "RegistrationNumber": company.chamber_of_commerce,
        "RegistrationScheme": company.registration_scheme,
        "IBAN": company.iban,
        "BIC": company.bic,
    }


def _company_receiver(company: Company) -> dict[str, Any]:
    return {
        "AccountID": company.id,
        "CustomerNumber": str(company.id),
        "CompanyName": company.name,
        "VATNumber": company.vat_number,
        "ContactFirstName": company.contact_first_name,
        "ContactMiddleName": company.contact_middle_name,
        "ContactLastName": company.contact_last_name,
        "Address": company.address,
        "Zip": company.postal_code,
        "City": company.city,
        "CountryCode": company.country_code,
        "Country": country_name(company.country_code),
        "Telephone": company.telephone,
        "Fax": company.fax,
        "Email": company.email,
        "Type": "Reseller",
        "LanguageName": language_name(company.language_code),
    } | _company_peppol(company)


def _customer_receiver(customer: CustomerRow) -> dict[str, Any]:
    return {
        "AccountID": customer.id,
        "CustomerNumber": customer.customer_number,
        "CompanyName": customer.company_name,
        "VATNumber": customer.vat_number,
        "ContactFirstName": customer.contact_first_name,
        "ContactMiddleName": customer.contact_middle_name,
        "ContactLastName": customer.contact_last_name,
        "Address": customer.address,
        "Zip": customer.postal_code,
        "City": customer.city,
        "CountryCode": customer.country_code,
        "Country": country_name(customer.country_code),
        "Telephone": customer.telephone,
        "Fax": customer.fax,
        "Email": customer.email,
        "Type": "Customer",
        "LanguageName": language_name(customer.language_code),
        "EndpointID": customer.endpoint_id,
        "EndpointScheme": customer.endpoint_scheme,
        "RegistrationNumber": customer.registration_number,
        "RegistrationScheme": customer.registration_scheme,
        "IBAN": customer.iban,
        "BIC": customer.bic,
    }
