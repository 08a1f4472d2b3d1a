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
is built once as a list in ``bulk.LINE_COLUMNS`` order with values already in the driver's form
(integer units, dates), and lines go to the driver's own bulk path (``COPY`` on PostgreSQL,
``executemany`` on SQLite) instead of SQLAlchemy's per-row parameter processing, which took
half of a run.

This module is the run's order of work; its parts live beside it: ``context`` (what a run
reads once and its per-run caches), ``lines`` (pricing and price lines), ``invoices`` (invoice
drafts, numbers and totals), ``parties`` (the sender and receiver snapshots) and ``bulk``
(the driver's bulk writes).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from billing_api.billing.bulk import write_lines
from billing_api.billing.charges import Change, SubscriptionState, period_charges
from billing_api.billing.chunk import read_chunk
from billing_api.billing.context import RunContext, as_cents, driver_date, load_context
from billing_api.billing.invoices import (
    forget_customer_invoices,
    insert_new_invoices,
    store_sequences,
    store_totals,
)
from billing_api.billing.lines import lines_for, remember_pricing
from billing_api.billing.models import BillingRun
from billing_api.billing.positions import assign_sync_position
from billing_api.billing.rating import ZERO, parse_period
from billing_api.customers.models import Customer, Subscription, SubscriptionChange
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput
from billing_api.webhooks import outbox as webhook_outbox

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
    # Distinct buyers' VAT numbers that fail the check and so were billed as no number.
    ignored_vat_numbers: int = 0
    # The run's place in its partner's sync order (billing/positions.py).
    sync_position: int | None = None


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
    ctx = load_context(
        session, partner_id, environment, period, period_first, period_last, invoice_date, run_id
    )
    ctx.invoice_date_value = driver_date(ctx, invoice_date)

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

    store_totals(session, ctx)
    store_sequences(session, ctx)
    summary.invoices = ctx.done_invoices + len(ctx.invoices)
    if summary.invoices:
        summary.total_excluding_vat = as_cents(
            sum((d.excluding_vat for d in ctx.invoices.values()), ctx.done_excluding_vat)
        )
        summary.total_vat = as_cents(sum((d.vat for d in ctx.invoices.values()), ctx.done_vat))
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


def _bill_customers(session: Session, ctx: RunContext, customer_ids: Sequence[int]) -> int:
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
            pricing = ctx.pricings.get(pricing_key) or remember_pricing(
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
                lines_for(ctx, customer, sub, plan, pricing, charge, lines)

    insert_new_invoices(session, ctx)
    for line in lines:
        line[0] = line[0].id
    if lines:
        write_lines(session, ctx, lines)
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
    forget_customer_invoices(ctx)
    # Keyed by customers' VAT numbers among others: kept for a chunk only, so that a run's
    # memory does not grow with its number of customers.
    ctx.tax.clear()
    return len(lines)
