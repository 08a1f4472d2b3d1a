"""The audit log: who changed API access, and every refused API call.

Rows carry a key's display prefix at most, never a secret or a link token: callers pass the
prefix, and ``record`` refuses a value that looks like a whole key (see ``redaction``).

Changes are single rows (``record``). Refusals that anyone can cause without an account
(refused API calls, failed logins) go through a ``RefusalLog``: counted in memory and written
as one row per event, company, key, client address, reason, detail and minute with a
``count``, at most once per ``FLUSH_EVERY`` seconds, so a flood costs a handful of writes a
minute instead of one per request (docs/access.md, "Audit log").
"""

from __future__ import annotations

import atexit
import datetime as dt
import hashlib
import json
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import AuditEvent, User
from billing_api.access.redaction import redact
from billing_api.db import is_lock_timeout, transaction, utcnow

log = logging.getLogger("billing_api.access")

# A refusal's row is written at once when none was written in the last FLUSH_EVERY seconds,
# else with the others of those seconds, by a background thread.
FLUSH_EVERY = 10.0
# A flush in a refused request waits at most this long for SQLite's write lock (a billing
# run holds it for minutes): the counts then wait for the background flush instead.
REQUEST_LOCK_WAIT = 0.1
BACKGROUND_LOCK_WAIT = 2.0
# Distinct aggregates kept in memory (while the database cannot be written); beyond, new
# ones are counted under the address "*".
MAX_PENDING = 10_000
UPSERT_CHUNK = 500


class EventType(StrEnum):
    API_ENABLED = "api_enabled"
    API_DISABLED = "api_disabled"
    PERMISSION_GRANTED = "permission_granted"
    PERMISSION_WITHDRAWN = "permission_withdrawn"
    USER_DEACTIVATED = "user_deactivated"
    KEY_CREATED = "key_created"
    KEY_REVOKED = "key_revoked"
    WHITELIST_ADDED = "whitelist_added"
    WHITELIST_REMOVED = "whitelist_removed"
    API_DENIED = "api_denied"
    LOGIN_FAILED = "login_failed"
    # A portal action refused to a logged-in user (not the Account Administrator, no API
    # permission, a form without its CSRF token).
    PORTAL_DENIED = "portal_denied"
    # The distributor's operator switched the API without the Administrator's password
    # (``billing-api api distributor-enable|disable --reason``): never shown as theirs.
    API_ENABLED_BY_DISTRIBUTOR = "api_enabled_by_distributor"
    API_DISABLED_BY_DISTRIBUTOR = "api_disabled_by_distributor"
    # A command run ``--as`` a user was refused: their password was wrong.
    CLI_DENIED = "cli_denied"
    # Portal accounts: a user changed their own password (or gave a wrong current one), the
    # operator reset one (``billing-api users reset-password``), a user signed out everywhere.
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    PASSWORD_CHANGE_REFUSED = "password_change_refused"  # noqa: S105
    PASSWORD_RESET = "password_reset"  # noqa: S105
    SESSIONS_ENDED = "sessions_ended"
    # Single sign-on (access/sso.py): a sign-in through the provider refused (tampered state,
    # a code or token the provider or the checks refused, an unknown identity, another
    # company, an inactive user), and a provider identity pinned to or taken off a user.
    SSO_REFUSED = "sso_refused"
    SSO_LINKED = "sso_linked"
    SSO_UNLINKED = "sso_unlinked"
    # Webhook endpoints (webhooks/endpoints.py): detail is the URL, never the secret.
    WEBHOOK_ADDED = "webhook_added"
    WEBHOOK_REMOVED = "webhook_removed"
    WEBHOOK_ENABLED = "webhook_enabled"


@dataclass(frozen=True)
class AuditRow:
    created_at: dt.datetime
    event_type: str
    actor_email: str | None
    client_address: str
    key_prefix: str
    path: str
    reason: str
    detail: str
    count: int = 1


def record(
    session: Session,
    event_type: EventType,
    *,
    company_id: int | None,
    actor_user_id: int | None = None,
    key_id: int | None = None,
    key_prefix: str = "",
    client_address: str = "",
    path: str = "",
    reason: str = "",
    detail: str = "",
) -> AuditEvent:
    """Add one audit row to the session's transaction and flush it."""
    event = AuditEvent(
        event_type=event_type.value, company_id=company_id, actor_user_id=actor_user_id,
        key_id=key_id, key_prefix=key_prefix[:24], client_address=client_address[:64],
        # Defence in depth: a path or detail should never hold a key, but if one slips in
        # (a key pasted into the URL), it is masked before it reaches the table.
        path=redact(path)[:400], reason=reason[:40], detail=redact(detail)[:400],
    )
    session.add(event)
    session.flush()
    return event


def record_in_own_transaction(factory: sessionmaker[Session], event_type: EventType,
                              **fields: object) -> None:
    """Record in a short transaction of its own, so the row survives the refused request."""
    with transaction(factory) as session:
        record(session, event_type, **fields)  # type: ignore[arg-type]


def list_events(session: Session, company_id: int, *,
                since: dt.datetime | None = None) -> list[AuditRow]:
    """The company's audit rows, newest first (``since`` inclusive)."""
    stmt = (
        select(AuditEvent, User.email)
        .outerjoin(User, User.id == AuditEvent.actor_user_id)
        .where(AuditEvent.company_id == company_id)
        .order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    )
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    return [
        AuditRow(e.created_at, e.event_type, email, e.client_address, e.key_prefix, e.path,
                 e.reason, e.detail, e.count)
        for e, email in session.execute(stmt).all()
    ]


def now() -> dt.datetime:
    return utcnow()


# What one aggregated row stands for: event, company, key, address, reason, detail, minute.
_Aggregate = tuple[str, int | None, int | None, str, str, str, dt.datetime]


@dataclass
class _Pending:
    first_at: dt.datetime
    count: int
    key_prefix: str  # of the first refusal: a flood of unknown keys has a new one each time
    path: str  # likewise: paths are the caller's choice, so they are not part of the key


class RefusalLog:
    """Refusals counted in memory, written as aggregated rows (one ``RefusalLog`` per app).

    ``note`` counts; the first refusal after ``every`` quiet seconds is written at once, in
    the refused request (waiting at most ``REQUEST_LOCK_WAIT`` for the lock); later ones are
    written together by a background thread ``every`` seconds, and at exit. One flush is one
    short transaction of upserts (``count = count + n``) on a unique ``aggregate_key``, so
    two workers (or hosts) adding to the same row in the same minute do not collide; rows are
    sorted by that key, so two flushes lock them in the same order (no deadlock). A failed
    flush keeps its counts for the next one.
    """

    def __init__(self, factory: sessionmaker[Session], *, every: float = FLUSH_EVERY,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], dt.datetime] = utcnow) -> None:
        self._factory, self._every, self._clock, self._now = factory, every, clock, now
        self._pending: dict[_Aggregate, _Pending] = {}
        self._lock = threading.Lock()  # guards _pending and _last_flush
        self._writing = threading.Lock()  # one flush at a time, so none overtakes another
        self._last_flush = -math.inf
        _register(self)

    def note(self, event_type: EventType, *, company_id: int | None,
             key_id: int | None = None, key_prefix: str = "", client_address: str = "",
             path: str = "", reason: str = "", detail: str = "") -> None:
        """Count one refusal; writes it at once when no flush ran in the last ``every`` s."""
        at = self._now()
        key: _Aggregate = (event_type.value, company_id, key_id, client_address[:64],
                           reason[:40], redact(detail)[:400],
                           at.replace(second=0, microsecond=0))
        with self._lock:
            if key not in self._pending and len(self._pending) >= MAX_PENDING:
                key = (key[0], key[1], key[2], "*", key[4], key[5], key[6])
            found = self._pending.get(key)
            if found is not None:
                found.count += 1
            else:
                self._pending[key] = _Pending(at, 1, key_prefix[:24], redact(path)[:400])
            due = self._clock() >= self._last_flush + self._every
        if due:
            self.flush(lock_wait=REQUEST_LOCK_WAIT, wait=False)

    def due(self) -> bool:
        with self._lock:
            return bool(self._pending) and self._clock() >= self._last_flush + self._every

    def pending(self) -> int:
        """Refusals counted but not yet written."""
        with self._lock:
            return sum(p.count for p in self._pending.values())

    def flush(self, *, lock_wait: float | None = None, wait: bool = True) -> int:
        """Write the counts so far; the number of rows written or added to (0 when there was
        nothing, when ``wait`` is False and another flush is running, or on failure)."""
        if not self._writing.acquire(blocking=wait):
            return 0
        try:
            with self._lock:
                batch, self._pending = self._pending, {}
                self._last_flush = self._clock()
            if not batch:
                return 0
            try:
                with transaction(self._factory, writer=True, lock_wait=lock_wait) as session:
                    _upsert(session, batch)
            except Exception as exc:
                self._restore(batch)
                if isinstance(exc, OperationalError) and is_lock_timeout(exc):
                    log.info("%d refusal count(s) not yet audited: the database is busy "
                             "writing", len(batch))
                else:
                    log.exception("could not write %d audit row(s) of refusals; kept for "
                                  "the next try", len(batch))
                return 0
            return len(batch)
        finally:
            self._writing.release()

    def close(self) -> None:
        """Write what is pending and stop flushing this log (the app is shutting down)."""
        _LIVE.discard(self)
        self.flush()

    def _restore(self, batch: dict[_Aggregate, _Pending]) -> None:
        with self._lock:
            for key, pending in batch.items():
                found = self._pending.get(key)
                if found is None:
                    self._pending[key] = pending
                else:
                    found.count += pending.count
                    found.first_at = min(found.first_at, pending.first_at)


def _aggregate_key(key: _Aggregate) -> str:
    parts = [*key[:6], key[6].isoformat()]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _upsert(session: Session, batch: dict[_Aggregate, _Pending]) -> None:
    rows: list[dict[str, Any]] = sorted((
        {"aggregate_key": _aggregate_key(key), "event_type": key[0], "company_id": key[1],
         "key_id": key[2], "client_address": key[3], "reason": key[4], "detail": key[5],
         "key_prefix": p.key_prefix, "path": p.path, "created_at": p.first_at,
         "count": p.count, "actor_user_id": None}
        for key, p in batch.items()), key=lambda row: str(row["aggregate_key"]))
    dialect = session.get_bind().dialect.name
    for start in range(0, len(rows), UPSERT_CHUNK):
        stmt = (postgresql.insert(AuditEvent) if dialect == "postgresql"
                else sqlite.insert(AuditEvent)).values(rows[start:start + UPSERT_CHUNK])
        session.execute(stmt.on_conflict_do_update(
            index_elements=[AuditEvent.aggregate_key],
            set_={"count": AuditEvent.count + stmt.excluded["count"]}))


# Every live RefusalLog, for the one background flusher and the flush at exit.
_LIVE: weakref.WeakSet[RefusalLog] = weakref.WeakSet()
_FLUSHER_LOCK = threading.Lock()
_flusher: threading.Thread | None = None
FLUSHER_TICK = 1.0


def _register(refusals: RefusalLog) -> None:
    global _flusher
    _LIVE.add(refusals)
    with _FLUSHER_LOCK:
        if _flusher is None:
            _flusher = threading.Thread(target=_flush_loop, name="audit-refusals",
                                        daemon=True)
            _flusher.start()
            atexit.register(flush_pending)


def _flush_loop() -> None:
    while True:
        time.sleep(FLUSHER_TICK)
        for refusals in list(_LIVE):
            try:
                if refusals.due():
                    refusals.flush(lock_wait=BACKGROUND_LOCK_WAIT)
            except Exception:  # the thread must outlive any one log's trouble
                log.exception("audit flusher")


def flush_pending() -> None:
    """Write every live ``RefusalLog``'s counts now (at exit; tests before they read)."""
    for refusals in list(_LIVE):
        refusals.flush()
