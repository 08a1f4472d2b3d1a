"""Everything authenticating an API request needs about a key, read in one query.

The key row, its company's API switch and the company's whitelist come back together (one
row per whitelist entry): three ORM round trips per request were most of a small download's
time under load (bench/load.py). Nothing is cached between requests, so a revoked key, a
disabled API or a removed whitelist entry is refused by the very next request.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session

from billing_api.access import keys
from billing_api.access.models import ApiKey, Company, WhitelistEntry
from billing_api.compiled_query import AnySelect, CompiledQuery
from billing_api.settings import Settings


@dataclass(frozen=True, slots=True)
class KeyGrant:
    key_id: int
    company_id: int
    environment: str
    display_prefix: str
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    api_enabled: bool
    networks: tuple[str, ...]  # the company's whitelist, normalised CIDR text
    # Found under an earlier secret (BILLING_API_OLD_SECRET_KEYS): re-digest it on success.
    old_pepper: bool = False

    def status(self, now: dt.datetime | None = None) -> str:
        return keys.status_of(self.revoked_at, self.expires_at, now)


_COLUMNS = (
    ApiKey.id,
    ApiKey.company_id,
    ApiKey.environment,
    ApiKey.display_prefix,
    ApiKey.expires_at,
    ApiKey.revoked_at,
    ApiKey.last_used_at,
    Company.api_enabled,
    ApiKey.digest,
    WhitelistEntry.network,
)


def _statement(condition: Any) -> AnySelect:
    return (
        select(*_COLUMNS)
        .join(Company, Company.id == ApiKey.company_id)
        .outerjoin(WhitelistEntry, WhitelistEntry.company_id == ApiKey.company_id)
        .where(condition)
        .order_by(WhitelistEntry.id)
    )


# Built and compiled once: constructing the statement cost more than running it, and
# SQLAlchemy's execution path more than the driver's (profiled; compiled_query.py).
_BY_DIGEST = CompiledQuery(_statement(ApiKey.digest == bindparam("wanted")))
_BY_ID = CompiledQuery(_statement(ApiKey.id == bindparam("wanted")))


def _grant(session: Session | Connection, query: CompiledQuery, wanted: Any
           ) -> tuple[KeyGrant, str] | None:
    # On the given connection (a session's, in its transaction), without the ORM: no entities.
    connection = session.connection() if isinstance(session, Session) else session
    rows = query.all(connection, {"wanted": wanted})
    if not rows:
        return None
    key_id, company_id, environment, prefix, expires, revoked, used, enabled, digest, _ = rows[0]
    networks = tuple(row[-1] for row in rows if row[-1] is not None)
    grant = KeyGrant(key_id, company_id, environment, prefix, expires, revoked, used,
                     bool(enabled), networks)
    return grant, digest


def grant_for_secret(session: Session | Connection, settings: Settings, secret: str
                     ) -> KeyGrant | None:
    """The grant of the key whose digest matches ``secret``, or None. Always computes the
    digest and queries, so a malformed or unknown key costs what a valid one does."""
    wanted = keys.digest(settings, secret)
    found = _grant(session, _BY_DIGEST, wanted)
    # The index found it by equality; the constant-time compare is the habit that stays safe
    # if the lookup ever changes (prefix search, cache).
    if found is not None and hmac.compare_digest(found[1], wanted):
        return found[0]
    # During a secret rotation, a key not yet used since is found under an earlier secret.
    for old in keys.old_digests(settings, secret):
        found = _grant(session, _BY_DIGEST, old)
        if found is not None and hmac.compare_digest(found[1], old):
            return replace(found[0], old_pepper=True)
    return None


def grant_for_key_id(session: Session | Connection, key_id: int) -> KeyGrant | None:
    """The grant of key ``key_id``, or None."""
    found = _grant(session, _BY_ID, key_id)
    return found[0] if found is not None else None


def grant_for_digest(session: Session | Connection, key_digest: str) -> KeyGrant | None:
    """The grant of the key whose stored digest is ``key_digest`` (a verified download link
    names it so), or None."""
    found = _grant(session, _BY_DIGEST, key_digest)
    return found[0] if found is not None else None
