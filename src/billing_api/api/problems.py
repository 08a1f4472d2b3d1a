"""RFC 9457 problem details: the one place where errors become HTTP answers on the API.

Every answer has ``type`` (``about:blank``: the status says it all), ``title`` (the HTTP
reason phrase), ``status``, ``detail`` (a message a person can act on) and our ``code``
extension (stable, for machines). ``instance`` is the path only: a query may hold a link
token. The format is negotiated like a document's (``negotiation.problem_format``): XML by
default, JSON for ``format=json`` or an ``Accept`` preferring JSON by its q-values; the text is
cleaned of what XML 1.0 forbids, so any path or parameter gives a well-formed answer. Paths
outside ``/api`` keep FastAPI's own answers (the portal renders its own pages).
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from fastapi import FastAPI, Request, Response
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from billing_api.access.errors import AccessForbidden, AuthenticationFailed, RateLimited
from billing_api.api.errors import NotAcceptable, VersionGone
from billing_api.api.negotiation import problem_format
from billing_api.errors import BillingError, Conflict, InvalidInput, NotFound, PermissionDenied
from billing_api.export.values import drop_xml_illegal, xml_text

log = logging.getLogger("billing_api.api")

# Walked along the exception's MRO: the most specific class listed wins.
STATUS_BY_ERROR: dict[type[BillingError], int] = {
    NotAcceptable: 406,
    VersionGone: 410,
    AuthenticationFailed: 401,
    AccessForbidden: 403,
    RateLimited: 429,
    NotFound: 404,
    InvalidInput: 400,
    PermissionDenied: 403,
    Conflict: 409,
}
DB_RETRY_AFTER = "30"
BUSY_RETRY_AFTER = "5"


def status_for(exc: BillingError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    return 500


def problem_response(request: Request, status: int, code: str, detail: str,
                     headers: dict[str, str] | None = None, field: str | None = None) -> Response:
    body: dict[str, str | int] = {
        "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
        "detail": detail, "code": code, "instance": request.url.path,
    }
    if field:
        body["field"] = field
    # The path, the detail and the field may hold anything a client sent: what XML 1.0 cannot
    # hold (controls, lone surrogates) is dropped in both formats, so the answer always parses
    # and JSON and XML say the same.
    clean = {k: drop_xml_illegal(v) if isinstance(v, str) else v for k, v in body.items()}
    if problem_format(request) == "json":
        content = json.dumps(clean, ensure_ascii=False, sort_keys=True)
        media_type = "application/problem+json"
    else:
        inner = "".join(f"<{k}>{xml_text(str(v))}</{k}>" for k, v in clean.items())
        content = ('<?xml version="1.0" encoding="utf-8"?>\n'
                   f'<problem xmlns="urn:ietf:rfc:7807">{inner}</problem>')
        media_type = "application/problem+xml"
    return Response(content.encode(), status_code=status, media_type=media_type, headers=headers)


def _is_api(request: Request) -> bool:
    return request.url.path == "/api" or request.url.path.startswith("/api/")


async def _billing_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BillingError)
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, AuthenticationFailed):
        headers["WWW-Authenticate"] = 'ApiKey header="X-Api-Key"'
    return problem_response(request, status, exc.code, exc.message, headers, exc.field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not _is_api(request):
        return await http_exception_handler(request, exc)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if exc.status_code == 404 and detail == "Not Found":
        detail = "no such endpoint: see /api/openapi.json for the ones that exist"
    return problem_response(request, exc.status_code, code, detail, dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    if not _is_api(request):
        return await request_validation_exception_handler(request, exc)
    first = exc.errors()[0] if exc.errors() else {}
    field = str(first.get("loc", ["", "?"])[-1])
    return problem_response(request, 400, "invalid_parameter",
                            f"parameter {field}: {first.get('msg', 'invalid')}", field=field)


async def _database_down(request: Request, exc: Exception) -> Response:
    log.error("database unavailable: %s", type(exc).__name__)
    return problem_response(request, 503, "database_unavailable",
                            "the database is unavailable: retry later",
                            {"Retry-After": DB_RETRY_AFTER})


async def _pool_exhausted(request: Request, exc: Exception) -> Response:
    # Every pooled connection stayed busy (long downloads) for the pool timeout: the server
    # is full, not broken. Clients should come back shortly.
    log.warning("no database connection came free in time: %s", type(exc).__name__)
    return problem_response(request, 503, "server_busy",
                            "the server is busy with other downloads: retry shortly",
                            {"Retry-After": BUSY_RETRY_AFTER})


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette still re-raises after this, so the server logs the traceback; the client
    # gets no stack trace and no partial document.
    return problem_response(request, 500, "internal_error",
                            "an internal error occurred: it has been logged")


def register_problem_handlers(app: FastAPI) -> None:
    """Install the handlers; Starlette finds a handler by walking the exception's classes."""
    app.add_exception_handler(BillingError, _billing_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OperationalError, _database_down)
    app.add_exception_handler(PoolTimeout, _pool_exhausted)
    app.add_exception_handler(Exception, _unexpected)
