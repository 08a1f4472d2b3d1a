"""Sync cursors: "every billing run of this partner and environment up to position N".

A cursor is opaque to clients: ``c1`` then base64url of the partner id, the environment and
the position, and a short checksum. It needs no secret, so it stays valid across servers,
restarts and secret rotations, and tampering gains nothing: every query is scoped to the
caller's key anyway, so an edited cursor can only name the caller's own runs (and one naming
another partner or environment, or with a broken checksum, is refused as malformed).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from billing_api.environments import Environment

PREFIX = "c1"
_ENVIRONMENTS = tuple(e.value for e in Environment)
_LAYOUT = struct.Struct(">QBQ")  # partner id, environment index, position
_CHECK = 4  # bytes of SHA-256: catches copy-and-paste damage, not an adversary


class InvalidCursor(ValueError):
    """The text is not a cursor this server made for this partner and environment."""


@dataclass(frozen=True)
class Cursor:
    partner_id: int
    environment: str
    position: int


def encode(partner_id: int, environment: str, position: int) -> str:
    body = _LAYOUT.pack(partner_id, _ENVIRONMENTS.index(environment), position)
    check = hashlib.sha256(body).digest()[:_CHECK]
    return PREFIX + base64.urlsafe_b64encode(body + check).rstrip(b"=").decode()


def decode(text: str, partner_id: int, environment: str) -> Cursor:
    """The cursor's position for this caller; raises ``InvalidCursor`` saying what is wrong."""
    if not text.startswith(PREFIX) or not text.isascii():
        raise InvalidCursor("not a cursor: use the X-Next-Cursor value of an earlier answer")
    raw = text[len(PREFIX):]
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCursor("the cursor is damaged: copy it again") from None
    body, check = data[:-_CHECK], data[-_CHECK:]
    if len(body) != _LAYOUT.size or hashlib.sha256(body).digest()[:_CHECK] != check:
        raise InvalidCursor("the cursor is damaged: copy it again")
    owner, env_index, position = _LAYOUT.unpack(body)
    if owner != partner_id or env_index >= len(_ENVIRONMENTS) \
            or _ENVIRONMENTS[env_index] != environment:
        raise InvalidCursor("the cursor belongs to another account or environment: "
                            "use a cursor returned to this key")
    return Cursor(owner, environment, position)
