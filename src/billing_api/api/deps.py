"""The one request-authentication dependency, and the router factory that attaches it.

Every API route is built on ``api_router()``, whose ``dependencies`` run
``authenticate_request`` before the route: a route cannot forget authentication, and a test
walks the app's routes to prove it. A route that needs the caller declares ``caller:
CallerDep``; FastAPI caches the dependency per request, so the checks run once.

Checks, in the contract's order: a credential (``X-Api-Key`` header, else a link ``token``),
its format, the key (unknown, revoked, expired: 401), the company's API switch and the
whitelist (403), then the per-key rate limit (429). Every refusal writes one audit row in its
own transaction, so the row survives the 4xx answer.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from sqlalchemy import update
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
    UnknownKey,
)
from billing_api.access.models import ApiKey
from billing_api.access.ratelimit import RateLimiter, api_limiter, check_api_rate
from billing_api.access.redaction import install_log_redaction
from billing_api.db import is_lock_timeout, transaction, utcnow
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
    install_log_redaction()


def authenticate_request(request: Request) -> ApiCaller:
    """The authenticated caller; raises an ``AuthenticationFailed``, ``AccessForbidden`` or
    ``RateLimited`` error (turned into problem details by ``api.problems``)."""
    settings: Settings = request.app.state.settings
    factory = request.app.state.session_factory
    resolved = request_resolved(request, settings.trusted_proxies)
    attempt = _Attempt(address=str(resolved.address) if resolved.address else "")
    try:
        with transaction(factory) as session:
            grant = _check(session, settings, request, resolved, attempt)
            caller = ApiCaller(grant.company_id, grant.key_id, grant.environment,
                               grant.display_prefix, attempt.address)
            stale = grant.last_used_at
        limiter: RateLimiter = request.app.state.api_rate_limiter
        check_api_rate(limiter, caller.key_id, settings.rate_limit_per_minute)
    except (AuthenticationFailed, AccessForbidden, RateLimited) as exc:
        _audit_refusal(request, attempt, exc)
        raise
    now = utcnow()
    if keys.last_use_due(stale, now):
        _stamp_last_used(factory, caller.key_id, now)
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


def _check(session: Session, settings: Settings, request: Request, resolved: Resolved,
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
        grant = grants.grant_for_secret(session, settings, secret)
        if parsed is None:
            raise MalformedKey("the API key is malformed (checksum mismatch): copy it again")
        attempt.key_prefix = parsed.display_prefix
        if grant is None:
            raise UnknownKey("the API key is not known: check it or create a new one")
    else:
        assert token is not None
        key_id = links.verify_link(settings, token, request.url.path,
                                   request.query_params.multi_items())
        grant = grants.grant_for_key_id(session, key_id)
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
    if isinstance(exc, RateLimited):
        # One row per key and minute: a client hammering past its limit must not turn the
        # audit table into a second copy of the access log.
        limiter: RateLimiter = request.app.state.api_rate_limiter
        if not limiter.hit(f"audit-429:{attempt.key_id}", 1, 60.0).allowed:
            return
    try:
        audit.record_in_own_transaction(
            request.app.state.session_factory, audit.EventType.API_DENIED,
            company_id=attempt.company_id, key_id=attempt.key_id, key_prefix=attempt.key_prefix,
            client_address=attempt.address, path=request.url.path, reason=code)
    except Exception:  # the refusal stands even if the audit write fails
        log.exception("could not write the audit row for a refused API call (%s)", code)


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
