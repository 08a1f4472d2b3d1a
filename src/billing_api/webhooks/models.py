"""Webhook endpoints, the outbox of messages to deliver, and the log of delivery attempts."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from billing_api.db import Base, UTCDateTime, utcnow
from billing_api.environments import environment_check, environment_column


class WebhookEndpoint(Base):
    """A URL a partner's Account Administrator registered for one environment. The signing
    secret is stored encrypted (``webhooks/secrets.py``): the server must sign with it."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (environment_check(),)

    id: Mapped[int] = mapped_column(primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id"), index=True)
    environment: Mapped[str] = environment_column()
    url: Mapped[str] = mapped_column(String(2000))
    secret_encrypted: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    # Set when deliveries kept failing for the whole retry window (or by hand): nothing is
    # sent to a disabled endpoint until it is enabled again; the reason is shown in the portal.
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    disabled_reason: Mapped[str] = mapped_column(String(400), default="")


class WebhookMessage(Base):
    """One event for one endpoint: the outbox row. ``body`` is the exact JSON that is signed
    and sent on every attempt; ``msg_id`` stays the same across retries and resends, so a
    receiver can de-duplicate (delivery is at least once)."""

    __tablename__ = "webhook_messages"
    __table_args__ = (
        # The delivery loop's query: due, undelivered messages.
        Index("ix_webhook_messages_due", "delivered_at", "failed_at", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True)
    msg_id: Mapped[str] = mapped_column(String(40), unique=True)
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Retries end this long (BILLING_API_WEBHOOK_RETRY_SECONDS) after this: the message's
    # creation, or the last resend / re-enabling of its endpoint.
    retry_since: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The lease of the one delivery worker that holds the message (webhooks/delivery.py): a
    # worker killed mid-delivery leaves it to expire, and the message is sent again.
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_token: Mapped[str | None] = mapped_column(String(40), nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Given up after the retry window (the endpoint is then disabled).
    failed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookAttempt(Base):
    """One try to deliver a message: when, how long, the HTTP status or the error."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_messages.id", ondelete="CASCADE"), index=True)
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str] = mapped_column(String(400), default="")
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
