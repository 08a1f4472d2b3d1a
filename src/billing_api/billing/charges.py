"""What one subscription resource owes in one billing period: a list of charges.

A charge is priced on both sides (the partner's cost and its sales price); the run turns each
into a purchase line and a customer line that share one ``InvoiceRowHash``. Pure functions over
plain values, so the rules can be tested without a database.

Cycles are billed in advance, in the period in which they start. Amount changes and
cancellations are billed once, by the first run whose period reaches their day, as pro-rata
``Correction`` charges for every already-billed cycle they touch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

from billing_api.billing.rating import (
    ZERO,
    billing_frequency,
    cycle_containing,
    cycle_duration,
    cycle_starts_in,
)

ONE = Decimal(1)
PURCHASE_FEE = "Purchase Fee"
CYCLE_FEE = "Cycle Fee"
USAGE_FEE = "Usage Fee"
ONE_TIME_FEE = "One Time Fee"
CORRECTION = "Correction"


# Change, SubscriptionState and Charge are made several times per subscription resource in a
# run: named tuples, as immutable as frozen dataclasses and built several times faster.
class Change(NamedTuple):
    id: int
    effective_date: dt.date
    old_amount: Decimal
    new_amount: Decimal


@dataclass(frozen=True, slots=True)
class Pricing:
    """One resource rate as a subscription sees it (rate period and sales overrides applied)."""

    resource_rate_id: int
    rate_period_id: int | None
    cycle_months: int
    included: Decimal
    recurring_cost: Decimal
    recurring_price: Decimal
    sales_discount: Decimal  # per unit, on recurring sales lines
    overuse_cost: Decimal
    overuse_price: Decimal
    setup_cost: Decimal
    setup_price: Decimal
    cancellation_cost: Decimal
    cancellation_price: Decimal
    recurring_sku: str
    overuse_sku: str
    setup_sku: str
    cancellation_sku: str


class SubscriptionState(NamedTuple):
    start_date: dt.date
    expiration_date: dt.date | None
    cancelled_on: dt.date | None
    cancellation_unbilled: bool
    current_amount: Decimal
    changes: Sequence[Change]  # every change of this resource, any date, billed or not


class Charge(NamedTuple):
    charge_type: str
    start: dt.date
    end: dt.date
    quantity: Decimal
    cost: Decimal
    price: Decimal
    discount_per_unit: Decimal
    duration: Decimal
    duration_type: str
    sku: str
    billing_frequency: str
    source: str  # tells apart charges of one type on the same days (row hash input)


def amount_on(state: SubscriptionState, day: dt.date) -> Decimal:
    """The resource amount in effect on ``day``: today's amount with later changes undone."""
    amount = state.current_amount
    for change in state.changes:
        if change.effective_date > day:
            amount -= change.new_amount - change.old_amount
    return amount


def billable(amount: Decimal, included: Decimal) -> Decimal:
    """Recurring fees charge what exceeds the amount the plan includes."""
    return max(amount - included, ZERO)


def _is_active(state: SubscriptionState, day: dt.date) -> bool:
    if day < state.start_date:
        return False
    if state.cancelled_on is not None and day >= state.cancelled_on:
        return False
    return state.expiration_date is None or day <= state.expiration_date


def period_charges(
    state: SubscriptionState,
    pricing: Pricing,
    unbilled_changes: Sequence[Change],
    usage: Decimal | None,
    period_first: dt.date,
    period_last: dt.date,
) -> list[Charge]:
    """Every charge of one subscription resource in the period ``period_first``–``period_last``.

    ``unbilled_changes`` are the changes effective on or before ``period_last`` that no earlier
    run billed; ``usage`` is the period's recorded consumption, if any.
    """
    charges: list[Charge] = []
    months = pricing.cycle_months
    frequency = billing_frequency(months)

    def recurring(
        charge_type: str,
        first: dt.date,
        last: dt.date,
        since: dt.date,
        quantity: Decimal,
        source: str,
    ) -> None:
        charges.append(
            Charge(
                charge_type,
                since,
                last,
                quantity,
                pricing.recurring_cost,
                pricing.recurring_price,
                pricing.sales_discount,
                cycle_duration(months, first, last, since),
                "Month",
                pricing.recurring_sku,
                frequency,
                source,
            )
        )

    def one_time(
        day: dt.date, quantity: Decimal, cost: Decimal, price: Decimal, sku: str, source: str
    ) -> None:
        charges.append(
            Charge(
                ONE_TIME_FEE,
                day,
                day,
                quantity,
                cost,
                price,
                ZERO,
                ONE,
                "OneTime",
                sku,
                "OneTime",
                source,
            )
        )

    # Purchase and cycle fees: every cycle that starts in the period, billed in advance.
    for first in cycle_starts_in(state.start_date, months, period_first, period_last):
        if not _is_active(state, first):
            continue
        _, last = cycle_containing(state.start_date, months, first)
        charge_type = PURCHASE_FEE if first == state.start_date else CYCLE_FEE
        quantity = billable(amount_on(state, first), pricing.included)
        recurring(charge_type, first, last, first, quantity, "cycle")

    if period_first <= state.start_date <= period_last:
        one_time(
            state.start_date,
            amount_on(state, state.start_date),
            pricing.setup_cost,
            pricing.setup_price,
            pricing.setup_sku,
            "setup",
        )

    if usage is not None:
        over = max(usage - pricing.included, ZERO)
        charges.append(
            Charge(
                USAGE_FEE,
                period_first,
                period_last,
                over,
                pricing.overuse_cost,
                pricing.overuse_price,
                ZERO,
                ONE,
                "Month",
                pricing.overuse_sku,
                "Monthly",
                "usage",
            )
        )

    for change in unbilled_changes:
        day = change.effective_date
        if not _is_active(state, day):
            continue
        delta = billable(change.new_amount, pricing.included) - billable(
            change.old_amount, pricing.included
        )
        for first, last in _cycles_until(state.start_date, months, day, period_last):
            if first >= period_first and first >= day:
                continue  # this run bills that cycle at the new amount already
            recurring(CORRECTION, first, last, max(day, first), delta, f"change:{change.id}")

    cancelled = state.cancelled_on
    if (
        cancelled is not None
        and state.cancellation_unbilled
        and state.start_date < cancelled <= period_last
    ):
        last_day_in_service = cancelled - dt.timedelta(days=1)
        quantity = -billable(amount_on(state, last_day_in_service), pricing.included)
        for first, last in _cycles_until(state.start_date, months, cancelled, period_last):
            if first >= period_first and first >= cancelled:
                continue  # this run does not bill it: no longer active then
            recurring(CORRECTION, first, last, max(cancelled, first), quantity, "cancel")
        one_time(
            cancelled,
            ONE,
            pricing.cancellation_cost,
            pricing.cancellation_price,
            pricing.cancellation_sku,
            "cancellation-fee",
        )

    return [c for c in charges if c.quantity != ZERO and (c.cost != ZERO or c.price != ZERO)]


def _cycles_until(
    start_date: dt.date, months: int, day: dt.date, period_last: dt.date
) -> list[tuple[dt.date, dt.date]]:
    """The cycles from the one containing ``day`` to the last one starting by ``period_last``:
    those billed by earlier runs, and those this run bills."""
    cycles = []
    first, last = cycle_containing(start_date, months, day)
    while first <= period_last:
        cycles.append((first, last))
        first, last = cycle_containing(start_date, months, last + dt.timedelta(days=1))
    return cycles
