"""Billed worlds for the export tests (XSD, golden files), and a client for the real server.

``build_rich_world`` covers what a schema must accept: a credit invoice and negative
corrections, a yearly plan, a rate-period resource, subscription attributes (one ``noshow``),
markup and control characters, non-ASCII text. ``build_golden_world`` is small and fixed,
every row with an explicit id, so that its documents are byte-identical on SQLite and
PostgreSQL (only ``LineId``, assigned by the billing run, needs normalising) and a person can
check its numbers by hand: see ``tests/golden/README.md``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, permissions, users, whitelist
from billing_api.access.models import Company
from billing_api.billing.run import bill_partner
from billing_api.catalog.models import (
    PlanCategory,
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
    SubscriptionAttribute,
    SubscriptionChange,
    SubscriptionResource,
)
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests import factories as f
from tests.access_helpers import make_partner

D = Decimal
TRICKY_NAME = "Smith & Sons <\"Ltd\"> 'Ünal' \x01café"


@dataclass(frozen=True)
class Client:
    """GETs against the served app with the partner's key."""

    base: str
    secret: str

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(
            self.base + path, params=params, headers={"X-Api-Key": self.secret}, timeout=30
        )


@dataclass(frozen=True)
class BilledWorld:
    secret: str
    subscription_ids: tuple[int, ...]
    window: dict[str, str]  # startDate/endDate covering every invoice


# --- the rich world -------------------------------------------------------------------------


def build_rich_world(factory: sessionmaker[Session], settings: Settings) -> BilledWorld:
    """Two months billed (September and October 2026) for one partner with three customers."""
    partner = make_partner(factory, settings)
    with transaction(factory) as session:
        f.distributor(session)
        company = session.get_one(Company, partner.company_id)
        ms_plan, period, rate = f.plan(session, f.vendor(session, "Microsoft"))
        ms_plan.names = {"en": "Microsoft 365 Business", "de": "Microsoft 365 für Ärzte"}
        nce = f.rate_period(session, rate)
        _, yperiod, yrate = f.plan(
            session,
            f.vendor(session, "VMware"),
            billing_period_type="year",
            recurring_cost=D("100"),
            recurring_price=D("120.50"),
        )
        tricky = f.customer(
            session, company, company_name=TRICKY_NAME, cost_center="IT & <ops>",
            language_code="nl",
        )
        belgian = f.customer(session, company, country_code="BE", vat_number="BE0123456749")
        # The partner's own use: purchase lines with no customer line (empty Sales* fields).
        itself = f.customer(session, company, company_name="Acme (own use)",
                            is_partner_itself=True)
        f.subscription(session, itself, period, rate, amount=D(1), start=dt.date(2026, 10, 1))
        seats, seat_resource = f.subscription(
            session, tricky, period, rate, amount=D(3), start=dt.date(2026, 9, 1),
            po_number="PO-<1>",
        )
        # Three seats in September, two from the 20th: a negative pro-rata Correction.
        seat_resource.amount = D(2)
        session.add(
            SubscriptionChange(
                subscription_id=seats.id, resource_rate_id=rate.id,
                effective_date=dt.date(2026, 9, 20), old_amount=D(3), new_amount=D(2),
            )
        )
        yearly, _ = f.subscription(
            session, belgian, yperiod, yrate, amount=D(2), start=dt.date(2026, 9, 5)
        )
        nce_sub, _ = f.subscription(
            session, belgian, period, rate, amount=D(1), start=dt.date(2026, 9, 16),
            rate_period_=nce,
        )
        session.add_all(
            [
                SubscriptionAttribute(
                    subscription_id=yearly.id, attribute="vCPU", value="4",
                    description="Virtual CPUs & <cores>",
                ),
                SubscriptionAttribute(
                    subscription_id=yearly.id, attribute="Disk", value="100 GB",
                    description="Größe", noshow=True,
                ),
            ]
        )
    _bill(factory, partner.company_id, "2026-09", dt.date(2026, 10, 23))
    with transaction(factory) as session:
        # Cancelled in October: the rest of the yearly cycle is refunded, so October's VMware
        # invoice is a credit.
        session.execute(
            update(Subscription)
            .where(Subscription.id == yearly.id)
            .values(status="cancelled", cancelled_on=dt.date(2026, 10, 5))
        )
    _bill(factory, partner.company_id, "2026-10", dt.date(2026, 11, 23))
    return BilledWorld(
        partner.secret,
        (seats.id, yearly.id, nce_sub.id),
        {"startDate": "20260101", "endDate": "20261231"},
    )


def _bill(factory: sessionmaker[Session], company_id: int, period: str, day: dt.date) -> None:
    with transaction(factory, writer=True) as session:
        bill_partner(session, company_id, Environment.PRODUCTION, period, day)


# --- the golden world -----------------------------------------------------------------------

GOLDEN_SUBSCRIPTION_ID = 502  # the one subscriptiondetails golden files describe
GOLDEN_WINDOW = {"startDate": "20261201", "endDate": "20261231"}


def _add(session: Session, *rows: Any) -> None:
    session.add_all(rows)
    session.flush()


def build_golden_world(factory: sessionmaker[Session], settings: Settings) -> BilledWorld:
    """November 2026, invoiced on 23 December 2026: 2 customers, 3 subscriptions, 2 vendors."""
    with transaction(factory) as session:
        _add(
            session,
            Company(
                id=1, kind="distributor", name="Cloud Distribution BV",
                address="Stationsplein 1", postal_code="1012 AB", city="Amsterdam",
                country_code="NL", telephone="+31 20 000 0000", email="billing@cloud.example",
                website="https://cloud.example", chamber_of_commerce="12345678",
                vat_number="NL000000001B01", bank_account="417164300",
                iban="NL91ABNA0417164300", bic="ABNANL2A", invoice_prefix="CD",
                terms_of_payment_days=30,
            ),
            Company(
                id=2, kind="partner", name="Acme Cloud BV", address="Kerkstraat 10",
                postal_code="3511 AA", city="Utrecht", country_code="NL",
                vat_number="NL000000002B01", email="finance@acme.example",
                contact_first_name="Anna", contact_last_name="de Vries",
                invoice_prefix="AC", terms_of_payment_days=14,
            ),
        )
        partner = session.get_one(Company, 2)
        admin = users.add_user(session, partner, "admin@acme.example", "correct horse battery")
        permissions.set_api_enabled(session, partner, admin, True)
        whitelist.add_entry(session, partner, "127.0.0.1", actor=admin)
        _, secret = keys.create_key(
            session, settings, partner, environment=Environment.PRODUCTION, name="erp",
            actor=admin,
        )
        _golden_catalog(session)
        _golden_customers(session)
    with transaction(factory, writer=True) as session:
        bill_partner(session, 2, Environment.PRODUCTION, "2026-11", dt.date(2026, 12, 23))
    return BilledWorld(secret, (501, 502, 503), GOLDEN_WINDOW)


def _golden_catalog(session: Session) -> None:
    _add(
        session,
        Vendor(id=1, name="Microsoft"),
        Vendor(id=2, name="VMware"),
        PlanCategory(id=61, name="Productivity"),
        PlanCategory(id=62, name="Virtualisation"),
    )
    _add(
        session,
        ServicePlan(
            id=11, vendor_id=1, category_id=61, name="Microsoft 365 Business Standard",
            names={"en": "Microsoft 365 Business Standard", "nl": "Microsoft 365 Zakelijk"},
        ),
        ServicePlan(
            id=12, vendor_id=2, category_id=62, name="vSphere Foundation",
            names={"en": "vSphere Foundation"},
        ),
        Resource(
            id=31, name="Licence", names={"en": "Licence", "nl": "Licentie"},
            manufacturer="MSFT", manufacturer_name="Microsoft", mp_number="CFQ7TTC0LDPB",
            measure_unit="licence", measure_units={"en": "licence", "nl": "licentie"},
        ),
        Resource(
            id=32, name="Core", names={"en": "Core"}, manufacturer="VMW",
            manufacturer_name="VMware by Broadcom", measure_unit="core",
        ),
    )
    _add(
        session,
        PlanPeriod(
            id=21, plan_id=11, period=1, period_type="month", billing_period=1,
            billing_period_type="month", subscription_sku="M365-BS-1M",
            cancellation_sku="M365-BS-CXL",
        ),
        PlanPeriod(
            id=22, plan_id=12, period=1, period_type="year", billing_period=1,
            billing_period_type="year", subscription_sku="VVF-1Y",
        ),
        ResourceRate(
            id=41, plan_id=11, resource_id=31, recurring_cost=D("8.00"),
            recurring_price=D("10.00"), recurring_sku="M365-BS-LIC",
        ),
        ResourceRate(
            id=42, plan_id=12, resource_id=32, recurring_cost=D("2.50"),
            recurring_price=D("3.00"), recurring_sku="VVF-CORE",
        ),
    )
    _add(
        session,
        RatePeriod(
            id=51, resource_rate_id=41, term=1, term_type="year", billing_period=1,
            billing_period_type="month", recurring_cost=D("7.00"), recurring_price=D("9.50"),
            sku="M365-BS-NCE-1Y",
        ),
    )


def _golden_customers(session: Session) -> None:
    nl, be = f.zone_id(session, "NL"), f.zone_id(session, "BE")
    _add(
        session,
        Customer(
            id=1001, partner_id=2, environment="production", customer_number="C-001",
            company_name="Bakker & Zonen B.V.", cost_center="Sales", country_code="NL",
            city="Utrecht", tax_zone_id=nl, language_code="nl",
        ),
        Customer(
            id=1002, partner_id=2, environment="production", customer_number="C-002",
            company_name="Brasserie Ünal SPRL", country_code="BE", city="Liège",
            vat_number="BE0123456749", tax_zone_id=be, language_code="fr",
        ),
    )
    _add(
        session,
        Subscription(
            id=501, partner_id=2, environment="production", customer_id=1001, plan_id=11,
            plan_period_id=21, name="Office seats", start_date=dt.date(2026, 11, 1),
            po_number="PO-2026-118",
        ),
        Subscription(
            id=502, partner_id=2, environment="production", customer_id=1001, plan_id=11,
            plan_period_id=21, name="Office seats (annual)", start_date=dt.date(2026, 11, 16),
            expiration_date=dt.date(2027, 11, 15),
        ),
        Subscription(
            id=503, partner_id=2, environment="production", customer_id=1002, plan_id=12,
            plan_period_id=22, name="Cluster AMS", start_date=dt.date(2026, 11, 1),
        ),
    )
    _add(
        session,
        SubscriptionResource(
            id=701, subscription_id=501, resource_rate_id=41, amount=D(3),
            sales_discount=D("1.00"),
        ),
        SubscriptionResource(
            id=702, subscription_id=502, resource_rate_id=41, amount=D(2), rate_period_id=51
        ),
        SubscriptionResource(id=703, subscription_id=503, resource_rate_id=42, amount=D(16)),
        SubscriptionAttribute(
            id=801, subscription_id=503, attribute="vCPU", value="16",
            description="Licensed cores",
        ),
        SubscriptionAttribute(
            id=802, subscription_id=503, attribute="Cluster", value="ams-prod-01",
            description="Internal name", noshow=True,
        ),
    )
