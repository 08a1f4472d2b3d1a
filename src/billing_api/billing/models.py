"""Tax zones, billing runs, invoices and price lines.

Price lines repeat their invoice's partner, environment, kind and date so that "all lines of
one partner's invoices dated between two days, in document order" is one range scan of
``ix_price_lines_export`` with no join needed to filter or sort.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.db import Base, ScaledDecimal, UTCDateTime, utcnow
from billing_api.environments import environment_check, environment_column

INVOICE_KINDS = ("purchase", "customer")
CHARGE_TYPES = ("Purchase Fee", "Cycle Fee", "Usage Fee", "One Time Fee", "Correction")
KIND_CHECK = "kind IN ('purchase', 'customer')"


class TaxZone(Base):
    """A VAT zone; reverse-charge and export zones have a 0 % rate and a flag saying why."""

    __tablename__ = "tax_zones"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    country_code: Mapped[str | None] = mapped_column(String(2), unique=True)
    vat_percentage: Mapped[Decimal] = mapped_column(ScaledDecimal())
    is_reverse_charge: Mapped[bool] = mapped_column(Boolean, default=False)


class BillingRun(Base):
    """One billed period of one partner in one environment.

    It exists once, so a re-run of the period is a no-op. ``sync_position`` numbers a
    partner's runs per environment in commit order (``billing/positions.py``): sync cursors
    and webhooks name "the runs after position N" with it. NULL only inside the run's own
    transaction, before its end."""

    __tablename__ = "billing_runs"
    __table_args__ = (
        environment_check(),
        UniqueConstraint("partner_id", "environment", "period"),
        UniqueConstraint("partner_id", "environment", "sync_position",
                         name="uq_billing_runs_sync_position"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    environment: Mapped[str] = environment_column()
    period: Mapped[str] = mapped_column(String(7))  # YYYY-MM
    invoice_date: Mapped[dt.date] = mapped_column(Date)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    invoice_count: Mapped[int] = mapped_column(Integer, default=0)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    sync_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class SyncPosition(Base):
    """The last sync position given to a partner's run in an environment. Kept apart from
    the runs so that undoing the newest run never lets a position be given twice: a client
    whose cursor is past it would miss the period billed again."""

    __tablename__ = "sync_positions"
    __table_args__ = (environment_check(),)

    partner_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), primary_key=True)
    environment: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_position: Mapped[int] = mapped_column(Integer)
    # When a run of this partner and environment was last undone: an answer's Last-Modified
    # must not go back in time when the run it showed disappears (api/conditional.py).
    undone_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ContentRevision(Base):
    """One row counting the imports that changed data documents read live (customers,
    subscriptions, plans, companies): part of every document's ETag (api/conditional.py).
    Issued invoices and lines are snapshots and change only with billing runs."""

    __tablename__ = "content_revisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class InvoiceSequence(Base):
    """The last invoice number a sender used in an environment: numbers are gap-free."""

    __tablename__ = "invoice_sequences"
    __table_args__ = (environment_check(),)

    sender_company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), primary_key=True)
    environment: Mapped[str] = mapped_column(String(10), primary_key=True)
    last_number: Mapped[int] = mapped_column(Integer, default=0)


class Invoice(Base):
    """A purchase invoice (distributor → partner, per vendor) or a customer invoice
    (partner → customer, per vendor). Sender and receiver are snapshots taken at billing
    time, as an issued invoice must not change when an address does later."""

    __tablename__ = "invoices"
    __table_args__ = (
        environment_check(),
        CheckConstraint(KIND_CHECK, name="kind"),
        CheckConstraint("type IN ('invoice', 'credit')", name="type"),
        UniqueConstraint("environment", "sender_company_id", "invoice_number"),
        Index("ix_invoices_partner_date", "partner_id", "environment", "kind", "invoice_date"),
        # One invoice by its InvoiceID (GET /api/v4/{invoices|customerinvoices}/{id}): one
        # probe, where the unique constraint above leads with the sender.
        Index("ix_invoices_partner_number", "partner_id", "environment", "kind",
              "invoice_number"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    partner_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    environment: Mapped[str] = environment_column()
    kind: Mapped[str] = mapped_column(String(8))
    billing_run_id: Mapped[int] = mapped_column(ForeignKey("billing_runs.id"), index=True)
    vendor_id: Mapped[int] = mapped_column(ForeignKey("vendors.id"))
    sender_company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"))
    invoice_number: Mapped[str] = mapped_column(String(40))
    invoice_date: Mapped[dt.date] = mapped_column(Date)
    due_date: Mapped[dt.date] = mapped_column(Date)
    description: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    terms_of_payment_days: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(7), default="invoice")
    language_code: Mapped[str] = mapped_column(String(5))
    sender: Mapped[dict[str, Any]] = mapped_column(JSON)
    receiver: Mapped[dict[str, Any]] = mapped_column(JSON)
    total_excluding_vat: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    total_vat: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))
    total_including_vat: Mapped[Decimal] = mapped_column(ScaledDecimal(), default=Decimal(0))


class PriceLine(Base):
    """One billed charge. A purchase line and its customer line share ``row_hash``."""

    __tablename__ = "price_lines"
    __table_args__ = (
        environment_check(),
        CheckConstraint(KIND_CHECK, name="kind"),
        UniqueConstraint("environment", "kind", "row_hash"),
        Index(
            "ix_price_lines_export",
            "partner_id",
            "environment",
            "kind",
            "invoice_date",
            "invoice_id",
            "customer_id",
            "subscription_id",
            "id",
        ),
        Index("ix_price_lines_invoice", "invoice_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    partner_id: Mapped[int] = mapped_column(ForeignKey("companies.id"))
    environment: Mapped[str] = environment_column()
    kind: Mapped[str] = mapped_column(String(8))
    invoice_date: Mapped[dt.date] = mapped_column(Date)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"))
    resource_rate_id: Mapped[int] = mapped_column(ForeignKey("resource_rates.id"))
    rate_period_id: Mapped[int | None] = mapped_column(ForeignKey("rate_periods.id"))
    uid: Mapped[str] = mapped_column(String(36))
    description: Mapped[str] = mapped_column(String(400))
    sku: Mapped[str] = mapped_column(String(60))
    quantity: Mapped[Decimal] = mapped_column(ScaledDecimal())
    quantity_type: Mapped[str] = mapped_column(String(40))
    unit_price: Mapped[Decimal] = mapped_column(ScaledDecimal())
    discount: Mapped[Decimal] = mapped_column(ScaledDecimal())
    extended_price: Mapped[Decimal] = mapped_column(ScaledDecimal())
    vat: Mapped[Decimal] = mapped_column(ScaledDecimal())
    tax_zone_id: Mapped[int] = mapped_column(ForeignKey("tax_zones.id"))
    tax_percentage: Mapped[Decimal] = mapped_column(ScaledDecimal())
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date] = mapped_column(Date)
    duration: Mapped[Decimal] = mapped_column(ScaledDecimal())
    duration_type: Mapped[str] = mapped_column(String(10))
    consumer_company_name: Mapped[str] = mapped_column(String(200))
    consumer_company_number: Mapped[str] = mapped_column(String(60))
    charge_type: Mapped[str] = mapped_column(String(14))
    billing_frequency: Mapped[str] = mapped_column(String(10))
    sub_po_number: Mapped[str] = mapped_column(String(60), default="")
    row_hash: Mapped[str] = mapped_column(String(64))
