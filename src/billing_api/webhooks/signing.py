"""Standard Webhooks signatures: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from billing_api.webhooks.secret_store import key_bytes


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(key_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three headers of one attempt (the timestamp is the attempt's, not the event's:
    receivers refuse old timestamps to stop replays)."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
