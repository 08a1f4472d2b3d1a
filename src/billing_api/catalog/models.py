"""The distributor's catalog. Prices are exact decimals (see ``db.ScaledDecimal``).

Names that the documents give per language (plan, resource, measure unit) are JSON objects
mapping a language code to the name, e.g. ``{"en": "Microsoft 365 E3", "nl": "…"}``.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing_api.db import Base, ScaledDecimal

PERIOD_TYPES = ("month", "year")
PERIOD_TYPE_CHECK = "IN ('month', 'year')"


class Vendor(Base):
    """A manufacturer whose products the distributor sells; each is invoiced separately."""

    __tablename__ = "vendors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class PlanCategory(Base):
    __tablename__ = "plan_categories"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)


class ServicePlan(Base):
    """The blueprint of an offering: which resources it has and at what price."""

    __tablename__ = "service_plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendors.id"), index=True)
    category_id: Mapped[int] = mapped_column(ForeignKey("plan_categories.id"))
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Telecom (connectivity, SIP trunks) sold through a partner is reverse-charged.
    is_telecom: Mapped[bool] = mapped_column(Boolean, default=False)
    # The platform's billing model code: 1 = charge before the period (in advance).
    billing_model: Mapped[int] = mapped_column(Integer, default=1)

    vendor: Mapped[Vendor] = relationship()
    category: Mapped[PlanCategory] = relationship()
    periods: Mapped[list[PlanPeriod]] = relationship(
        back_populates="plan", order_by="PlanPeriod.id"
    )
    rates: Mapped[list[ResourceRate]] = relationship(
        back_populates="plan", order_by="ResourceRate.id"
    )


class PlanPeriod(Base):
    """A term a plan is sold for (e.g. 1 month billed monthly, 1 year billed yearly)."""

    __tablename__ = "plan_periods"
    __table_args__ = (
        CheckConstraint(f"period_type {PERIOD_TYPE_CHECK}", name="period_type"),
        CheckConstraint(f"billing_period_type {PERIOD_TYPE_CHECK}", name="billing_period_type"),
        CheckConstraint("period > 0 AND billing_period > 0", name="positive_periods"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("service_plans.id"), index=True)
    period: Mapped[int] = mapped_column(Integer, default=1)
    period_type: Mapped[str] = mapped_column(String(5), default="month")
    billing_period: Mapped[int] = mapped_column(Integer, default=1)
    billing_period_type: Mapped[str] = mapped_column(String(5), default="month")
    setup_sku: Mapped[str] = mapped_column(String(60), default="")
    subscription_sku: Mapped[str] = mapped_column(String(60), default="")
    renewal_sku: Mapped[str] = mapped_column(String(60), default="")
    transfer_sku: Mapped[str] = mapped_column(String(60), default="")
    cancellation_sku: Mapped[str] = mapped_column(String(60), default="")

    plan: Mapped[ServicePlan] = relationship(back_populates="periods")

    @property
    def cycle_months(self) -> int:
        """Length of one billing cycle in months."""
        return self.billing_period * (12 if self.billing_period_type == "year" else 1)


class Resource(Base):
    """One building block of a plan: a licence seat, a vCPU, a block of storage."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    manufacturer: Mapped[str] = mapped_column(String(60), default="")
    manufacturer_name: Mapped[str] = mapped_column(String(200), default="")
    mp_number: Mapped[str] = mapped_column(String(60), default="")
    measure_unit: Mapped[str] = mapped_column(String(40), default="unit")
    measure_units: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


class ResourceRate(Base):
    """The price of one resource inside one plan: cost to the partner and default sales price.

    Recurring prices are per month; a yearly cycle bills them with a Duration of 12.
    """

    __tablename__ = "resource_rates"
    __table_args__ = (UniqueConstraint("plan_id", "resource_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("service_plans.id"), index=True)
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id"), index=True)
    included_value: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    recurring_cost: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    recurring_price: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    overuse_cost: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    overuse_price: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    setup_cost: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    setup_price: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    cancellation_cost: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    cancellation_price: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    setup_sku: Mapped[str] = mapped_column(String(60), default="")
    recurring_sku: Mapped[str] = mapped_column(String(60), default="")
    overuse_sku: Mapped[str] = mapped_column(String(60), default="")
    cancellation_sku: Mapped[str] = mapped_column(String(60), default="")

    plan: Mapped[ServicePlan] = relationship(back_populates="rates")
    resource: Mapped[Resource] = relationship()
    rate_periods: Mapped[list[RatePeriod]] = relationship(
        back_populates="rate", order_by="RatePeriod.id"
    )


class RatePeriod(Base):
    """A commitment-term price of a resource rate (e.g. Microsoft NCE annual, billed monthly).

    Lines billed under it carry its id as ``RatePeriodID``.
    """

    __tablename__ = "rate_periods"
    __table_args__ = (
        CheckConstraint(f"term_type {PERIOD_TYPE_CHECK}", name="term_type"),
        CheckConstraint(f"billing_period_type {PERIOD_TYPE_CHECK}", name="billing_period_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_rate_id: Mapped[int] = mapped_column(ForeignKey("resource_rates.id"), index=True)
    term: Mapped[int] = mapped_column(Integer, default=1)
    term_type: Mapped[str] = mapped_column(String(5), default="year")
    billing_period: Mapped[int] = mapped_column(Integer, default=1)
    billing_period_type: Mapped[str] = mapped_column(String(5), default="month")
    recurring_cost: Mapped[Decimal] = mapped_column(ScaledDecimal())
    recurring_price: Mapped[Decimal] = mapped_column(ScaledDecimal())
    sku: Mapped[str] = mapped_column(String(60), default="")

    rate: Mapped[ResourceRate] = relationship(back_populates="rate_periods")
