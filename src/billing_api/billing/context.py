"""What a billing run reads once and carries through its chunks (``RunContext``), and the
conversions of amounts and dates to the form the driver takes, remembered for the run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.charges import Pricing
from billing_api.billing.chunk import columns, table
from billing_api.billing.models import TaxZone
from billing_api.catalog.models import (
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)
from billing_api.db import MAX_UNITS, SCALE, to_units
from billing_api.errors import NotFound

_UNITS_CONTEXT = Context(prec=60)  # exact for every value a BIGINT of units can hold


class Plan(NamedTuple):
    id: int
    name: str
    vendor_id: int
    is_telecom: bool


@dataclass(slots=True)
class InvoiceDraft:
    key: tuple[Any, ...]
    fields: tuple[Any, ...]  # INVOICE_COLUMNS from partner_id to receiver
    id: int | None = None
    excluding_vat: int = 0  # totals in units (db.to_units)
    vat: int = 0

    @property
    def is_customer_invoice(self) -> bool:
        return bool(self.key[0] == "customer")


@dataclass(frozen=True, slots=True)
class SenderFacts:
    """What every invoice of one sender in one run shares."""

    number_prefix: str
    due_date: dt.date | str  # as the driver takes it (driver_date)
    currency: str
    terms_of_payment_days: int
    json: str  # the sender snapshot, as SQLAlchemy's JSON type would write it (json.dumps)


@dataclass(slots=True)
class RunContext:
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
    plans: dict[int, Plan]
    plan_periods: dict[int, PlanPeriod]
    rates: dict[int, ResourceRate]
    rate_periods: dict[int, RatePeriod]
    resources: dict[int, Resource]
    vendors: dict[int, Vendor]
    zones: dict[str, tuple[int, Decimal]]
    measure_units: dict[int, str]  # per resource rate
    invoices: dict[tuple[Any, ...], InvoiceDraft] = field(default_factory=dict)
    next_numbers: dict[int, int] = field(default_factory=dict)
    # Customer invoices written and forgotten (see the module docstring): count and totals.
    done_invoices: int = 0
    done_excluding_vat: int = 0
    done_vat: int = 0
    on_postgresql: bool = False
    # Computed once per run and looked up per line (see lines_for): the per-line work was
    # mostly re-deriving these from ORM attributes.
    senders: dict[int, SenderFacts] = field(default_factory=dict)
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


def load_context(
    session: Session,
    partner_id: int,
    environment: str,
    period: str,
    period_first: dt.date,
    period_last: dt.date,
    invoice_date: dt.date,
    run_id: int,
) -> RunContext:
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
    return RunContext(
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
            p.id: p for p in map(Plan._make, session.execute(select(*columns(plan_table, Plan))))
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


def exact_units(value: Decimal) -> int:
    """``db.to_units`` for the exact decimals a run computes, without its per-call context;
    anything else goes to ``to_units`` itself (which refuses it the same way)."""
    if type(value) is Decimal and value.is_finite():
        scaled = value.scaleb(SCALE, _UNITS_CONTEXT)
        units = int(scaled)
        if units == scaled and -MAX_UNITS <= units <= MAX_UNITS:
            return units
    return to_units(value)


def as_cents(units: int) -> Decimal:
    """A sum of lines' amounts (whole cents, in units) as a Decimal of cents, as ``12.30``
    rather than ``12.3000``: the form the summary has always had (it is printed)."""
    return Decimal(units // 100).scaleb(-2)


def catalog_units(ctx: RunContext, value: Decimal) -> int:
    """``exact_units`` of a price or duration: one of few values, so remembered for the run."""
    units = ctx.units.get(value)
    if units is None:
        units = ctx.units[value] = exact_units(value)
    return units


def driver_date(ctx: RunContext, day: dt.date) -> dt.date | str:
    """A date as the driver takes it: psycopg adapts ``date``; SQLite stores ISO text."""
    return day if ctx.on_postgresql else day.isoformat()


def remembered_driver_date(ctx: RunContext, day: dt.date) -> dt.date | str:
    """``driver_date``, remembered for the run (lines repeat a few dozen distinct days)."""
    value = ctx.dates[day] = driver_date(ctx, day)
    return value
