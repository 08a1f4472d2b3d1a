"""Signed download links for the portal's endpoint explorer.

A link carries ``token=<key reference>.<expiry unix seconds>.<signature>``; the signature is
an HMAC-SHA256, under a key derived from the settings' secret, of the reference, the expiry,
the exact path and the canonical query *without* the token (pairs sorted, re-encoded).
Changing any parameter, the path or the expiry breaks it. Expiry is at most 15 minutes away.

The reference is the key's stored digest (base64url, 43 characters): 256 random-looking bits,
unique, indexed, and no help to anyone without the key or the secret. It replaced the key's
row id, which counts up from 1: with a guessable id, whoever learnt the signing secret could
mint a link for every key. Knowing a digest gives nothing: a header needs the key itself, a
link needs the secret.

The token only names a key: on use the key row is loaded as for a header request, so revoking
the key or disabling the API kills every link made with it, and the whitelist still applies.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import urlencode

from billing_api.access.errors import BadToken
from billing_api.db import utcnow
from billing_api.settings import Settings

MAX_LIFETIME = dt.timedelta(minutes=15)
TOKEN_PARAM = "token"  # noqa: S105 - the query parameter's name, not a secret
_REFERENCE = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding


def _signing_key(settings: Settings) -> bytes:
    secret = settings.secret_key.get_secret_value().encode()
    # v2: tokens name the key by digest; a v1 token (by row id) never verifies again.
    return hmac.new(secret, b"billing-api/download-link/v2", hashlib.sha256).digest()


def key_reference(key_digest: str) -> str:
    """How a token names a key: its hex digest as 43 base64url characters."""
    return base64.urlsafe_b64encode(bytes.fromhex(key_digest)).rstrip(b"=").decode()


def _digest_of(reference: str) -> str | None:
    if not _REFERENCE.fullmatch(reference):
        return None
    try:
        return base64.urlsafe_b64decode(reference + "=").hex()
    except (binascii.Error, ValueError):
        return None


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """The query as signed: every pair but ``token``, sorted, percent-encoded."""
    return urlencode(sorted((k, v) for k, v in params if k != TOKEN_PARAM))


def _signature(settings: Settings, reference: str, expires: int, path: str, query: str) -> str:
    message = f"{reference}\n{expires}\n{path}\n{query}".encode()
    mac = hmac.new(_signing_key(settings), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def sign_link(settings: Settings, key_digest: str, path: str,
              params: Iterable[tuple[str, str]], *, lifetime: dt.timedelta = MAX_LIFETIME,
              now: dt.datetime | None = None) -> str:
    """A token for the key with digest ``key_digest`` (``ApiKey.digest``), for ``path`` with
    exactly ``params``; raises ``ValueError`` past 15 minutes."""
    if lifetime > MAX_LIFETIME or lifetime <= dt.timedelta(0):
        raise ValueError("a download link lives at most 15 minutes")
    expires = int(((now or utcnow()) + lifetime).timestamp())
    reference = key_reference(key_digest)
    signature = _signature(settings, reference, expires, path, canonical_query(params))
    return f"{reference}.{expires}.{signature}"


def signed_url(settings: Settings, key_digest: str, path: str, params: list[tuple[str, str]],
               **kw: dt.timedelta | dt.datetime) -> str:
    """``path?query&token=…``, ready for a browser."""
    token = sign_link(settings, key_digest, path, params, **kw)  # type: ignore[arg-type]
    return f"{path}?{urlencode([*params, (TOKEN_PARAM, token)])}"


def verify_link(settings: Settings, token: str, path: str, params: Iterable[tuple[str, str]],
                *, now: dt.datetime | None = None) -> str:
    """The digest of the key a valid token names (look it up with
    ``grants.grant_for_digest``). Raises ``BadToken`` when it is malformed, tampered, made
    for another path or query, or expired."""
    parts = token.split(".")
    key_digest = _digest_of(parts[0]) if len(parts) == 3 else None
    if key_digest is None or not (parts[1].isascii() and parts[1].isdigit()) \
            or len(parts[1]) > 12:
        raise BadToken("the download link's token is malformed: create a new link")
    reference, expires = parts[0], int(parts[1])
    expected = _signature(settings, reference, expires, path, canonical_query(params))
    if not hmac.compare_digest(expected.encode(), parts[2].encode("utf-8", "replace")):
        raise BadToken("the download link's token does not match this request: create a new link")
    current = (now or utcnow()).timestamp()
    if expires <= current:
        raise BadToken("the download link has expired: create a new link")
    if expires > current + MAX_LIFETIME.total_seconds() + 60:
        raise BadToken("the download link's expiry is too far away: create a new link")
    return key_digest
