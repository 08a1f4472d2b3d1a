"""Verifying webhooks signed per the Standard Webhooks specification (standardwebhooks.com).

The server signs ``{webhook-id}.{webhook-timestamp}.{body}`` with HMAC-SHA256 under the
endpoint's secret (``whsec_`` + base64, printed once by ``billing-api webhooks add``) and
sends ``webhook-signature: v1,<base64>`` (several, space-separated, while a secret rotates).
Verify the raw body before parsing it; a timestamp more than ``tolerance`` seconds away is
refused, so a captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

TOLERANCE_SECONDS = 5 * 60
SECRET_PREFIX = "whsec_"  # noqa: S105  (the prefix, not a secret)


class WebhookVerificationError(Exception):
    """The request is not a genuine, fresh webhook of the holder of the secret."""


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:
        raise ValueError("the secret is not whsec_ followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for a message (for tests and relays)."""
    content = msg_id.encode() + b"." + str(timestamp).encode() + b"." + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, *,
           tolerance: int = TOLERANCE_SECONDS, now: float | None = None) -> Any:
    """The webhook's JSON payload (numbers as ``Decimal``) once its signature and timestamp
    check out; raises ``WebhookVerificationError`` otherwise. ``headers`` are looked up in
    lower case, as every HTTP framework allows."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or "
                                       "webhook-signature")
    if not stamp.isascii() or not stamp.isdigit():
        raise WebhookVerificationError("webhook-timestamp is not a Unix time")
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or in the future")
    expected = sign(secret, msg_id, int(stamp), body).split(",", 1)[1]
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return json.loads(body, parse_float=Decimal)
    raise WebhookVerificationError("no signature matches")
