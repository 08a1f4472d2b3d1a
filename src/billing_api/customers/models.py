"""Customers and subscriptions. Every row belongs to one partner and one environment.

A subscription's resource amounts are its *current* amounts; ``SubscriptionChange`` records
every change with the day it took effect, so the amount on any earlier day can be rebuilt and
pro-rata corrections billed.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing_api.db import Base, ScaledDecimal, UTCDateTime, utcnow
from billing_api.environments import environment_check, environment_column


class Customer(Base):
    """A customer of a partner; ``customer_number`` is the partner's own ERP id for it."""

    __tablename__ = "customers"
    __table_args__ = (
        environment_check(),
        UniqueConstraint("partner_id", "environment", "customer_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    environment: Mapped[str] = environment_column()
    customer_number: Mapped[str] = mapped_column(String(60))
    company_name: Mapped[str] = mapped_column(String(200))
    cost_center: Mapped[str] = mapped_column(String(60), default="")
    address: Mapped[str] = mapped_column(String(200), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    country_code: Mapped[str] = mapped_column(String(2))
    vat_number: Mapped[str] = mapped_column(String(40), default="")
    # Peppol (docs/einvoicing.md): electronic address with its EAS scheme, legal registration
    # id with its ICD scheme, and the bank account a refund goes to.
    endpoint_id: Mapped[str] = mapped_column(String(100), default="", server_default="")
    endpoint_scheme: Mapped[str] = mapped_column(String(4), default="", server_default="")
    registration_number: Mapped[str] = mapped_column(String(40), default="", server_default="")
    registration_scheme: Mapped[str] = mapped_column(String(4), default="", server_default="")
    iban: Mapped[str] = mapped_column(String(40), default="", server_default="")
    bic: Mapped[str] = mapped_column(String(20), default="", server_default="")
    tax_zone_id: Mapped[int] = mapped_column(ForeignKey("tax_zones.id"))
    contact_first_name: Mapped[str] = mapped_column(String(100), default="")
    contact_middle_name: Mapped[str] = mapped_column(String(100), default="")
    contact_last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    telephone: Mapped[str] = mapped_column(String(40), default="")
    fax: Mapped[str] = mapped_column(String(40), default="")
    language_code: Mapped[str] = mapped_column(String(5), default="en")
    # The partner's own use (it consumes the service itself): telecom is then not reverse-charged.
    is_partner_itself: Mapped[bool] = mapped_column(Boolean, default=False)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="customer", order_by="Subscription.id"
    )


class Subscription(Base):
    """A customer's own copy of a service plan at one plan period."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        environment_check(),
        CheckConstraint("status IN ('active', 'cancelled')", name="status"),
        Index("ix_subscriptions_partner_env", "partner_id", "environment", "customer_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    environment: Mapped[str] = environment_column()
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    plan_id: Mapped[int] = mapped_column(ForeignKey("service_plans.id"))
    plan_period_id: Mapped[int] = mapped_column(ForeignKey("plan_periods.id"))
    name: Mapped[str] = mapped_column(String(200))
    start_date: Mapped[dt.date] = mapped_column(Date)
    expiration_date: Mapped[dt.date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(10), default="active")
    # First day the subscription is no longer in service; the rest of a paid cycle is refunded.
    cancelled_on: Mapped[dt.date | None] = mapped_column(Date)
    # The run that billed the cancellation's refund; None until one has.
    cancellation_billed_run_id: Mapped[int | None] = mapped_column(ForeignKey("billing_runs.id"))
    po_number: Mapped[str] = mapped_column(String(60), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="subscriptions")
    resources: Mapped[list[SubscriptionResource]] = relationship(
        back_populates="subscription", order_by="SubscriptionResource.id"
    )
    attributes: Mapped[list[SubscriptionAttribute]] = relationship(
        order_by="SubscriptionAttribute.id"
    )


class SubscriptionResource(Base):
    """The amount of one resource rate a subscription has now, and the partner's sales price."""

    __tablename__ = "subscription_resources"
    __table_args__ = (UniqueConstraint("subscription_id", "resource_rate_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    resource_rate_id: Mapped[int] = mapped_column(ForeignKey("resource_rates.id"))
    rate_period_id: Mapped[int | None] = mapped_column(ForeignKey("rate_periods.id"))
    amount: Mapped[Decimal] = mapped_column(ScaledDecimal())
    # None: the rate's default sales price (or the rate period's).
    sales_price: Mapped[Decimal | None] = mapped_column(ScaledDecimal())
    # The partner's discount per unit on its sales price, if any.
    sales_discount: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))

    subscription: Mapped[Subscription] = relationship(back_populates="resources")


class SubscriptionChange(Base):
    """An amount change of one resource, effective from ``effective_date`` (inclusive).

    Billed once, as a pro-rata Correction, by the first run whose period reaches that day.
    """

    __tablename__ = "subscription_changes"
    __table_args__ = (
        Index("ix_subscription_changes_unbilled", "subscription_id", "billed_run_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    resource_rate_id: Mapped[int] = mapped_column(ForeignKey("resource_rates.id"))
    effective_date: Mapped[dt.date] = mapped_column(Date)
    old_amount: Mapped[Decimal] = mapped_column(ScaledDecimal())
    new_amount: Mapped[Decimal] = mapped_column(ScaledDecimal())
    billed_run_id: Mapped[int | None] = mapped_column(ForeignKey("billing_runs.id"))


class UsageRecord(Base):
    """Consumption of one resource in one calendar month; above the included amount is billed."""

    __tablename__ = "usage_records"
    __table_args__ = (UniqueConstraint("subscription_id", "resource_rate_id", "period"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    resource_rate_id: Mapped[int] = mapped_column(ForeignKey("resource_rates.id"))
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    quantity: Mapped[Decimal] = mapped_column(ScaledDecimal())


class SubscriptionAttribute(Base):
    """A configuration attribute (vCPU, disk size, …); ``noshow`` hides it on printed invoices."""

    __tablename__ = "subscription_attributes"

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    attribute: Mapped[str] = mapped_column(String(100))
    value: Mapped[str] = mapped_column(String(400), default="")
    description: Mapped[str] = mapped_column(String(400), default="")
    noshow: Mapped[bool] = mapped_column(Boolean, default=False)
