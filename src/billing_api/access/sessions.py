"""Server-side portal sessions: started at login, ended by logout, the timeouts, a password
change, deactivation, or the person themselves ("sign out everywhere", the sessions page).

The browser's cookie names a session by a random 256-bit id; the table holds only
HMAC-SHA256 of it under a key derived from the settings' secret (its own label), so neither a
copy of the table nor a backup logs anybody in. A session is valid while its row exists and

* it saw a request in the last ``portal_session_idle_seconds`` (``last_seen_at``, written at
  most once a minute, so a page view rarely writes), and
* it began less than ``portal_session_max_seconds`` ago, whatever happens, and
* the user's password hash is the one it was started with (``password_binding``: a password
  changed by any path, even straight in the database, ends it).

Ending a session deletes its row: the cookie that named it is then worth nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from billing_api.access.models import User, UserSession
from billing_api.db import utcnow
from billing_api.errors import NotFound
from billing_api.settings import Settings

TOKEN_BYTES = 32
NONCES_KEPT = 20
NONCE = re.compile(r"[A-Za-z0-9_-]{8,64}")
USER_AGENT_MAX = 200
# ``last_seen_at`` is rewritten when older than this (or a tenth of the idle timeout).
TOUCH_SECONDS = 60.0


class SessionNotFound(NotFound):
    code = "session_not_found"


def _key(settings: Settings, label: bytes) -> bytes:
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"billing-api/portal-session/" + label, hashlib.sha256).digest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(settings: Settings, token: str) -> str:
    """What the table stores for a session id: HMAC-SHA256 in hex."""
    return hmac.new(_key(settings, b"id/v1"), token.encode(), hashlib.sha256).hexdigest()


def password_binding(settings: Settings, password_hash: str) -> str:
    """A digest of the password hash: a new password ends every session started before it."""
    return hmac.new(_key(settings, b"bind/v1"), password_hash.encode(),
                    hashlib.sha256).hexdigest()


def is_expired(settings: Settings, created_at: dt.datetime, last_seen_at: dt.datetime,
               now: dt.datetime | None = None) -> bool:
    current = now or utcnow()
    idle = dt.timedelta(seconds=settings.portal_session_idle_seconds)
    lifetime = dt.timedelta(seconds=settings.portal_session_max_seconds)
    return current - last_seen_at >= idle or current - created_at >= lifetime \
        or created_at > current + dt.timedelta(minutes=5)


def needs_touch(settings: Settings, last_seen_at: dt.datetime, now: dt.datetime) -> bool:
    every = min(TOUCH_SECONDS, settings.portal_session_idle_seconds / 10)
    return (now - last_seen_at).total_seconds() >= every


def prune_expired(session: Session, settings: Settings, now: dt.datetime | None = None) -> int:
    """Delete every expired session (of everybody); returns how many."""
    current = now or utcnow()
    result = session.execute(delete(UserSession).where(or_(
        UserSession.last_seen_at <= current - dt.timedelta(
            seconds=settings.portal_session_idle_seconds),
        UserSession.created_at <= current - dt.timedelta(
            seconds=settings.portal_session_max_seconds))))
    return int(getattr(result, "rowcount", 0) or 0)


def start(session: Session, settings: Settings, user: User, *, client_address: str,
          user_agent: str, signed_in_with: str = "password") -> tuple[str, UserSession]:
    """A new session for ``user``: returns the id for the cookie (stored nowhere) and its row.
    Expired rows of everybody are deleted on the way, so the table holds live sessions only.
    ``signed_in_with``: "password", or "oidc" for single sign-on."""
    now = utcnow()
    prune_expired(session, settings, now)
    token = new_token()
    record = UserSession(token_digest=token_digest(settings, token), user_id=user.id,
                         password_binding=password_binding(settings, user.password_hash),
                         created_at=now, last_seen_at=now, client_address=client_address[:64],
                         user_agent=user_agent[:USER_AGENT_MAX], signed_in_with=signed_in_with)
    session.add(record)
    session.flush()
    return token, record


def lookup(session: Session, settings: Settings, token: str) -> UserSession | None:
    """The row a cookie's session id names, expired or not; None when there is none."""
    if not token:
        return None
    wanted = token_digest(settings, token)
    record = session.scalars(select(UserSession).where(
        UserSession.token_digest == wanted)).one_or_none()
    if record is None or not hmac.compare_digest(record.token_digest, wanted):
        return None
    return record


def touch(session: Session, record_id: int, *, client_address: str,
          now: dt.datetime | None = None) -> None:
    session.execute(update(UserSession).where(UserSession.id == record_id).values(
        last_seen_at=now or utcnow(), client_address=client_address[:64]))


def end(session: Session, record_id: int) -> None:
    session.execute(delete(UserSession).where(UserSession.id == record_id))


def end_all(session: Session, user_id: int, *, keep: int | None = None) -> int:
    """End every session of ``user_id`` (but ``keep``, when given); returns how many ended."""
    stmt = delete(UserSession).where(UserSession.user_id == user_id)
    if keep is not None:
        stmt = stmt.where(UserSession.id != keep)
    result = session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)


def list_active(session: Session, settings: Settings, user_id: int) -> list[UserSession]:
    """The user's live sessions, the most recently used first."""
    now = utcnow()
    rows = session.scalars(select(UserSession).where(UserSession.user_id == user_id)
                           .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc()))
    return [r for r in rows if not is_expired(settings, r.created_at, r.last_seen_at, now)]


def own_session(session: Session, user_id: int, session_id: int) -> UserSession:
    """The user's session ``session_id``. Raises ``SessionNotFound`` for anybody else's (the
    same answer as for one that does not exist)."""
    record = session.get(UserSession, session_id)
    if record is None or record.user_id != user_id:
        raise SessionNotFound(f"you have no session {session_id}")
    return record


def claim_nonce(session: Session, record_id: int, nonce: str) -> bool:
    """True the first time ``nonce`` is offered in this session. The row is locked until the
    transaction ends (SQLite: the writer's lock), so two posts of one form cannot both win."""
    if not NONCE.fullmatch(nonce):
        return False
    used = session.scalar(select(UserSession.used_nonces).where(
        UserSession.id == record_id).with_for_update())
    if used is None:
        return False
    seen = used.split()
    if nonce in seen:
        return False
    seen = [*seen, nonce][-NONCES_KEPT:]
    session.execute(update(UserSession).where(UserSession.id == record_id).values(
        used_nonces=" ".join(seen)))
    return True


def release_nonce(session: Session, record_id: int, nonce: str) -> None:
    """Accept ``nonce`` again (the form was refused and nothing was created)."""
    used = session.scalar(select(UserSession.used_nonces).where(UserSession.id == record_id))
    if used is not None:
        session.execute(update(UserSession).where(UserSession.id == record_id).values(
            used_nonces=" ".join(n for n in used.split() if n != nonce)))
