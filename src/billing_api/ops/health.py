"""``/healthz`` (the process answers), ``/readyz`` (the database answers) and ``/metrics``.

``/healthz`` never touches the database, so a liveness probe does not restart a healthy
process because PostgreSQL is down; ``/readyz`` runs ``SELECT 1`` and answers 503 with
``Retry-After`` when it fails, so a load balancer stops sending traffic until it is back.
``/metrics`` answers only clients inside ``BILLING_API_METRICS_ALLOW`` (default: loopback),
judged by the same client address as the API whitelist (forwarding headers only from
``BILLING_API_TRUSTED_PROXIES``).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from billing_api.access.client_address import request_resolved
from billing_api.api.problems import DB_RETRY_AFTER
from billing_api.ops import metrics
from billing_api.settings import Settings

log = logging.getLogger("billing_api.ops")

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", response_class=PlainTextResponse)
def healthz() -> PlainTextResponse:
    """The process is up (database reachability is /readyz's job)."""
    return PlainTextResponse("ok", headers=NO_STORE)


@router.get("/readyz", response_class=PlainTextResponse)
def readyz(request: Request) -> PlainTextResponse:
    """200 when the database answers ``SELECT 1``, else 503 with ``Retry-After``."""
    try:
        with request.app.state.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        # The exception's text may name the host and user: the class is enough here.
        log.warning("not ready: the database is unavailable (%s)", type(exc).__name__)
        return PlainTextResponse("database unavailable", status_code=503,
                                 headers={"Retry-After": DB_RETRY_AFTER, **NO_STORE})
    return PlainTextResponse("ok", headers=NO_STORE)


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    resolved = request_resolved(request, settings.trusted_proxies)
    address = resolved.address
    if address is None:
        return PlainTextResponse(f"metrics are not served when the client address is unknown: "
                                 f"{resolved.why}", status_code=403, headers=NO_STORE)
    if not metrics.allowed(address, metrics.parse_networks(settings.metrics_allow)):
        return PlainTextResponse(
            f"metrics are not served to {address}: add the scraper's "
            "network to BILLING_API_METRICS_ALLOW", status_code=403, headers=NO_STORE)
    body = await run_in_threadpool(metrics.exposition, request.app.state.engine)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers=NO_STORE)
