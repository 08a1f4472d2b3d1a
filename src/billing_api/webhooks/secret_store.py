"""Signing secrets: made once, shown once, kept encrypted so that the server can sign.

A Standard Webhooks secret is ``whsec_`` and base64 of random bytes. Unlike an API key it
cannot be stored as a digest (the server needs it to sign every message), so it is encrypted
with AES-256-GCM under a key derived from ``BILLING_API_SECRET_KEY``; a copy of the database
alone does not reveal it. During a secret rotation the earlier secrets still decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from billing_api.settings import Settings

PREFIX = "whsec_"
SECRET_BYTES = 32
_FORMAT = "v1:"
_NONCE_BYTES = 12
_AAD = b"billing-api/webhook-secret"


class UnreadableSecret(Exception):
    """The stored secret was encrypted under a server secret this process does not have."""


def generate() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def key_bytes(secret: str) -> bytes:
    """The HMAC key a ``whsec_`` secret stands for."""
    return base64.b64decode(secret.removeprefix(PREFIX))


def _key(server_secret: str) -> bytes:
    # Derived, so the encryption key differs from the key pepper and the link-signing key.
    return hmac.new(server_secret.encode(), b"billing-api/webhook-secret-key/v1",
                    hashlib.sha256).digest()


def encrypt(settings: Settings, secret: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = AESGCM(_key(settings.secret_key.get_secret_value())).encrypt(
        nonce, secret.encode(), _AAD)
    return _FORMAT + base64.b64encode(nonce + sealed).decode()


def decrypt(settings: Settings, stored: str) -> str:
    """The secret; raises ``UnreadableSecret`` when no known server secret opens it."""
    if not stored.startswith(_FORMAT):
        raise UnreadableSecret("unknown format")
    raw = base64.b64decode(stored.removeprefix(_FORMAT))
    nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
    for server_secret in (settings.secret_key.get_secret_value(), *settings.old_secrets()):
        try:
            return AESGCM(_key(server_secret)).decrypt(nonce, sealed, _AAD).decode()
        except InvalidTag:
            continue
    raise UnreadableSecret("encrypted under a server secret that is no longer configured")
