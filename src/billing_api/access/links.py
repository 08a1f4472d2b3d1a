"""Signed download links for the portal's endpoint explorer.

A link carries ``token=<key id>.<expiry unix seconds>.<signature>``; the signature is an
HMAC-SHA256, under a key derived from the settings' secret, of the key id, the expiry, the
exact path and the canonical query *without* the token (pairs sorted, re-encoded). Changing
any parameter, the path or the expiry breaks it. Expiry is at most 15 minutes away.

The token only names a key: on use the key row is loaded as for a header request, so revoking
the key or disabling the API kills every link made with it, and the whitelist still applies.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Iterable
from urllib.parse import urlencode

from billing_api.access.errors import BadToken
from billing_api.db import utcnow
from billing_api.settings import Settings

MAX_LIFETIME = dt.timedelta(minutes=15)
TOKEN_PARAM = "token"  # noqa: S105 - the query parameter's name, not a secret


def _signing_key(settings: Settings) -> bytes:
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"billing-api/download-link/v1", hashlib.sha256).digest()


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The query as signed: every pair but ``token``, sorted, percent-encoded."""
    return urlencode(sorted((k, v) for k, v in params if k != TOKEN_PARAM))


def _signature(settings: Settings, key_id: int, expires: int, path: str, query: str) -> str:
    message = f"{key_id}\n{expires}\n{path}\n{query}".encode()
    mac = hmac.new(_signing_key(settings), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign_link(settings: Settings, key_id: int, path: str, params: Iterable[tuple[str, str]],
              *, lifetime: dt.timedelta = MAX_LIFETIME, now: dt.datetime | None = None) -> str:
    """A token for ``path`` with exactly ``params``; raises ``ValueError`` past 15 minutes."""
    if lifetime > MAX_LIFETIME or lifetime <= dt.timedelta(0):
        raise ValueError("a download link lives at most 15 minutes")
    expires = int(((now or utcnow()) + lifetime).timestamp())
    signature = _signature(settings, key_id, expires, path, canonical_query(params))
    return f"{key_id}.{expires}.{signature}"


def signed_url(settings: Settings, key_id: int, path: str, params: list[tuple[str, str]],
               **kw: dt.timedelta | dt.datetime) -> str:
    """``path?query&token=…``, ready for a browser."""
    token = sign_link(settings, key_id, path, params, **kw)  # type: ignore[arg-type]
    return f"{path}?{urlencode([*params, (TOKEN_PARAM, token)])}"


def verify_link(settings: Settings, token: str, path: str, params: Iterable[tuple[str, str]],
                *, now: dt.datetime | None = None) -> int:
    """The key id a valid token names. Raises ``BadToken`` when it is malformed, tampered,
    made for another path or query, or expired."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise BadToken("the download link's token is malformed: create a new link")
    key_id, expires = int(parts[0]), int(parts[1])
    expected = _signature(settings, key_id, expires, path, canonical_query(params))
    if not hmac.compare_digest(expected, parts[2]):
        raise BadToken("the download link's token does not match this request: create a new link")
    current = (now or utcnow()).timestamp()
    if expires <= current:
        raise BadToken("the download link has expired: create a new link")
    if expires > current + MAX_LIFETIME.total_seconds() + 60:
        raise BadToken("the download link's expiry is too far away: create a new link")
    return key_id
