"""The one request-authentication dependency, and the router factory that attaches it.

Every API route is built on ``api_router()``, whose ``dependencies`` run
``authenticate_request`` before the route: a route cannot forget authentication, and a test
walks the app's routes to prove it. A route that needs the caller declares ``caller:
CallerDep``; FastAPI caches the dependency per request, so the checks run once.

First, before any lookup, the client address's failed authentications (429
``too_many_failures`` past ``BILLING_API_FAILED_AUTH_PER_MINUTE``). Then, in the contract's
order: a credential (``X-Api-Key`` header, else a link ``token``), its format, the key
(unknown, revoked, expired: 401), the company's API switch and the whitelist (403), then the
per-key rate limit (429). Every 401 and 403 counts as a failed authentication of the address.
Every refusal is counted in the app's ``audit.RefusalLog`` (aggregated rows, a few writes a
minute at most), outside the request's transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from anyio.to_thread import run_sync
from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import Connection, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import audit, grants, keys, links, whitelist
from billing_api.access.client_address import Resolved, request_resolved
from billing_api.access.errors import (
    AccessForbidden,
    ApiDisabled,
    AuthenticationFailed,
    BadToken,
    ExpiredKey,
    IpNotWhitelisted,
    MalformedKey,
    MissingKey,
    RateLimited,
    RevokedKey,
    TooManyFailures,
    UnknownKey,
)
from billing_api.access.models import ApiKey
from billing_api.access.ratelimit import (
    RateLimiter,
    api_limiter,
    check_api_rate,
    check_failed_auth,
    client_bucket,
    count_failed_auth,
)
from billing_api.access.redaction import install_log_redaction
from billing_api.db import is_lock_timeout, transaction, utcnow
from billing_api.loop_reads import LoopReads
from billing_api.settings import Settings

log = logging.getLogger("billing_api.access")

API_PREFIX = "/api/{version}"
LAST_USED_LOCK_WAIT = 0.1  # seconds
EMPTY_WHITELIST = "no IP address is whitelisted for this account: add one under Your APIs"


@dataclass(frozen=True)
class ApiCaller:
    """Who is calling: the key fixes the partner and the environment of every query."""

    company_id: int
    key_id: int
    environment: str
    key_prefix: str
    client_address: str


@dataclass
class _Attempt:
    """What is known so far about a request, for the audit row if it is refused."""

    address: str = ""
    company_id: int | None = None
    key_id: int | None = None
    key_prefix: str = ""


def install_access(app: FastAPI) -> None:
    """Per-app state the dependency needs, and log redaction (call from ``create_app``)."""
    # In this process, or on Redis when BILLING_API_REDIS_URL is set (docs/access.md).
    app.state.api_rate_limiter = api_limiter(app.state.settings.redis_url)
    # Refused API calls and failed portal logins, aggregated (access/audit.py).
    app.state.refusal_audit = audit.RefusalLog(app.state.session_factory)
    # On the event loop only (authenticate_request): no lock.
    app.state.last_use_claims = keys.LastUseClaims()
    install_log_redaction()


async def authenticate_request(request: Request) -> ApiCaller:
    """The authenticated caller; raises an ``AuthenticationFailed``, ``AccessForbidden`` or
    ``RateLimited`` error (turned into problem details by ``api.problems``).

    On the event loop (``loop_reads``): the look-up is one indexed statement, the limits
    count in memory or on Redis's asyncio client. The rare writes (the last-use stamp once a
    minute, a refusal's audit, a pepper move) go to a worker thread."""
    settings: Settings = request.app.state.settings
    factory = request.app.state.session_factory
    resolved = request_resolved(request, settings.trusted_proxies)
    address = resolved.address
    attempt = _Attempt(address=str(address) if address else "")
    limiter: RateLimiter = request.app.state.api_rate_limiter
    reads: LoopReads = request.app.state.primary_reads
    try:
        try:
            await check_failed_auth(limiter, address, settings.failed_auth_per_minute)
        except TooManyFailures:
            # Audited under what the limit counts: an IPv6 client's /64.
            attempt.address = client_bucket(address) if address else ""
            raise
        # The primary (never a replica), statements without a transaction: every request
        # reads the key, switch and whitelist afresh.
        grant = await reads.statements(_check, settings, request, resolved, attempt)
        caller = ApiCaller(grant.company_id, grant.key_id, grant.environment,
                           grant.display_prefix, attempt.address)
        await check_api_rate(limiter, caller.key_id, settings.rate_limit_per_minute)
    except (AuthenticationFailed, AccessForbidden) as exc:
        # Counted after the refusal is known (a peek, then a hit): parallel requests can
        # overshoot by the ones in flight, but a valid key never holds a slot.
        await count_failed_auth(limiter, address, settings.failed_auth_per_minute)
        await run_sync(_audit_refusal, request, attempt, exc)
        raise
    except RateLimited as exc:
        await run_sync(_audit_refusal, request, attempt, exc)
        raise
    now = utcnow()
    if (keys.last_use_due(grant.last_used_at, now)
            and request.app.state.last_use_claims.claim(caller.key_id, now)):
        await run_sync(_stamp_last_used, factory, caller.key_id, now)
    if grant.old_pepper:
        await run_sync(_move_to_current_pepper, factory, settings, caller.key_id, request)
    request.state.api_caller = caller
    return caller


def _stamp_last_used(factory: sessionmaker[Session], key_id: int, now: dt.datetime) -> None:
    """At most once a minute per key, in a short writer transaction of its own. Best effort:
    on SQLite a billing run holds the one write lock for minutes, and a read must not queue
    behind it, so the stamp gives up quickly and a later request writes it."""
    try:
        with transaction(factory, writer=True, lock_wait=LAST_USED_LOCK_WAIT) as session:
            session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        log.info("last use of API key %s not recorded: the database is busy writing", key_id)


def _move_to_current_pepper(factory: sessionmaker[Session], settings: Settings, key_id: int,
                            request: Request) -> None:
    """Best effort, like the stamp: a key left on the old pepper is tried again next time."""
    secret = request.headers.get("x-api-key", "").strip()
    try:
        with transaction(factory, writer=True, lock_wait=LAST_USED_LOCK_WAIT) as session:
            keys.move_to_current_pepper(session, settings, key_id, secret)
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        log.info("API key %s stays on its old pepper for now: the database is busy", key_id)
    else:
        log.info("API key %s moved to pepper %s", key_id, settings.pepper_id)


def _check(connection: Connection, settings: Settings, request: Request, resolved: Resolved,
           attempt: _Attempt) -> grants.KeyGrant:
    header = request.headers.get("x-api-key")
    token = request.query_params.get(links.TOKEN_PARAM)
    if header is None and token is None:
        raise MissingKey("no API key: send it in the X-Api-Key header")
    grant: grants.KeyGrant | None
    if header is not None:
        secret = header.strip()
        parsed = keys.parse_secret(secret)
        # Digest and lookup run whatever the format, so a malformed key costs what a valid
        # one does.
        grant = grants.grant_for_secret(connection, settings, secret)
        if parsed is None:
            raise MalformedKey("the API key is malformed (checksum mismatch): copy it again")
        attempt.key_prefix = parsed.display_prefix
        if grant is None:
            raise UnknownKey("the API key is not known: check it or create a new one")
    else:
        assert token is not None
        key_digest = links.verify_link(settings, token, request.url.path,
                                       request.query_params.multi_items())
        grant = grants.grant_for_digest(connection, key_digest)
        if grant is None:
            raise BadToken("the download link's key does not exist: create a new link")
    attempt.company_id, attempt.key_id, attempt.key_prefix = (
        grant.company_id, grant.key_id, grant.display_prefix)
    status = grant.status()
    if status == "revoked":
        raise RevokedKey("the API key has been revoked: create a new one under Your APIs")
    if status == "expired":
        raise ExpiredKey("the API key has expired: create a new one under Your APIs")
    if not grant.api_enabled:
        raise ApiDisabled("the Billing API is not enabled for this account: the Account "
                          "Administrator can enable it under Your APIs")
    if not grant.networks:
        raise IpNotWhitelisted(EMPTY_WHITELIST)
    if resolved.address is None:
        # Its own code, so the audit row says why no address could be checked.
        raise IpNotWhitelisted(f"your IP address could not be determined ({resolved.why}): "
                               "no whitelist entry can match", code=resolved.code)
    if not whitelist.is_allowed(resolved.address, grant.networks):
        shown = attempt.address or "unknown"
        raise IpNotWhitelisted(f"your IP address {shown} is not whitelisted for this account: "
                               "add it under Your APIs")
    return grant


def _audit_refusal(request: Request, attempt: _Attempt, exc: Exception) -> None:
    code = getattr(exc, "code", "denied")
    refusals: audit.RefusalLog = request.app.state.refusal_audit
    # Counted, not written per request: one row per company, key, address, reason and minute
    # (the RefusalLog keeps its counts when a write fails; the refusal stands either way).
    refusals.note(audit.EventType.API_DENIED, company_id=attempt.company_id,
                  key_id=attempt.key_id, key_prefix=attempt.key_prefix,
                  client_address=attempt.address, path=request.url.path, reason=code)


CallerDep = Annotated[ApiCaller, Depends(authenticate_request)]


def api_router(*, before_auth: Sequence[Any] = (), **kwargs: Any) -> APIRouter:
    """An ``APIRouter`` under ``/api/{version}`` whose every route requires authentication.

    ``before_auth`` dependencies run first: checks that reveal nothing about an account, such
    as the version (v1 answers 410 with or without a key).
    """
    dependencies = [*before_auth, Depends(authenticate_request),
                    *kwargs.pop("dependencies", [])]
    return APIRouter(prefix=API_PREFIX, dependencies=dependencies, **kwargs)


def is_protected(dependant: Any) -> bool:
    """True when ``authenticate_request`` is among a route's dependencies (at any depth)."""
    return any(d.call is authenticate_request or is_protected(d)
               for d in dependant.dependencies)
