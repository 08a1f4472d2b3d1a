"""What the database holds already, looked up by the natural keys an import file uses.

The catalog (companies, vendors, plans, resources, tax zones) is small and read whole, as ORM
objects the writer then updates in place. Customers, subscriptions and usage can be many: only
those a chunk of rows names are read, in chunks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from billing_api.access.models import Company
from billing_api.billing.models import BillingRun, TaxZone
from billing_api.catalog.models import PlanCategory, PlanPeriod, ResourceRate, ServicePlan, Vendor
from billing_api.catalog.models import Resource as ResourceModel
from billing_api.customers.models import (
    Customer,
    Subscription,
    SubscriptionAttribute,
    SubscriptionResource,
    UsageRecord,
)
from billing_api.importer.schema import PeriodKey

CHUNK = 500
CustomerKey = tuple[str, str, str]  # partner name, environment, customer number
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Catalog:
    """The catalog by natural key: names may repeat in the database, so some map to lists."""

    companies: dict[str, Company]
    distributor: Company | None
    vendors: dict[str, Vendor]
    categories: dict[str, PlanCategory]
    resources: dict[str, list[ResourceModel]]
    plans: dict[str, list[ServicePlan]]
    zones: dict[str, int]

    @cached_property
    def resource_names(self) -> dict[int, str]:
        """Resource id → name, as loaded (the checks' view, before anything is written)."""
        return {r.id: name for name, rs in self.resources.items() for r in rs}

    @cached_property
    def plan_by_id(self) -> dict[int, ServicePlan]:
        return {p.id: p for plans in self.plans.values() for p in plans}

    def written(self) -> None:
        """Forget the lookups cached so far: the import has written the catalog's new rows."""
        for name in ("resource_names", "plan_by_id"):
            self.__dict__.pop(name, None)


def period_key(period: PlanPeriod) -> PeriodKey:
    return (period.period, period.period_type, period.billing_period, period.billing_period_type)


def load_catalog(session: Session) -> Catalog:
    companies = {c.name: c for c in session.scalars(select(Company))}
    resources: dict[str, list[ResourceModel]] = defaultdict(list)
    for resource in session.scalars(select(ResourceModel).order_by(ResourceModel.id)):
        resources[resource.name].append(resource)
    plans: dict[str, list[ServicePlan]] = defaultdict(list)
    for plan in session.scalars(
        select(ServicePlan).order_by(ServicePlan.id).options(
            selectinload(ServicePlan.periods),
            selectinload(ServicePlan.rates).selectinload(ResourceRate.rate_periods),
        )
    ):
        plans[plan.name].append(plan)
    return Catalog(
        companies=companies,
        distributor=next((c for c in companies.values() if c.kind == "distributor"), None),
        vendors={v.name: v for v in session.scalars(select(Vendor))},
        categories={c.name: c for c in session.scalars(select(PlanCategory))},
        resources=resources,
        plans=plans,
        zones={code: id_ for id_, code in session.execute(select(TaxZone.id, TaxZone.code))},
    )


@dataclass
class ExistingSubscription:
    subscription: Subscription
    resources: list[SubscriptionResource] = field(default_factory=list)
    attributes: list[SubscriptionAttribute] = field(default_factory=list)


@dataclass
class Existing:
    """The database rows an import's customers, subscriptions and usage rows refer to."""

    catalog: Catalog
    customers: dict[CustomerKey, Customer] = field(default_factory=dict)
    # (customer id, subscription name) → every subscription of that customer with that name
    subscriptions: dict[tuple[int, str], list[ExistingSubscription]] = field(
        default_factory=lambda: defaultdict(list))
    usage: dict[tuple[int, int, str], UsageRecord] = field(default_factory=dict)
    billed: set[tuple[int, str, str]] = field(default_factory=set)  # partner id, env, period


def load_existing(
    session: Session, catalog: Catalog, customer_keys: Iterable[CustomerKey],
    subscription_customers: Iterable[CustomerKey], usage_periods: Iterable[str],
    wants_subscriptions: Callable[[Customer], bool] | None = None,
) -> Existing:
    """Read the customers named by ``customer_keys``, the subscriptions of those named by
    ``subscription_customers``, and the usage and billing runs of (partner, env, period)."""
    existing = Existing(catalog)
    wanted: dict[tuple[int, str], set[str]] = defaultdict(set)
    for partner, env, number in customer_keys:
        company = catalog.companies.get(partner)
        if company is not None and company.kind == "partner":
            wanted[(company.id, env)].add(number)
    names = {c.id: c.name for c in catalog.companies.values()}
    for (partner_id, env), numbers in wanted.items():
        for numbers_part in chunks(sorted(numbers)):
            for customer in session.scalars(select(Customer).where(
                Customer.partner_id == partner_id, Customer.environment == env,
                Customer.customer_number.in_(numbers_part),
            )):
                existing.customers[(names[partner_id], env, customer.customer_number)] = customer

    # By partner and environment too, so that the (partner, environment, customer) index
    # serves the look-up: by customer alone it would scan every subscription, once per chunk.
    by_owner: dict[tuple[int, str], set[int]] = defaultdict(set)
    for key in subscription_customers:
        found = existing.customers.get(key)
        if found is not None and (wants_subscriptions is None or wants_subscriptions(found)):
            by_owner[(found.partner_id, found.environment)].add(found.id)
    subs: dict[int, ExistingSubscription] = {}
    for (partner_id, env), ids in by_owner.items():
        for part in chunks(sorted(ids)):
            for sub in session.scalars(select(Subscription).where(
                    Subscription.partner_id == partner_id, Subscription.environment == env,
                    Subscription.customer_id.in_(part))):
                subs[sub.id] = ExistingSubscription(sub)
                existing.subscriptions[(sub.customer_id, sub.name)].append(subs[sub.id])
    sub_ids = sorted(subs)
    for part in chunks(sub_ids):
        for sr in session.scalars(select(SubscriptionResource).where(
                SubscriptionResource.subscription_id.in_(part)).order_by(SubscriptionResource.id)):
            subs[sr.subscription_id].resources.append(sr)
        for attr in session.scalars(select(SubscriptionAttribute).where(
                SubscriptionAttribute.subscription_id.in_(part))
                .order_by(SubscriptionAttribute.id)):
            subs[attr.subscription_id].attributes.append(attr)

    periods = sorted(set(usage_periods))
    if periods:
        for part in chunks(sub_ids):
            for record in session.scalars(select(UsageRecord).where(
                    UsageRecord.subscription_id.in_(part), UsageRecord.period.in_(periods))):
                existing.usage[(record.subscription_id, record.resource_rate_id,
                                record.period)] = record
        partner_ids = sorted({c.id for c in catalog.companies.values() if c.kind == "partner"})
        for part in chunks(partner_ids):
            existing.billed.update((partner_id, env, period) for partner_id, env, period in
                                   session.execute(select(
                BillingRun.partner_id, BillingRun.environment, BillingRun.period,
            ).where(BillingRun.partner_id.in_(part), BillingRun.period.in_(periods))))
    return existing

