"""Small builders for test data: each makes one row with sensible defaults and flushes it."""

from __future__ import annotations

import datetime as dt
import itertools
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.models import TaxZone
from billing_api.catalog.models import (
    PlanCategory,
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)
from billing_api.customers.models import Customer, Subscription, SubscriptionResource

_seq = itertools.count(1)
D = Decimal


def _add(session: Session, obj: Any) -> Any:
    session.add(obj)
    session.flush()
    return obj


def distributor(session: Session, **kw: Any) -> Company:
    values = {
        "kind": "distributor",
        "name": "Cloud Distribution BV",
        "country_code": "NL",
        "vat_number": "NL000000001B01",
        "invoice_prefix": "CD",
        "terms_of_payment_days": 30,
    }
    return _add(session, Company(**(values | kw)))


def partner(session: Session, **kw: Any) -> Company:
    n = next(_seq)
    values = {
        "kind": "partner",
        "name": f"Partner {n} BV",
        "country_code": "NL",
        "vat_number": f"NL{n:09d}B01",
        "invoice_prefix": f"P{n}",
        "terms_of_payment_days": 14,
    }
    return _add(session, Company(**(values | kw)))


def vendor(session: Session, name: str | None = None) -> Vendor:
    return _add(session, Vendor(name=name or f"Vendor {next(_seq)}"))


def plan(
    session: Session,
    vendor_: Vendor,
    *,
    telecom: bool = False,
    billing_period_type: str = "month",
    **rate_kw: Any,
) -> tuple[ServicePlan, PlanPeriod, ResourceRate]:
    """A plan with one resource rate; ``rate_kw`` sets the rate's prices (exact decimals)."""
    n = next(_seq)
    category = _add(session, PlanCategory(name=f"Category {n}"))
    p = _add(
        session,
        ServicePlan(
            vendor_id=vendor_.id,
            category_id=category.id,
            name=f"Plan {n}",
            names={"en": f"Plan {n}"},
            is_telecom=telecom,
        ),
    )
    period = _add(
        session,
        PlanPeriod(
            plan_id=p.id,
            period=1,
            period_type=billing_period_type,
            billing_period=1,
            billing_period_type=billing_period_type,
            subscription_sku=f"SUB-{n}",
        ),
    )
    resource = _add(
        session, Resource(name=f"Seat {n}", names={"en": f"Seat {n}"}, measure_unit="licence")
    )
    prices = {"recurring_cost": D("8.00"), "recurring_price": D("10.00"), "recurring_sku": f"R-{n}"}
    rate = _add(session, ResourceRate(plan_id=p.id, resource_id=resource.id, **(prices | rate_kw)))
    return p, period, rate


def rate_period(session: Session, rate: ResourceRate, **kw: Any) -> RatePeriod:
    values = {
        "term": 1,
        "term_type": "year",
        "billing_period": 1,
        "billing_period_type": "month",
        "recurring_cost": D("7.00"),
        "recurring_price": D("9.50"),
        "sku": "NCE-1Y",
    }
    return _add(session, RatePeriod(resource_rate_id=rate.id, **(values | kw)))


def zone_id(session: Session, code: str) -> int:
    return session.scalars(select(TaxZone.id).where(TaxZone.code == code)).one()


def customer(
    session: Session,
    partner_: Company,
    *,
    environment: str = "production",
    country_code: str = "NL",
    **kw: Any,
) -> Customer:
    n = next(_seq)
    from billing_api.billing.vat import home_zone_code

    values = {
        "customer_number": f"C{n:05d}",
        "company_name": f"Customer {n}",
        "country_code": country_code,
        "tax_zone_id": zone_id(session, home_zone_code(country_code)),
    }
    return _add(session, Customer(partner_id=partner_.id, environment=environment, **(values | kw)))


def subscription(
    session: Session,
    customer_: Customer,
    period: PlanPeriod,
    rate: ResourceRate,
    *,
    amount: Decimal = D(1),
    start: dt.date = dt.date(2026, 10, 1),
    rate_period_: RatePeriod | None = None,
    **kw: Any,
) -> tuple[Subscription, SubscriptionResource]:
    sub = _add(
        session,
        Subscription(
            partner_id=customer_.partner_id,
            environment=customer_.environment,
            customer_id=customer_.id,
            plan_id=period.plan_id,
            plan_period_id=period.id,
            name=kw.pop("name", f"Subscription {next(_seq)}"),
            start_date=start,
            **kw,
        ),
    )
    sr = _add(
        session,
        SubscriptionResource(
            subscription_id=sub.id,
            resource_rate_id=rate.id,
            amount=amount,
            rate_period_id=rate_period_.id if rate_period_ else None,
        ),
    )
    return sub, sr
