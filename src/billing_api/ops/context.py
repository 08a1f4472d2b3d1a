"""The request context: an id per request, the request's access log line and its metrics.

``RequestContextMiddleware`` is the outermost layer of the app (see ``app.BillingApp``), outside
even Starlette's 500 handler, so that every answer — an unexpected error's too — carries the
``X-Request-Id`` header and is counted with the status the client really got.

The id is the client's ``X-Request-Id`` when it is well-formed (1–64 characters of
``[A-Za-z0-9._-]``, so it can go into a header and a log line as it is), else a new random one.
It lives in a ``ContextVar`` that the JSON log formatter reads, so every log line written while
the request runs carries it: the route's own lines, the export's, and the server's "Exception in
ASGI application" traceback (uvicorn logs that after the app returns, in the same task).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from billing_api.api.problems import problem_response
from billing_api.ops import metrics

log = logging.getLogger("billing_api.requests")

REQUEST_ID_HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
UNMATCHED = "<unmatched>"
# Probes and scrapes every few seconds would drown the log: their lines are DEBUG.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# uvicorn's default parser (httptools) puts no limit on header size: a 1 MiB X-Api-Key would be
# read and HMAC'd. Real requests (key, session cookie) need about 1 KiB; nginx allows 32 KiB.
MAX_HEADER_BYTES = 32 * 1024


@dataclass(frozen=True)
class RequestInfo:
    """What every log line of a request says about it (the path never has its query: a
    download link's token lives there)."""

    request_id: str
    method: str
    path: str


_current: ContextVar[RequestInfo | None] = ContextVar("billing_api_request", default=None)


def current_request() -> RequestInfo | None:
    """The request being served in this context, or None outside one."""
    return _current.get()


def accepted_request_id(value: bytes | None) -> str:
    """The client's id when it is well-formed, else a new one (32 hex digits)."""
    if value is not None:
        text = value.decode("latin-1")
        if _VALID_ID.fullmatch(text):
            return text
    return uuid.uuid4().hex


def route_template(scope: Scope, root_path: str = "") -> str:
    """The matched route's path template (``/api/{version}/invoices``), a mount's prefix plus
    ``/{path}``, or ``<unmatched>``: a bounded set of metric labels, whatever clients send.

    ``root_path`` is the scope's before routing: a mount (static files) extends it."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(route, Mount) and isinstance(path, str):
        return path.rstrip("/") + "/{path}"
    if isinstance(path, str):
        return path or "/"
    mounted = scope.get("root_path", "")
    if isinstance(mounted, str) and mounted.startswith(root_path) and mounted != root_path:
        return mounted[len(root_path):] + "/{path}"
    return UNMATCHED


def _too_large(scope: Scope) -> Response:
    detail = (f"the request's headers exceed {MAX_HEADER_BYTES // 1024} KiB: an API key is 58 "
              "characters, check what your client sends")
    path = scope.get("path", "")
    if path == "/api" or path.startswith("/api/"):
        return problem_response(Request(scope), 431, "headers_too_large", detail)
    return PlainTextResponse(detail, status_code=431)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


class RequestContextMiddleware:
    """Request id, ``X-Request-Id`` answer header, one access log line and the HTTP metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        method = scope["method"] if scope["method"] in STANDARD_METHODS else "OTHER"
        info = RequestInfo(accepted_request_id(_header(scope, b"x-request-id")), method,
                           scope.get("path", ""))
        # Not reset afterwards on purpose: each request runs in a task of its own, and the
        # server's traceback line for an unhandled error is written after we return.
        _current.set(info)
        status = 500  # what the client gets if nothing is sent (the server answers 500)
        started_answer = finished_answer = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_answer, finished_answer
            if message["type"] == "http.response.start":
                status, started_answer = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = info.request_id
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished_answer = True
            await send(message)

        failure: BaseException | None = None
        metrics.IN_PROGRESS.inc()
        try:
            if sum(len(k) + len(v) for k, v in scope.get("headers", ())) > MAX_HEADER_BYTES:
                await _too_large(scope)(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            metrics.IN_PROGRESS.dec()
            # An error after the whole answer went out (Starlette's 500 handler re-raises) is
            # not an abort; one after the status line but before the end is.
            cut = failure if started_answer and not finished_answer else None
            self._finish(route_template(scope, root_path), info, status,
                         time.perf_counter() - started, cut)

    @staticmethod
    def _finish(route: str, info: RequestInfo, status: int, seconds: float,
                aborted: BaseException | None) -> None:
        metrics.observe_request(info.method, route, status, seconds, aborted=aborted is not None)
        fields = {"status": status, "duration_ms": round(seconds * 1000, 1)}
        if aborted is not None:
            # The status line and part of the body went out; the client sees a cut transfer.
            log.warning("%s %s %s aborted mid-response (%s)", info.method, info.path, status,
                        type(aborted).__name__, extra=fields)
            return
        level = logging.DEBUG if info.path in QUIET_PATHS else logging.INFO
        log.log(level, "%s %s %s", info.method, info.path, status, extra=fields)
