"""The outbox: events written in the transaction that caused them, and resends.

``invoices_created`` runs at the end of a billing run, inside its transaction: the message
exists if and only if the run committed, and the delivery loop (webhooks/delivery.py) sends
it afterwards. A run that produced no invoice writes nothing (partners would otherwise get a
message per environment every month saying nothing happened).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_api.access.models import Company, User
from billing_api.billing.models import BillingRun, Invoice
from billing_api.db import utcnow
from billing_api.errors import Conflict, NotFound
from billing_api.sync import cursor
from billing_api.webhooks.endpoints import require_manager
from billing_api.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from billing_api.webhooks.signing import new_message_id

INVOICES_CREATED = "invoices.created"
KINDS = ("purchase", "customer")
API_VERSION = "v4"


def _timestamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Run(NamedTuple):
    partner_id: int
    environment: str
    period: str
    invoice_date: dt.date
    invoice_count: int
    line_count: int


def _run(session: Session, run_id: int) -> _Run:
    # Columns, not the ORM object: the run's counts were written by an UPDATE statement.
    row = session.execute(select(
        BillingRun.partner_id, BillingRun.environment, BillingRun.period,
        BillingRun.invoice_date, BillingRun.invoice_count, BillingRun.line_count,
    ).where(BillingRun.id == run_id)).one()
    return _Run(*row)


def invoices_created_payload(session: Session, run_id: int, position: int) -> dict[str, object]:
    """The event of one billing run: what was billed and where to fetch it."""
    run = _run(session, run_id)
    counts: dict[str, int] = {kind: int(count) for kind, count in session.execute(
        select(Invoice.kind, func.count()).where(Invoice.billing_run_id == run_id)
        .group_by(Invoice.kind))}
    since = cursor.encode(run.partner_id, run.environment, position - 1)
    return {
        "type": INVOICES_CREATED,
        "timestamp": _timestamp(utcnow()),
        "data": {
            "partner_company_id": run.partner_id,
            "environment": run.environment,
            "period": run.period,
            "invoice_date": run.invoice_date.isoformat(),
            "run_position": position,
            "invoices": {kind: int(counts.get(kind, 0)) for kind in KINDS},
            "lines": run.line_count,
            "cursor": since,
            "links": {
                "invoices": f"/api/{API_VERSION}/invoices?since={since}",
                "customerinvoices": f"/api/{API_VERSION}/customerinvoices?since={since}",
            },
        },
    }


def invoices_created(session: Session, run_id: int | None, position: int | None) -> int:
    """Write the run's ``invoices.created`` message for each active endpoint of its partner
    and environment; returns how many. Call it in the run's transaction, after its position
    is assigned. Nothing for a run without invoices."""
    if run_id is None or position is None:
        return 0
    run = _run(session, run_id)
    if not run.invoice_count:
        return 0
    endpoints = session.scalars(select(WebhookEndpoint.id).where(
        WebhookEndpoint.company_id == run.partner_id,
        WebhookEndpoint.environment == run.environment,
        WebhookEndpoint.disabled_at.is_(None))).all()
    if not endpoints:
        return 0
    body = json.dumps(invoices_created_payload(session, run_id, position),
                      separators=(",", ":"), ensure_ascii=False)
    now = utcnow()
    session.add_all(WebhookMessage(endpoint_id=endpoint_id, msg_id=new_message_id(),
                                   event_type=INVOICES_CREATED, body=body, created_at=now,
                                   next_attempt_at=now, retry_since=now, attempts=0)
                    for endpoint_id in endpoints)
    session.flush()
    return len(endpoints)


@dataclass(frozen=True)
class LogEntry:
    message: WebhookMessage
    attempts: list[WebhookAttempt]
    status: str  # "delivered", "pending", "retrying", "failed"


def message_status(message: WebhookMessage) -> str:
    if message.delivered_at is not None:
        return "delivered"
    if message.failed_at is not None:
        return "failed"
    return "retrying" if message.attempts else "pending"


def delivery_log(session: Session, endpoint: WebhookEndpoint, limit: int = 50) -> list[LogEntry]:
    """The endpoint's newest messages, each with its attempts (newest first)."""
    messages = list(session.scalars(select(WebhookMessage).where(
        WebhookMessage.endpoint_id == endpoint.id).order_by(WebhookMessage.id.desc())
        .limit(limit)))
    attempts: dict[int, list[WebhookAttempt]] = {m.id: [] for m in messages}
    if messages:
        for attempt in session.scalars(select(WebhookAttempt).where(
                WebhookAttempt.message_id.in_(attempts)).order_by(WebhookAttempt.id.desc())):
            attempts[attempt.message_id].append(attempt)
    return [LogEntry(m, attempts[m.id], message_status(m)) for m in messages]


def own_message(session: Session, company: Company, msg_id: str) -> WebhookMessage:
    message = session.scalar(select(WebhookMessage).join(WebhookEndpoint).where(
        WebhookMessage.msg_id == msg_id, WebhookEndpoint.company_id == company.id))
    if message is None:
        # The id is not echoed: an unknown one and another partner's look the same.
        raise NotFound(f"{company.name} has no such webhook message",
                       code="webhook_message_not_found")
    return message


def resend(session: Session, company: Company, message: WebhookMessage, *,
           actor: User | None) -> None:
    """Send the message again, with the same ``webhook-id`` (the receiver may have it
    already), now and with a fresh retry window. Raises ``Conflict`` when its endpoint is
    disabled (enable it first)."""
    require_manager(company, actor)
    endpoint = session.get_one(WebhookEndpoint, message.endpoint_id)
    if endpoint.disabled_at is not None:
        raise Conflict("the endpoint is disabled: enable it first", code="webhook_disabled")
    now = utcnow()
    message.delivered_at = None
    message.failed_at = None
    message.next_attempt_at = now
    message.retry_since = now
    session.flush()
