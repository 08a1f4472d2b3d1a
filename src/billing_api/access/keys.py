"""API keys: format, digests, creation, listing, revocation, lookup.

A secret looks like ``nwb_live_<43 base62 chars><6 base62 chars>``:

* ``nwb_live_`` (production) or ``nwb_test_`` (sandbox) so that people and secret scanners
  recognise it, and a key pasted into the wrong tool is obviously a production one;
* 43 base62 characters encoding 32 bytes (256 bits) from ``secrets``;
* a CRC32 of everything before it, as 6 base62 characters, so a mistyped or truncated key is
  told apart (``malformed_key``) from a well-formed one nobody issued (``unknown_key``).

The database stores an HMAC-SHA256 of the whole secret under a pepper derived from the
settings' secret (plus the pepper id, for rotation) and a short display prefix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import zlib
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from billing_api.access import audit, permissions
from billing_api.access.models import ApiKey, Company, User
from billing_api.db import utcnow
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput, NotFound
from billing_api.settings import Settings

SCHEME = {Environment.PRODUCTION: "nwb_live_", Environment.SANDBOX: "nwb_test_"}
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BODY_LEN = 43  # 62**43 > 2**256
_CHECK_LEN = 6  # 62**6 > 2**32
SECRET_LEN = 9 + _BODY_LEN + _CHECK_LEN
_DISPLAY_BODY_CHARS = 6
# Writing last_used_at at most once a minute per key keeps the hot path read-only.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        chars.append(_ALPHABET[rest])
    return "".join(reversed(chars))


def _checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode("ascii")), _CHECK_LEN)


def generate_secret(environment: Environment) -> str:
    """A new key secret for ``environment`` (see the module docstring for its shape)."""
    head = SCHEME[environment] + _base62(int.from_bytes(secrets.token_bytes(32), "big"), _BODY_LEN)
    return head + _checksum(head)


@dataclass(frozen=True)
class ParsedKey:
    environment: Environment
    display_prefix: str


def parse_secret(text: str) -> ParsedKey | None:
    """The key's environment and display prefix, or None when it is not a well-formed key."""
    if len(text) != SECRET_LEN or not text.isascii():
        return None
    environment = next((env for env, scheme in SCHEME.items() if text.startswith(scheme)), None)
    body = text[9:]
    if environment is None or any(c not in _ALPHABET for c in body):
        return None
    head, check = text[:-_CHECK_LEN], text[-_CHECK_LEN:]
    if not hmac.compare_digest(_checksum(head), check):
        return None
    return ParsedKey(environment, text[: 9 + _DISPLAY_BODY_CHARS])


def _pepper(server_secret: str) -> bytes:
    # Derived rather than used directly, so the key pepper and the link-signing key differ.
    return hmac.new(server_secret.encode(), b"billing-api/api-key-pepper/v1",
                    hashlib.sha256).digest()


def _digest(server_secret: str, secret: str) -> str:
    return hmac.new(_pepper(server_secret), secret[:256].encode("utf-8", "replace"),
                    hashlib.sha256).hexdigest()


def digest(settings: Settings, secret: str) -> str:
    """Hex HMAC-SHA256 of ``secret``; bounded input so an absurd header costs no more."""
    return _digest(settings.secret_key.get_secret_value(), secret)


def old_digests(settings: Settings, secret: str) -> list[str]:
    """``secret``'s digests under the earlier secrets still accepted during a rotation."""
    return [_digest(old, secret) for old in settings.old_secrets()]


def move_to_current_pepper(session: Session, settings: Settings, key_id: int,
                           secret: str) -> None:
    """Re-digest a key found under an earlier secret, so it outlives the rotation's overlap.
    The caller has just matched ``secret`` to ``key_id``."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id)
                    .values(digest=digest(settings, secret), pepper_id=settings.pepper_id))


def expiry_from_date(day: dt.date, timezone: str) -> dt.datetime:
    """A key expiring on ``day`` works until the end of that day in the operator's timezone."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), ZoneInfo(timezone))


def create_key(session: Session, settings: Settings, company: Company, *,
               environment: Environment, name: str, expires_on: dt.date | None = None,
               actor: User | None = None) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret (shown once, never stored).

    ``actor`` None is the distributor's operator; a user needs API permission.
    Raises ``NoApiPermission``, ``InvalidInput`` (empty name, past expiry)."""
    permissions.require_api_permission(company, actor)
    name = name.strip()
    if not name:
        raise InvalidInput("a key needs a name", field="name")
    expires_at = expiry_from_date(expires_on, settings.timezone) if expires_on else None
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(f"expiry date {expires_on} is in the past", field="expires")
    secret = generate_secret(environment)
    parsed = parse_secret(secret)
    assert parsed is not None
    key = ApiKey(company_id=company.id, created_by_user_id=actor.id if actor else None, name=name,
                 environment=environment.value, display_prefix=parsed.display_prefix,
                 digest=digest(settings, secret), pepper_id=settings.pepper_id,
                 expires_at=expires_at)
    session.add(key)
    session.flush()
    audit.record(session, audit.EventType.KEY_CREATED, company_id=company.id,
                 actor_user_id=actor.id if actor else None, key_id=key.id,
                 key_prefix=key.display_prefix, detail=f"{environment.value} key {name!r}")
    return key, secret


def key_status(key: ApiKey, now: dt.datetime | None = None) -> str:
    return status_of(key.revoked_at, key.expires_at, now)


def status_of(revoked_at: dt.datetime | None, expires_at: dt.datetime | None,
              now: dt.datetime | None = None) -> str:
    """``revoked``, ``expired`` or ``active``."""
    if revoked_at is not None:
        return "revoked"
    if expires_at is not None and expires_at <= (now or utcnow()):
        return "expired"
    return "active"


def list_keys(session: Session, company: Company) -> list[ApiKey]:
    return list(session.scalars(
        select(ApiKey).where(ApiKey.company_id == company.id).order_by(ApiKey.id)))


def revoke_key(session: Session, company: Company, key_id: int, *,
               actor: User | None = None) -> ApiKey:
    """Revoke one of the company's keys. Raises ``NotFound`` (also for another company's key),
    ``Conflict`` when it is revoked already, ``NoApiPermission``."""
    permissions.require_api_permission(company, actor)
    key = session.get(ApiKey, key_id)
    if key is None or key.company_id != company.id:
        raise NotFound(f"{company.name} has no key {key_id}", code="key_not_found")
    if key.revoked_at is not None:
        raise Conflict(f"key {key_id} is revoked already", code="key_revoked_already")
    key.revoked_at = utcnow()
    session.flush()
    audit.record(session, audit.EventType.KEY_REVOKED, company_id=company.id,
                 actor_user_id=actor.id if actor else None, key_id=key.id,
                 key_prefix=key.display_prefix)
    return key


def last_use_due(last_used_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Whether ``last_used_at`` is a minute old and should move to ``now``: one write per
    key-minute."""
    return last_used_at is None or now - last_used_at >= LAST_USED_RESOLUTION


class LastUseClaims:
    """Which keys this process has stamped within the last minute.

    Without it, every request that read the key before a stamp committed would write one
    too: at each minute's turn all of a busy key's requests in flight queued for the write
    lock (on SQLite one at a time, a second's wait for the last of 64). Memory: one entry
    per key used in the last minute, pruned as it grows."""

    def __init__(self, max_keys: int = 10_000) -> None:
        self._claimed: dict[int, dt.datetime] = {}
        self._max_keys = max_keys

    def claim(self, key_id: int, now: dt.datetime) -> bool:
        """True for the first caller per key and minute: it writes the stamp."""
        if not last_use_due(self._claimed.get(key_id), now):
            return False
        if len(self._claimed) >= self._max_keys:
            self._claimed = {k: at for k, at in self._claimed.items()
                             if not last_use_due(at, now)}
        self._claimed[key_id] = now
        return True
