"""Delivery: claim due messages with a lease, send each one signed, record the outcome.

The only module of the package that opens outbound connections (a test keeps it so).

Exactly one worker holds a message at a time, however many ``serve`` workers and
``billing-api worker`` processes run: a claim sets ``locked_until`` and a fresh
``lease_token`` on rows that are due and not leased, and commits before anything is sent
(PostgreSQL picks the rows with ``FOR UPDATE SKIP LOCKED``, so workers never wait for each
other; on SQLite the claiming transaction holds the one write lock). The outcome is recorded
only by the lease's holder. A worker killed mid-delivery records nothing: its lease expires
and another worker (or the same one restarted) sends the message again — at least once.

Every attempt resolves the host, checks every address (webhooks/ssrf.py), and connects to
the checked address itself, with the host name in the ``Host`` header and in TLS SNI and
certificate verification: a DNS answer that changes between the check and the connection
(rebinding) cannot redirect the request. Redirects are not followed; proxies from the
environment are not used; connect and read have timeouts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import random
import secrets
import socket
import time
from dataclasses import dataclass

import httpx
from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing_api.db import is_lock_timeout, transaction, utcnow
from billing_api.errors import InvalidInput
from billing_api.settings import Settings
from billing_api.webhooks import secret_store, signing, ssrf
from billing_api.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

log = logging.getLogger("billing_api.webhooks")

MAX_BACKOFF_SECONDS = 6 * 3600.0
USER_AGENT = "billing-api-webhooks/1"


def resolve(host: str, port: int) -> list[ssrf.IPAddress]:
    """Every address ``host`` resolves to (a literal address is itself); raises OSError."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[ssrf.IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True)
class Claim:
    message_id: int
    lease_token: str
    msg_id: str
    body: str
    attempts: int
    retry_since: dt.datetime
    endpoint_id: int
    url: str
    secret_encrypted: str


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _due(now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    return (WebhookMessage.delivered_at.is_(None), WebhookMessage.failed_at.is_(None),
            WebhookMessage.next_attempt_at <= now,
            or_(WebhookMessage.locked_until.is_(None), WebhookMessage.locked_until < now),
            WebhookEndpoint.disabled_at.is_(None))


def any_due(factory: sessionmaker[Session]) -> bool:
    """A cheap read first, so that an idle loop never takes SQLite's write lock."""
    with transaction(factory) as session:
        return session.scalar(select(WebhookMessage.id).join(WebhookEndpoint)
                              .where(*_due(utcnow())).limit(1)) is not None


def claim(factory: sessionmaker[Session], settings: Settings, limit: int) -> list[Claim]:
    """Lease up to ``limit`` due messages to this worker; the claim is committed on return."""
    now = utcnow()
    until = now + dt.timedelta(seconds=settings.webhook_lease_seconds)
    claims: list[Claim] = []
    try:
        with transaction(factory, writer=True, lock_wait=5) as session:
            query = (select(WebhookMessage.id).join(WebhookEndpoint).where(*_due(now))
                     .order_by(WebhookMessage.next_attempt_at).limit(limit))
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True, of=WebhookMessage)
            for message_id in session.scalars(query).all():
                token = secrets.token_hex(16)
                # Conditional: whoever else looked at the row in the meantime, one claim wins.
                taken = session.execute(
                    update(WebhookMessage)
                    .where(WebhookMessage.id == message_id,
                           WebhookMessage.delivered_at.is_(None),
                           or_(WebhookMessage.locked_until.is_(None),
                               WebhookMessage.locked_until < now))
                    .values(locked_until=until, lease_token=token)
                    .execution_options(synchronize_session=False))
                if taken.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                row = session.execute(
                    select(WebhookMessage.msg_id, WebhookMessage.body, WebhookMessage.attempts,
                           WebhookMessage.retry_since, WebhookEndpoint.id, WebhookEndpoint.url,
                           WebhookEndpoint.secret_encrypted)
                    .join(WebhookEndpoint).where(WebhookMessage.id == message_id)).one()
                claims.append(Claim(message_id, token, *row))
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        return []  # a long writer (a billing run) holds the lock: next round
    return claims


def send(claim_: Claim, settings: Settings) -> Outcome:
    """One signed POST of the message to its endpoint, at a checked address."""
    started = time.monotonic()
    allow = ssrf.AllowList.parse(settings.webhook_allow)

    def failed(error: str) -> Outcome:
        return Outcome(None, error[:400], int((time.monotonic() - started) * 1000))

    try:
        target = ssrf.check_url(claim_.url, allow)
    except InvalidInput as exc:  # the URL was valid when added: settings changed since
        return failed(f"refused: {exc.message}")
    try:
        address = ssrf.pick_address(target, resolve(target.host, target.port), allow)
    except ssrf.AddressRefused as exc:
        return failed(f"refused: {exc}")
    except OSError as exc:
        return failed(f"DNS: {target.host}: {exc.strerror or exc}")
    try:
        secret = secret_store.decrypt(settings, claim_.secret_encrypted)
    except secret_store.UnreadableSecret as exc:
        return failed(f"signing secret unreadable: {exc}")
    literal = f"[{address}]" if address.version == 6 else str(address)
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if target.port == default_port else \
        f"{'[' + target.host + ']' if ':' in target.host else target.host}:{target.port}"
    headers = signing.headers(secret, claim_.msg_id, int(time.time()), claim_.body)
    headers |= {"Host": host_header, "Content-Type": "application/json",
                "User-Agent": USER_AGENT}
    timeout = httpx.Timeout(connect=settings.webhook_connect_timeout_seconds,
                            read=settings.webhook_read_timeout_seconds,
                            write=settings.webhook_read_timeout_seconds,
                            pool=settings.webhook_connect_timeout_seconds)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            request = client.build_request(
                "POST", f"{target.scheme}://{literal}:{target.port}{target.path}",
                content=claim_.body.encode(), headers=headers, extensions=extensions)
            # The answer's body is not read: only its status counts.
            response = client.send(request, stream=True)
            response.close()
    except httpx.TimeoutException as exc:
        return failed(f"timeout: {type(exc).__name__}")
    except httpx.HTTPError as exc:
        return failed(f"{type(exc).__name__}: {exc}")
    duration = int((time.monotonic() - started) * 1000)
    if 300 <= response.status_code < 400:
        return Outcome(response.status_code, "redirect not followed", duration)
    return Outcome(response.status_code, "", duration)


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """The wait after the ``attempts``-th failure: doubling from the first wait, capped, with
    ±25 % jitter so that many messages failing together do not retry together."""
    delay: float = min(settings.webhook_backoff_seconds * 2.0 ** max(attempts - 1, 0),
                       MAX_BACKOFF_SECONDS)
    return delay * random.uniform(0.75, 1.25)


def record(factory: sessionmaker[Session], settings: Settings, claim_: Claim,
           outcome: Outcome) -> None:
    """Log the attempt and move the message on: delivered, retried later, or given up (past
    the retry window, which also disables its endpoint). Only the lease's holder moves it."""
    now = utcnow()
    with transaction(factory, writer=True) as session:
        session.add(WebhookAttempt(message_id=claim_.message_id, attempted_at=now,
                                   status_code=outcome.status_code, error=outcome.error,
                                   duration_ms=outcome.duration_ms))
        attempts = claim_.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "locked_until": None,
                                     "lease_token": None}
        give_up_at = claim_.retry_since + dt.timedelta(seconds=settings.webhook_retry_seconds)
        if outcome.delivered:
            values["delivered_at"] = now
        elif now >= give_up_at:
            values["failed_at"] = now
        else:
            wait = dt.timedelta(seconds=backoff_seconds(settings, attempts))
            values["next_attempt_at"] = min(now + wait, give_up_at)  # a last try at the end
        moved = session.execute(
            update(WebhookMessage)
            .where(WebhookMessage.id == claim_.message_id,
                   WebhookMessage.lease_token == claim_.lease_token)
            .values(**values).execution_options(synchronize_session=False))
        if moved.rowcount == 1 and "failed_at" in values:  # type: ignore[attr-defined]
            what = outcome.error or f"HTTP {outcome.status_code}"
            session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == claim_.endpoint_id,
                       WebhookEndpoint.disabled_at.is_(None))
                .values(disabled_at=now, disabled_reason=(
                    f"Disabled on {now:%Y-%m-%d %H:%M} UTC: message {claim_.msg_id} could not be "
                    f"delivered for {settings.webhook_retry_seconds / 3600:g} hours "
                    f"({attempts} attempts, last: {what})")[:400])
                .execution_options(synchronize_session=False))
    log.info("webhook %s to endpoint %d: %s", claim_.msg_id, claim_.endpoint_id,
             "delivered" if outcome.delivered else
             (outcome.error or f"HTTP {outcome.status_code}"))
