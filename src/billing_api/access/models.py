"""Companies (the distributor and its partners) and their users."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing_api.db import Base, UTCDateTime, utcnow


class Company(Base):
    """A legal entity that sends or receives invoices. Exactly one is the distributor."""

    __tablename__ = "companies"
    __table_args__ = (
        CheckConstraint("kind IN ('distributor', 'partner')", name="kind"),
        # At most one distributor: the sender of every purchase invoice.
        Index("uq_companies_one_distributor", "kind", unique=True,
              sqlite_where=text("kind = 'distributor'"),
              postgresql_where=text("kind = 'distributor'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(12), default="partner")
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str] = mapped_column(String(200), default="")
    postal_code: Mapped[str] = mapped_column(String(20), default="")
    city: Mapped[str] = mapped_column(String(100), default="")
    country_code: Mapped[str] = mapped_column(String(2), default="NL")
    telephone: Mapped[str] = mapped_column(String(40), default="")
    fax: Mapped[str] = mapped_column(String(40), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    website: Mapped[str] = mapped_column(String(200), default="")
    logo: Mapped[str] = mapped_column(String(400), default="")
    chamber_of_commerce: Mapped[str] = mapped_column(String(40), default="")
    vat_number: Mapped[str] = mapped_column(String(40), default="")
    bank_account: Mapped[str] = mapped_column(String(60), default="")
    iban: Mapped[str] = mapped_column(String(40), default="")
    bic: Mapped[str] = mapped_column(String(20), default="")
    language_code: Mapped[str] = mapped_column(String(5), default="en")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    terms_of_payment_days: Mapped[int] = mapped_column(Integer, default=30)
    # Prefix of this company's invoice numbers when it is the sender.
    invoice_prefix: Mapped[str] = mapped_column(String(12), default="INV")
    contact_first_name: Mapped[str] = mapped_column(String(100), default="")
    contact_middle_name: Mapped[str] = mapped_column(String(100), default="")
    contact_last_name: Mapped[str] = mapped_column(String(100), default="")
    # Off for every partner until its Account Administrator turns it on.
    api_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    api_enabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    users: Mapped[list[User]] = relationship(back_populates="company", order_by="User.id")


class User(Base):
    """A person who logs in to the portal; ``is_account_admin`` marks the Account Administrator."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(Text)
    is_account_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    can_use_api: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    company: Mapped[Company] = relationship(back_populates="users")
