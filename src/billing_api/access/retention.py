"""Audit log retention: old events are deleted by ``billing-api audit prune``.

The audit table grows with every refused API call (an ERP misconfigured for a week writes a
row per attempt); a retention period bounds it. Nothing references audit rows, so deleting
them is a plain range delete on ``created_at``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from billing_api.access.models import AuditEvent


def prune_events(session: Session, *, before: dt.datetime, dry_run: bool = False) -> int:
    """Delete (or, with ``dry_run``, count) the audit events created before ``before``."""
    old = AuditEvent.created_at < before
    if dry_run:
        return int(session.scalar(select(func.count()).select_from(AuditEvent).where(old)) or 0)
    result = session.execute(delete(AuditEvent).where(old))
    return int(result.rowcount)  # type: ignore[attr-defined]
