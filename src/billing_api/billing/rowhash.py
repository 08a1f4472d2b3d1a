"""``InvoiceRowHash``: the stable identity of a billed charge, shared by its purchase line and
its customer line, and equal across re-runs of the same billing period."""

from __future__ import annotations

import datetime as dt
import hashlib


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
    # str(uuid.UUID(bytes=digest[:16], version=4)), spelled out: the UUID object cost more
    # than the hash, once per line. Version 4 sets the 13th hex digit to 4 and the two top bits
    # of the 17th to 10 (the RFC 4122 variant).
    h = hashlib.sha256(f"{kind}:{hash_hex}".encode()).digest()[:16].hex()
    variant = _VARIANT[h[16]]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}
