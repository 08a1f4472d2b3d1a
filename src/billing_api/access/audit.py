"""The audit log: who changed API access, and every refused API call.

Rows carry a key's display prefix at most, never a secret or a link token: callers pass the
prefix, and ``record`` refuses a value that looks like a whole key (see ``redaction``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import AuditEvent, User
from billing_api.access.redaction import redact
from billing_api.db import transaction, utcnow


class EventType(StrEnum):
    API_ENABLED = "api_enabled"
    API_DISABLED = "api_disabled"
    PERMISSION_GRANTED = "permission_granted"
    PERMISSION_WITHDRAWN = "permission_withdrawn"
    USER_DEACTIVATED = "user_deactivated"
    KEY_CREATED = "key_created"
    KEY_REVOKED = "key_revoked"
    WHITELIST_ADDED = "whitelist_added"
    WHITELIST_REMOVED = "whitelist_removed"
    API_DENIED = "api_denied"
    LOGIN_FAILED = "login_failed"
    # A portal action refused to a logged-in user (not the Account Administrator, no API
    # permission, a form without its CSRF token).
    PORTAL_DENIED = "portal_denied"
    # The distributor's operator switched the API without the Administrator's password
    # (``billing-api api distributor-enable|disable --reason``): never shown as theirs.
    API_ENABLED_BY_DISTRIBUTOR = "api_enabled_by_distributor"
    API_DISABLED_BY_DISTRIBUTOR = "api_disabled_by_distributor"
    # A command run ``--as`` a user was refused: their password was wrong.
    CLI_DENIED = "cli_denied"


@dataclass(frozen=True)
class AuditRow:
    created_at: dt.datetime
    event_type: str
    actor_email: str | None
    client_address: str
    key_prefix: str
    path: str
    reason: str
    detail: str


def record(
    session: Session,
    event_type: EventType,
    *,
    company_id: int | None,
    actor_user_id: int | None = None,
    key_id: int | None = None,
    key_prefix: str = "",
    client_address: str = "",
    path: str = "",
    reason: str = "",
    detail: str = "",
) -> AuditEvent:
    """Add one audit row to the session's transaction and flush it."""
    event = AuditEvent(
        event_type=event_type.value, company_id=company_id, actor_user_id=actor_user_id,
        key_id=key_id, key_prefix=key_prefix[:24], client_address=client_address[:64],
        # Defence in depth: a path or detail should never hold a key, but if one slips in
        # (a key pasted into the URL), it is masked before it reaches the table.
        path=redact(path)[:400], reason=reason[:40], detail=redact(detail)[:400],
    )
    session.add(event)
    session.flush()
    return event


def record_in_own_transaction(factory: sessionmaker[Session], event_type: EventType,
                              **fields: object) -> None:
    """Record in a short transaction of its own, so the row survives the refused request."""
    with transaction(factory) as session:
        record(session, event_type, **fields)  # type: ignore[arg-type]


def list_events(session: Session, company_id: int, *,
                since: dt.datetime | None = None) -> list[AuditRow]:
    """The company's audit rows, newest first (``since`` inclusive)."""
    stmt = (
        select(AuditEvent, User.email)
        .outerjoin(User, User.id == AuditEvent.actor_user_id)
        .where(AuditEvent.company_id == company_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    )
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    return [
        AuditRow(e.created_at, e.event_type, email, e.client_address, e.key_prefix, e.path,
                 e.reason, e.detail)
        for e, email in session.execute(stmt).all()
    ]


def now() -> dt.datetime:
    return utcnow()
