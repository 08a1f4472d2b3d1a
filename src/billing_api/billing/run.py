"""The monthly billing run of one partner in one environment, in one transaction.

It claims the period (a ``billing_runs`` row that exists once, so a second run of the same
period changes nothing), walks the partner's customers in chunks, prices every subscription
resource (``charges.period_charges``), writes purchase and customer lines in bulk with Core
statements, and stores each invoice's totals. Memory stays bounded by the chunk size, not by
the number of subscriptions. The caller's session owns the transaction: nothing here commits;
open it with ``db.transaction(factory, writer=True)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, or_, select, update
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.charges import Change, Charge, Pricing, SubscriptionState, period_charges
from billing_api.billing.countries import country_name, language_name
from billing_api.billing.models import BillingRun, Invoice, InvoiceSequence, PriceLine, TaxZone
from billing_api.billing.rating import ZERO, extended_price, parse_period, vat_amount
from billing_api.billing.rowhash import line_uid, row_hash
from billing_api.billing.vat import Sale, zone_code_for
from billing_api.catalog.models import (
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)
from billing_api.customers.models import (
    Customer,
    Subscription,
    SubscriptionChange,
    SubscriptionResource,
    UsageRecord,
)
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput, NotFound

CUSTOMER_CHUNK = 500
Progress = Callable[[int, int], None]


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


@dataclass(slots=True)
class _InvoiceDraft:
    key: tuple[Any, ...]
    values: dict[str, Any]
    id: int | None = None
    total_excluding_vat: Decimal = ZERO
    total_vat: Decimal = ZERO


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
    plans: dict[int, ServicePlan]
    plan_periods: dict[int, PlanPeriod]
    rates: dict[int, ResourceRate]
    rate_periods: dict[int, RatePeriod]
    resources: dict[int, Resource]
    vendors: dict[int, Vendor]
    zones: dict[str, tuple[int, Decimal]]
    invoices: dict[tuple[Any, ...], _InvoiceDraft] = field(default_factory=dict)
    next_numbers: dict[int, int] = field(default_factory=dict)


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
    summary.invoices = len(ctx.invoices)
    summary.total_excluding_vat = sum((d.total_excluding_vat for d in ctx.invoices.values()), ZERO)
    summary.total_vat = sum((d.total_vat for d in ctx.invoices.values()), ZERO)
    session.execute(
        update(BillingRun)
        .where(BillingRun.id == run_id)
        .values(invoice_count=summary.invoices, line_count=summary.lines)
    )
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
        plans={p.id: p for p in session.scalars(select(ServicePlan))},
        plan_periods={p.id: p for p in session.scalars(select(PlanPeriod))},
        rates={r.id: r for r in session.scalars(select(ResourceRate))},
        rate_periods={r.id: r for r in session.scalars(select(RatePeriod))},
        resources={r.id: r for r in session.scalars(select(Resource))},
        vendors={v.id: v for v in session.scalars(select(Vendor))},
        zones=zones,
    )


def _bill_customers(session: Session, ctx: _Context, customer_ids: Iterable[int]) -> int:
    """Price and write every line of a chunk of customers; returns the number of lines."""
    ids = list(customer_ids)
    customers = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    subs = session.scalars(
        select(Subscription)
        .where(
            Subscription.customer_id.in_(ids),
            Subscription.start_date <= ctx.period_last,
            or_(
                Subscription.cancelled_on.is_(None),
                Subscription.cancelled_on >= ctx.period_first,
                Subscription.cancellation_billed_run_id.is_(None),
            ),
        )
        .order_by(Subscription.customer_id, Subscription.id)
    ).all()
    if not subs:
        return 0
    sub_ids = [s.id for s in subs]
    resources = defaultdict(list)
    for sr in session.scalars(
        select(SubscriptionResource)
        .where(SubscriptionResource.subscription_id.in_(sub_ids))
        .order_by(SubscriptionResource.id)
    ):
        resources[sr.subscription_id].append(sr)
    changes: dict[tuple[int, int], list[SubscriptionChange]] = defaultdict(list)
    for ch in session.scalars(
        select(SubscriptionChange)
        .where(SubscriptionChange.subscription_id.in_(sub_ids))
        .order_by(SubscriptionChange.effective_date, SubscriptionChange.id)
    ):
        changes[(ch.subscription_id, ch.resource_rate_id)].append(ch)
    usage = {
        (u.subscription_id, u.resource_rate_id): u.quantity
        for u in session.scalars(
            select(UsageRecord).where(
                UsageRecord.subscription_id.in_(sub_ids), UsageRecord.period == ctx.period
            )
        )
    }

    lines: list[dict[str, Any]] = []
    billed_change_ids: list[int] = []
    billed_cancellations: list[int] = []
    for sub in subs:
        customer = customers[sub.customer_id]
        plan = ctx.plans[sub.plan_id]
        plan_period = ctx.plan_periods[sub.plan_period_id]
        if (
            sub.cancelled_on is not None
            and sub.cancellation_billed_run_id is None
            and sub.cancelled_on <= ctx.period_last
        ):
            billed_cancellations.append(sub.id)
        for sr in resources[sub.id]:
            all_changes = changes[(sub.id, sr.resource_rate_id)]
            unbilled = [
                c
                for c in all_changes
                if c.billed_run_id is None and c.effective_date <= ctx.period_last
            ]
            billed_change_ids.extend(c.id for c in unbilled)
            pricing = _pricing(ctx, sr, plan_period)
            state = SubscriptionState(
                start_date=sub.start_date,
                expiration_date=sub.expiration_date,
                cancelled_on=sub.cancelled_on,
                cancellation_unbilled=sub.cancellation_billed_run_id is None,
                current_amount=sr.amount,
                changes=[_change(c) for c in all_changes],
            )
            for charge in period_charges(
                state,
                pricing,
                [_change(c) for c in unbilled],
                usage.get((sub.id, sr.resource_rate_id)),
                ctx.period_first,
                ctx.period_last,
            ):
                lines.extend(_lines_for(ctx, customer, sub, plan, sr, pricing, charge))

    _insert_new_invoices(session, ctx)
    for line in lines:
        line["invoice_id"] = ctx.invoices[line.pop("_invoice_key")].id
    if lines:
        session.execute(insert(PriceLine), lines)
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
    return len(lines)


def _change(c: SubscriptionChange) -> Change:
    return Change(c.id, c.effective_date, c.old_amount, c.new_amount)


def _pricing(ctx: _Context, sr: SubscriptionResource, plan_period: PlanPeriod) -> Pricing:
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
    customer: Customer,
    sub: Subscription,
    plan: ServicePlan,
    sr: SubscriptionResource,
    pricing: Pricing,
    charge: Charge,
) -> list[dict[str, Any]]:
    """The purchase line and (unless the customer is the partner itself) the customer line."""
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
    resource = ctx.resources[ctx.rates[pricing.resource_rate_id].resource_id]
    common = {
        "partner_id": ctx.partner.id,
        "environment": ctx.environment,
        "invoice_date": ctx.invoice_date,
        "customer_id": customer.id,
        "subscription_id": sub.id,
        "resource_rate_id": pricing.resource_rate_id,
        "rate_period_id": pricing.rate_period_id,
        "description": f"{resource.name} - {plan.name} ({charge.charge_type})",
        "sku": charge.sku,
        "quantity": charge.quantity,
        "quantity_type": resource.measure_unit,
        "start_date": charge.start,
        "end_date": charge.end,
        "duration": charge.duration,
        "duration_type": charge.duration_type,
        "consumer_company_name": customer.company_name,
        "consumer_company_number": customer.customer_number,
        "charge_type": charge.charge_type,
        "billing_frequency": charge.billing_frequency,
        "sub_po_number": sub.po_number,
        "row_hash": identity,
    }
    result = []
    if charge.cost != ZERO:
        sale = Sale(
            ctx.distributor.country_code,
            ctx.partner.country_code,
            ctx.partner.vat_number,
            plan.is_telecom,
            buyer_resells=not customer.is_partner_itself,
        )
        result.append(
            _priced(
                ctx,
                common,
                "purchase",
                ("purchase", plan.vendor_id),
                charge.cost,
                ZERO,
                charge,
                sale,
                customer,
            )
        )
    if charge.price != ZERO and not customer.is_partner_itself:
        sale = Sale(
            ctx.partner.country_code,
            customer.country_code,
            customer.vat_number,
            plan.is_telecom,
            buyer_resells=False,
        )
        discount = charge.quantity * charge.discount_per_unit
        result.append(
            _priced(
                ctx,
                common,
                "customer",
                ("customer", customer.id, plan.vendor_id),
                charge.price,
                discount,
                charge,
                sale,
                customer,
            )
        )
    return result


def _priced(
    ctx: _Context,
    common: dict[str, Any],
    kind: str,
    invoice_key: tuple[Any, ...],
    unit_price: Decimal,
    discount: Decimal,
    charge: Charge,
    sale: Sale,
    customer: Customer,
) -> dict[str, Any]:
    zone_code = zone_code_for(sale)
    try:
        zone_id, percentage = ctx.zones[zone_code]
    except KeyError:
        raise InvalidInput(
            f"no tax zone for {zone_code!r}: add it to tax_zones before billing",
            field="tax_zone",
        ) from None
    extended = extended_price(charge.quantity, unit_price, discount, charge.duration)
    vat = vat_amount(extended, percentage)
    draft = ctx.invoices.get(invoice_key) or _new_invoice(ctx, invoice_key, kind, customer)
    draft.total_excluding_vat += extended
    draft.total_vat += vat
    return {
        **common,
        "kind": kind,
        "uid": line_uid(kind, common["row_hash"]),
        "unit_price": unit_price,
        "discount": discount,
        "extended_price": extended,
        "vat": vat,
        "tax_zone_id": zone_id,
        "tax_percentage": percentage,
        "_invoice_key": invoice_key,
    }


def _new_invoice(
    ctx: _Context, key: tuple[Any, ...], kind: str, customer: Customer
) -> _InvoiceDraft:
    vendor_id = key[-1]
    if kind == "purchase":
        sender = ctx.distributor
        receiver = _company_receiver(ctx.partner)
        language = ctx.partner.language_code
        customer_id = None
    else:
        sender = ctx.partner
        receiver = _customer_receiver(customer)
        language = customer.language_code
        customer_id = customer.id
    number = ctx.next_numbers.get(sender.id)
    if number is None:
        number = _last_invoice_number(ctx, sender.id)
    number += 1
    ctx.next_numbers[sender.id] = number
    sandbox = "-SBX" if ctx.environment == Environment.SANDBOX else ""
    month = ctx.period_first.strftime("%B %Y")
    values = {
        "partner_id": ctx.partner.id,
        "environment": ctx.environment,
        "kind": kind,
        "billing_run_id": ctx.run_id,
        "vendor_id": vendor_id,
        "sender_company_id": sender.id,
        "customer_id": customer_id,
        "invoice_number": f"{sender.invoice_prefix}{sandbox}-{number:07d}",
        "invoice_date": ctx.invoice_date,
        "due_date": ctx.invoice_date + dt.timedelta(days=sender.terms_of_payment_days),
        "description": f"{ctx.vendors[vendor_id].name} services {month}",
        "currency": sender.currency,
        "terms_of_payment_days": sender.terms_of_payment_days,
        "type": "invoice",
        "language_code": language,
        "sender": _sender(sender),
        "receiver": receiver,
    }
    draft = _InvoiceDraft(key, values)
    ctx.invoices[key] = draft
    return draft


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
    pending = [d for d in ctx.invoices.values() if d.id is None]
    if not pending:
        return
    ids = session.scalars(
        insert(Invoice).returning(Invoice.id, sort_by_parameter_order=True),
        [d.values for d in pending],
    ).all()
    for draft, invoice_id in zip(pending, ids, strict=True):
        draft.id = invoice_id


def _store_totals(session: Session, ctx: _Context) -> None:
    rows = [
        {
            "b_id": d.id,
            "b_excl": d.total_excluding_vat,
            "b_vat": d.total_vat,
            "b_incl": d.total_excluding_vat + d.total_vat,
            "b_type": "credit" if d.total_excluding_vat + d.total_vat < ZERO else "invoice",
        }
        for d in ctx.invoices.values()
    ]
    if not rows:
        return
    table = cast(Table, Invoice.__table__)
    session.connection().execute(
        update(table)
        .where(table.c.id == bindparam("b_id"))
        .values(
            total_excluding_vat=bindparam("b_excl", type_=table.c.total_excluding_vat.type),
            total_vat=bindparam("b_vat", type_=table.c.total_vat.type),
            total_including_vat=bindparam("b_incl", type_=table.c.total_including_vat.type),
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
    }


def _customer_receiver(customer: Customer) -> dict[str, Any]:
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
    }
