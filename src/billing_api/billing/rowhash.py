"""``InvoiceRowHash``: the stable identity of a billed charge, shared by its purchase line and
its customer line, and equal across re-runs of the same billing period."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid


def row_hash(
    *,
    environment: str,
    subscription_id: int,
    resource_rate_id: int,
    charge_type: str,
    start: dt.date,
    end: dt.date,
    rate_period_id: int | None,
    source: str = "",
) -> str:
    """SHA-256 over the line's identity. ``source`` tells apart charges of the same kind on the
    same days (e.g. two amount changes effective the same day: ``change:17``)."""
    identity = "|".join(
        (
            environment,
            str(subscription_id),
            str(resource_rate_id),
            charge_type,
            start.isoformat(),
            end.isoformat(),
            "" if rate_period_id is None else str(rate_period_id),
            source,
        )
    )
    return hashlib.sha256(identity.encode()).hexdigest()


def line_uid(kind: str, hash_hex: str) -> str:
    """A UUID-formatted id per line (purchase and customer lines differ), stable across runs."""
    digest = hashlib.sha256(f"{kind}:{hash_hex}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))
