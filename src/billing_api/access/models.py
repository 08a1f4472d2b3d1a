"""Companies (the distributor and its partners), their users, API keys, whitelist and audit log."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from billing_api.db import Base, UTCDateTime, utcnow
from billing_api.environments import environment_check, environment_column


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
    # Peppol: the electronic address (EndpointID with its EAS scheme, e.g. 0106 + KvK number)
    # and the ICD scheme of ``chamber_of_commerce`` (the legal registration id); e-invoices
    # need them for every party (docs/einvoicing.md).
    endpoint_id: Mapped[str] = mapped_column(String(100), default="", server_default="")
    endpoint_scheme: Mapped[str] = mapped_column(String(4), default="", server_default="")
    registration_scheme: Mapped[str] = mapped_column(String(4), default="", server_default="")
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
    # Set when someone else chose the password (a one-time password the CLI or the portal
    # printed): every portal page leads to the change-password form until it is changed.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=text("false"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The distributor's identity provider's ``sub`` for this person (single sign-on,
    # access/sso.py): pinned at the first sign-in matched by verified e-mail, or by the
    # operator (``billing-api users link-identity``). Null: not linked.
    oidc_subject: Mapped[str | None] = mapped_column(String(255), unique=True)
    oidc_linked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())

    company: Mapped[Company] = relationship(back_populates="users")


class ApiKey(Base):
    """A partner's key for one environment. Only an HMAC digest of the secret is stored."""

    __tablename__ = "api_keys"
    __table_args__ = (environment_check(),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    name: Mapped[str] = mapped_column(String(100))
    environment: Mapped[str] = environment_column()
    # Non-secret start of the key (scheme prefix + a few characters) so people can tell keys
    # apart in lists and audit rows.
    display_prefix: Mapped[str] = mapped_column(String(24))
    # Hex HMAC-SHA256 of the whole secret under the pepper ``pepper_id``: the lookup column.
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    pepper_id: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class WhitelistEntry(Base):
    """One IPv4/IPv6 network (a single address is a /32 or /128) allowed to call the API."""

    __tablename__ = "ip_whitelist"
    __table_args__ = (UniqueConstraint("company_id", "network"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    # Normalised text form, e.g. "192.0.2.0/24" or "2001:db8::1/128".
    network: Mapped[str] = mapped_column(String(50))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEvent(Base):
    """Who changed API access, and every refused API call. Never holds a secret or token.

    Refusals (refused API calls, failed logins) are aggregated (``audit.RefusalLog``): one row
    per event, company, key, client address, reason, detail and minute, ``count`` times."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_company_created", "company_id", "created_at"),
        # The upsert target of aggregated rows; null (never equal) for every other event.
        Index("uq_audit_events_aggregate_key", "aggregate_key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(40))
    # Null for a refused call whose key matched no company (missing, unknown, malformed).
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id"))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    key_prefix: Mapped[str] = mapped_column(String(24), default="")
    client_address: Mapped[str] = mapped_column(String(64), default="")
    path: Mapped[str] = mapped_column(String(400), default="")
    reason: Mapped[str] = mapped_column(String(40), default="")
    detail: Mapped[str] = mapped_column(String(400), default="")
    # First occurrence; for an aggregated row, of the first of its ``count`` refusals.
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    # sha256 hex of what an aggregated row stands for (``audit.RefusalLog``).
    aggregate_key: Mapped[str | None] = mapped_column(String(64))


class UserSession(Base):
    """A logged-in portal session. The browser's cookie holds a random id; only an HMAC digest
    of it is stored, so a copy of this table logs nobody in (see ``access.sessions``)."""

    __tablename__ = "portal_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Hex HMAC-SHA256 of the cookie's session id: the lookup column.
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # A digest of the password hash at login: a password changed by any path ends the session.
    password_binding: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(200), default="")
    # One-time form nonces already accepted (space-separated, newest last): a reloaded form
    # that revealed a secret cannot reveal or create again.
    used_nonces: Mapped[str] = mapped_column(Text, default="")
    # How the session began: "password" or "oidc" (single sign-on: logout then also ends the
    # provider's session where it offers RP-initiated logout).
    signed_in_with: Mapped[str] = mapped_column(String(10), default="password",
                                                server_default="password")
