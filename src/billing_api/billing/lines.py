"""A billing run's pricing and price lines: the ``Pricing`` of a subscription resource, and
for each charge its purchase and customer line in ``bulk.LINE_COLUMNS`` order, in integer
units, with the tax zone of the sale.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing_api.billing.charges import Charge, Pricing
from billing_api.billing.chunk import CustomerRow, ResourceRow, SubscriptionRow
from billing_api.billing.context import (
    InvoiceDraft,
    Plan,
    RunContext,
    catalog_units,
    exact_units,
    remembered_driver_date,
)
from billing_api.billing.invoices import new_invoice
from billing_api.billing.rating import ZERO, extended_units, vat_units
from billing_api.billing.rowhash import line_uid, row_hash
from billing_api.billing.vat import Sale, ignored_vat_number, zone_code_for
from billing_api.catalog.models import PlanPeriod
from billing_api.db import SCALE, SCALE_FACTOR, to_units
from billing_api.errors import InvalidInput


def remember_pricing(
    ctx: RunContext, key: tuple[Any, ...], sr: ResourceRow, plan_period: PlanPeriod
) -> Pricing:
    """``_pricing`` depends only on ``key``'s values: one immutable ``Pricing`` per run."""
    pricing = ctx.pricings[key] = _pricing(ctx, sr, plan_period)
    return pricing


def _pricing(ctx: RunContext, sr: ResourceRow, plan_period: PlanPeriod) -> Pricing:
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


def lines_for(
    ctx: RunContext,
    customer: CustomerRow,
    sub: SubscriptionRow,
    plan: Plan,
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
    quantity = exact_units(charge.quantity)
    duration = catalog_units(ctx, charge.duration)
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
        ctx.dates.get(charge.start) or remembered_driver_date(ctx, charge.start),
        ctx.dates.get(charge.end) or remembered_driver_date(ctx, charge.end),
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
        draft = ctx.invoices.get(bill) or new_invoice(ctx, bill, "purchase", customer)
        unit_price = catalog_units(ctx, charge.cost)
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
        draft = ctx.invoices.get(bill) or new_invoice(ctx, bill, "customer", customer)
        unit_price = catalog_units(ctx, charge.price)
        discount = quantity * catalog_units(ctx, charge.discount_per_unit)
        out.append(
            _priced(draft, "customer", unit_price, discount, quantity, duration, tax, shared)
        )


def _priced(
    draft: InvoiceDraft,
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


def _describe(ctx: RunContext, key: tuple[int, int, str], plan: Plan) -> str:
    resource = ctx.resources[ctx.rates[key[0]].resource_id]
    text = ctx.descriptions[key] = f"{resource.name} - {plan.name} ({key[2]})"
    return text


def _tax(
    ctx: RunContext, seller: str, buyer: str, vat_number: str, telecom: bool, resells: bool
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
        found = ctx.tax[key] = (zone_id, exact_units(percentage))
    return found
