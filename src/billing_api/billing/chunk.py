"""What a billing run reads of one chunk of a partner's customers: the customers, their
subscriptions billable in the period, and those subscriptions' resources, amount changes and
usage.

Rows come back as named tuples of the columns the run uses: the run reads them once per line,
and a SQLAlchemy ``Row``'s attribute access costs about ten times a tuple's.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import Column, Connection, Select, Table, or_, select

from billing_api.billing.charges import Change
from billing_api.customers.models import (
    Customer,
    Subscription,
    SubscriptionChange,
    SubscriptionResource,
    UsageRecord,
)


class CustomerRow(NamedTuple):
    id: int
    customer_number: str
    company_name: str
    vat_number: str
    contact_first_name: str
    contact_middle_name: str
    contact_last_name: str
    address: str
    postal_code: str
    city: str
    country_code: str
    telephone: str
    fax: str
    email: str
    language_code: str
    is_partner_itself: bool
    endpoint_id: str
    endpoint_scheme: str
    registration_number: str
    registration_scheme: str
    iban: str
    bic: str


class SubscriptionRow(NamedTuple):
    id: int
    customer_id: int
    plan_id: int
    plan_period_id: int
    start_date: dt.date
    expiration_date: dt.date | None
    cancelled_on: dt.date | None
    cancellation_billed_run_id: int | None
    po_number: str


class ResourceRow(NamedTuple):
    subscription_id: int
    resource_rate_id: int
    rate_period_id: int | None
    amount: Decimal
    sales_price: Decimal | None
    sales_discount: Decimal


class ChangeRow(NamedTuple):
    change: Change
    billed: bool  # by an earlier run


@dataclass(slots=True)
class Chunk:
    customers: dict[int, CustomerRow]
    subscriptions: list[SubscriptionRow]  # by customer, then id
    resources: dict[int, list[ResourceRow]]  # per subscription, by id
    changes: dict[tuple[int, int], list[ChangeRow]]  # per (subscription, rate), by day and id
    usage: dict[tuple[int, int], Decimal]  # the period's, per (subscription, rate)


def columns(source: Table, shape: type[tuple[Any, ...]]) -> list[Column[Any]]:
    """The columns a row shape (a named tuple of column names) reads."""
    return [source.c[name] for name in shape._fields]  # type: ignore[attr-defined]


def read_chunk(
    connection: Connection,
    partner_id: int,
    environment: str,
    period: str,
    period_first: dt.date,
    period_last: dt.date,
    customer_ids: Sequence[int],
) -> Chunk:
    """``customer_ids``: a slice of the partner's customer ids in this environment, in order."""
    # The chunk's id range with the partner and environment finds its customers and (through
    # ix_subscriptions_partner_env) their subscriptions, without binding an IN list of the
    # chunk's ids; customer_id alone has no index (a scan of every subscription per chunk made
    # runs quadratic in the number of customers). A subscription belongs to its customer's
    # partner and environment (the importer and the demo write them so).
    first_id, last_id = customer_ids[0], customer_ids[-1]
    wanted = set(customer_ids)
    customer = table(Customer)
    customers = {
        c.id: c
        for c in map(
            CustomerRow._make,
            connection.execute(
                select(*columns(customer, CustomerRow)).where(
                    customer.c.partner_id == partner_id,
                    customer.c.environment == environment,
                    customer.c.id.between(first_id, last_id),
                )
            ).all(),
        )
        if c.id in wanted  # not one inserted since the run listed the ids
    }
    sub = table(Subscription)
    in_chunk = (
        sub.c.partner_id == partner_id,
        sub.c.environment == environment,
        sub.c.customer_id.between(first_id, last_id),
        sub.c.start_date <= period_last,
        or_(
            sub.c.cancelled_on.is_(None),
            sub.c.cancelled_on >= period_first,
            sub.c.cancellation_billed_run_id.is_(None),
        ),
    )
    subscriptions = [
        s
        for s in map(
            SubscriptionRow._make,
            connection.execute(
                select(*columns(sub, SubscriptionRow))
                .where(*in_chunk)
                .order_by(sub.c.customer_id, sub.c.id)
            ).all(),
        )
        if s.customer_id in customers
    ]
    chunk = Chunk(customers, subscriptions, defaultdict(list), defaultdict(list), {})
    if not subscriptions:
        return chunk

    # Resources, changes and usage of the chunk's subscriptions. SQLite looks each of them up
    # in the index through a subquery; a list of ids would be a new statement for the driver
    # to prepare and cache per chunk. PostgreSQL would hash that subquery over a scan of
    # every subscription's rows, per chunk: it gets the ids.
    chunk_subscriptions: list[int] | Select[tuple[int]]
    if connection.dialect.name == "postgresql":
        chunk_subscriptions = [s.id for s in subscriptions]
    else:
        chunk_subscriptions = select(sub.c.id).where(*in_chunk)
    resource = table(SubscriptionResource)
    for r in map(
        ResourceRow._make,
        connection.execute(
            select(*columns(resource, ResourceRow))
            .where(resource.c.subscription_id.in_(chunk_subscriptions))
            .order_by(resource.c.id)
        ).all(),
    ):
        chunk.resources[r.subscription_id].append(r)
    change = table(SubscriptionChange)
    for c in connection.execute(
        select(change)
        .where(change.c.subscription_id.in_(chunk_subscriptions))
        .order_by(change.c.effective_date, change.c.id)
    ):
        chunk.changes[(c.subscription_id, c.resource_rate_id)].append(
            ChangeRow(
                Change(c.id, c.effective_date, c.old_amount, c.new_amount),
                billed=c.billed_run_id is not None,
            )
        )
    usage = table(UsageRecord)
    for u in connection.execute(
        select(usage.c.subscription_id, usage.c.resource_rate_id, usage.c.quantity).where(
            usage.c.subscription_id.in_(chunk_subscriptions), usage.c.period == period
        )
    ):
        chunk.usage[(u.subscription_id, u.resource_rate_id)] = u.quantity
    return chunk


def table(model: Any) -> Table:
    """An ORM model's Core table, for Core statements (the run's reads and bulk writes)."""
    return cast(Table, model.__table__)
