"""What every portal page shares: the route class, the request's transaction, who is logged
in, template rendering, and the one place where errors become pages.

``PortalRoute`` wraps each portal route so that, by construction:

* the cookie's session id is looked up in ``access.sessions`` (expired or unknown: anonymous;
  ``last_seen_at`` refreshed at most once a minute, best effort);
* every POST is refused (403 page) unless its ``csrf_token`` matches the session's;
* a user who must change a one-time password is sent to that form from every other page;
* the request is one transaction (``BEGIN IMMEDIATE`` on SQLite for a POST), committed when
  the route returns and rolled back when it raises;
* a domain error becomes a page (403 for a refused action and 404 for an id that is not the
  viewer's, each with a ``portal_denied`` audit row written in its own transaction; 409,
  429 …), never the API's problem document;
* the session cookie is written when it changed, and every answer carries ``no-store`` and a
  Content-Security-Policy that allows nothing from another host.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Coroutine
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response

from billing_api.access import audit, permissions, sessions
from billing_api.access.client_address import request_client_address
from billing_api.access.errors import RateLimited
from billing_api.access.models import Company, User
from billing_api.db import is_lock_timeout, transaction, utcnow
from billing_api.errors import BillingError, Conflict, NotFound, PermissionDenied
from billing_api.portal import session as cookies
from billing_api.portal.session import CSRF_FIELD, PortalSession
from billing_api.settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
PASSWORD_PAGE = "/portal/profile/password"  # noqa: S105  (a path, not a secret)
# GET routes that write (the single sign-on callback starts a session): their transaction
# begins as a writer like a POST's.
WRITING_GETS = {"/portal/sso/callback"}
# A best-effort write (refreshing ``last_seen_at``) gives up rather than queue this long
# behind a billing run holding SQLite's write lock.
TOUCH_LOCK_WAIT = 1.0
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class LoginRequired(Exception):
    """No valid session: the visitor is sent to the login page."""


class PasswordChangeRequired(Exception):
    """The user logged in with a one-time password: every page leads to the change form."""


class CsrfRejected(PermissionDenied):
    code = "csrf_failed"


@dataclass(frozen=True)
class Me:
    """A plain snapshot of the logged-in user for templates (safe after a rollback)."""

    user_id: int
    email: str
    full_name: str
    company_id: int
    company_name: str
    is_admin: bool
    has_api_permission: bool
    api_enabled: bool
    must_change_password: bool = False


@dataclass
class Viewer:
    """The logged-in user and their company, attached to the request's database session."""

    db: Session
    user: User
    company: Company
    me: Me
    session: PortalSession


class _Unit:
    """The request's transaction, opened on first use."""

    def __init__(self, factory: sessionmaker[Session], *, writer: bool) -> None:
        self._factory, self._writer = factory, writer
        self._stack = ExitStack()
        self._session: Session | None = None

    def session(self) -> Session:
        if self._session is None:
            self._session = self._stack.enter_context(
                transaction(self._factory, writer=self._writer))
        return self._session

    def close(self, exc: BaseException | None) -> None:
        if exc is None:
            self._stack.close()
        else:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def portal_session(request: Request) -> PortalSession:
    found: PortalSession = request.state.portal_session
    return found


def db(request: Request) -> Session:
    unit: _Unit = request.state.portal_unit
    return unit.session()


def visitor_address(request: Request) -> str:
    """The visitor's address as the API's whitelist would see it ("" when unknown)."""
    address = request_client_address(request, settings_of(request).trusted_proxies)
    return str(address) if address else ""


def find_viewer(request: Request) -> Viewer | None:
    """The logged-in user, or None (and a fresh anonymous session) when the session names
    nobody, an inactive user, or was made before the password changed."""
    session = portal_session(request)
    if session.user_id is None:
        return None
    settings = settings_of(request)
    database = db(request)
    user = database.get(User, session.user_id)
    company = database.get(Company, user.company_id) if user is not None else None
    binding = sessions.password_binding(settings, user.password_hash) if user else ""
    if user is None or company is None or not user.is_active or company.kind != "partner" \
            or not secrets.compare_digest(binding, session.binding):
        request.state.portal_session = PortalSession.fresh(settings)
        return None
    me = Me(user.id, user.email, user.full_name, company.id, company.name,
            user.is_account_admin, permissions.has_api_permission(user), company.api_enabled,
            user.must_change_password)
    request.state.portal_me = me
    return Viewer(database, user, company, me, session)


def current_viewer(request: Request) -> Viewer:
    """The logged-in user; raises ``LoginRequired`` (a redirect to the login page), or
    ``PasswordChangeRequired`` (a redirect to the change form) until a one-time password has
    been replaced."""
    viewer = find_viewer(request)
    if viewer is None:
        raise LoginRequired
    if viewer.me.must_change_password and request.url.path != PASSWORD_PAGE:
        raise PasswordChangeRequired
    return viewer


ViewerDep = Annotated[Viewer, Depends(current_viewer)]


class ApiNotEnabled(Conflict):
    code = "api_not_enabled"


def billing_viewer(viewer: ViewerDep) -> Viewer:
    """The viewer of a "Billing API" page: needs API permission (the access service decides:
    403 page and an audit row otherwise) and the API switched on."""
    permissions.require_api_permission(viewer.company, viewer.user)
    if not viewer.company.api_enabled:
        raise ApiNotEnabled(f"The Billing API is not enabled for {viewer.company.name} yet: "
                            "the Account Administrator can enable it under Profile → Your APIs.")
    return viewer


BillingViewerDep = Annotated[Viewer, Depends(billing_viewer)]


def _local(value: dt.datetime | None, timezone: str, fmt: str) -> str:
    return value.astimezone(ZoneInfo(timezone)).strftime(fmt) if value else ""


def _environment(settings: Settings) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    # A fresh one-time nonce per rendered form that reveals a secret (see
    # access.sessions.claim_nonce).
    env.globals["new_nonce"] = lambda: secrets.token_urlsafe(16)
    zone = settings.timezone
    env.filters["when"] = lambda v: _local(v, zone, "%Y-%m-%d %H:%M")
    # A key "expires on D" works until the end of D: show D, not the next midnight.
    env.filters["until"] = lambda v: _local(v - dt.timedelta(seconds=1), zone, "%Y-%m-%d") \
        if v else ""
    return env


def render(request: Request, template: str, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    """A page: ``context`` plus who is logged in, the CSRF token and any flash message."""
    env: jinja2.Environment = request.app.state.portal_templates
    session = portal_session(request)
    context.setdefault("me", getattr(request.state, "portal_me", None))
    context.setdefault("flash", session.pop_flash())
    context.setdefault("errors", {})
    context.setdefault("values", {})
    html = env.get_template(template).render(
        request=request, csrf_token=session.csrf, csrf_field=CSRF_FIELD, path=request.url.path,
        **context)
    return HTMLResponse(html, status_code=status_code)


def redirect(request: Request, url: str, flash: str = "") -> Response:
    """303 See Other (POST → GET); htmx requests get ``HX-Redirect`` instead."""
    if flash:
        portal_session(request).set_flash(flash)
    if request.headers.get("hx-request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def claim_nonce(request: Request, nonce: str) -> bool:
    """True the first time this one-time form nonce is posted in this login session."""
    record_id = portal_session(request).record_id
    return record_id is not None and sessions.claim_nonce(db(request), record_id, nonce)


def release_nonce(request: Request, nonce: str) -> None:
    """The form was refused and created nothing: it may be sent again."""
    record_id = portal_session(request).record_id
    if record_id is not None:
        sessions.release_nonce(db(request), record_id, nonce)


def begin_login(request: Request, user: User, *, signed_in_with: str = "password") -> None:
    """Start a new server-side session for ``user`` in this browser: a new id and CSRF token
    (no fixation); the browser's previous session, if any, ends."""
    previous = portal_session(request).record_id
    database = db(request)
    if previous is not None:
        sessions.end(database, previous)
    settings = settings_of(request)
    token, record = sessions.start(
        database, settings, user, client_address=visitor_address(request),
        user_agent=request.headers.get("user-agent", ""), signed_in_with=signed_in_with)
    fresh = PortalSession.fresh(settings, sid=token)
    fresh.record_id, fresh.user_id, fresh.binding = record.id, user.id, record.password_binding
    fresh.signed_in_with = signed_in_with
    request.state.portal_session = fresh


def end_login(request: Request, flash: str) -> None:
    """Forget this browser's session (its row is gone or going): a fresh anonymous cookie."""
    request.state.portal_session = PortalSession.fresh(settings_of(request))
    portal_session(request).set_flash(flash)


def _best_effort(factory: sessionmaker[Session], work: Callable[[Session], object]) -> None:
    try:
        with transaction(factory, writer=True, lock_wait=TOUCH_LOCK_WAIT) as database:
            work(database)
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise


def resolve_login(request: Request) -> None:
    """Attach the server-side session the cookie names (if it is live) to the request's
    session; forget an expired one (its row is deleted, best effort)."""
    browser = portal_session(request)
    if browser.dirty:
        return  # no cookie came with the request: a brand-new anonymous session
    settings = settings_of(request)
    factory: sessionmaker[Session] = request.app.state.session_factory
    with transaction(factory) as database:
        record = sessions.lookup(database, settings, browser.sid)
        found = (record.id, record.user_id, record.password_binding, record.created_at,
                 record.last_seen_at, record.client_address,
                 record.signed_in_with) if record else None
    if found is None:
        return
    record_id, user_id, binding, created_at, last_seen_at, last_address, via = found
    now = utcnow()
    if sessions.is_expired(settings, created_at, last_seen_at, now):
        _best_effort(factory, lambda d: sessions.end(d, record_id))
        request.state.portal_session = PortalSession.fresh(settings)
        return
    browser.record_id, browser.user_id, browser.binding = record_id, user_id, binding
    browser.signed_in_with = via
    address = visitor_address(request)
    if sessions.needs_touch(settings, last_seen_at, now) or address != last_address:
        _best_effort(factory, lambda d: sessions.touch(d, record_id, client_address=address,
                                                       now=now))


ERROR_PAGES: list[tuple[type[BaseException], int, str]] = [
    (CsrfRejected, 403, "The form could not be accepted"),
    (PermissionDenied, 403, "Not allowed"),
    (NotFound, 404, "Not found"),
    (RateLimited, 429, "Too many attempts"),
    (Conflict, 409, "That cannot be done now"),
    (BillingError, 400, "That did not work"),
]


def error_page(request: Request, exc: BillingError) -> Response:
    status, title = next((s, t) for cls, s, t in ERROR_PAGES if isinstance(exc, cls))
    me: Me | None = getattr(request.state, "portal_me", None)
    if me is None and portal_session(request).user_id is not None:
        # Refused before the route looked up who is logged in (a CSRF failure): look now,
        # in a read transaction of its own, for the audit row and the page's menu.
        unit = request.state.portal_unit = _Unit(request.app.state.session_factory,
                                                 writer=False)
        try:
            viewer = find_viewer(request)
        finally:
            unit.close(None)
        me = viewer.me if viewer else None
    if isinstance(exc, PermissionDenied | NotFound) and me is not None:
        # A 404 here is an id that is not the viewer's company's (a key, user or whitelist
        # entry of another partner, or none at all): a probe worth a row like a 403.
        # In a transaction of its own: the request's transaction has been rolled back.
        audit.record_in_own_transaction(
            request.app.state.session_factory, audit.EventType.PORTAL_DENIED,
            company_id=me.company_id, actor_user_id=me.user_id,
            client_address=visitor_address(request), path=request.url.path,
            reason=exc.code, detail=exc.message)
    message = exc.message
    if isinstance(exc, CsrfRejected):
        message = ("This form was not sent from a current portal page (its security token is "
                   "missing or out of date). Go back, reload the page and try again.")
    response = render(request, "error.html", status, title=title, message=message)
    if isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _check_csrf(request: Request) -> None:
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    if not portal_session(request).csrf_matches(submitted if isinstance(submitted, str)
                                                else None):
        raise CsrfRejected("the form's CSRF token is missing or wrong")


def _content_security_policy(request: Request) -> str:
    """The CSP; with single sign-on, forms may also lead to the provider: the "Sign in with"
    button and "Log out" answer with a redirect there, which ``form-action`` governs too."""
    policy = SECURITY_HEADERS["Content-Security-Policy"]
    origins: Callable[[], list[str]] | None = getattr(request.app.state,
                                                      "portal_form_origins", None)
    extra = origins() if origins is not None else []
    return policy.replace("form-action 'self'", " ".join(["form-action 'self'", *extra]))


def _finish(request: Request, response: Response) -> Response:
    session = portal_session(request)
    if session.dirty:
        cookies.write_cookie(response, request, settings_of(request), session)
    response.headers.setdefault("Content-Security-Policy", _content_security_policy(request))
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class PortalRoute(APIRoute):
    """An ``APIRoute`` with the portal's CSRF check, transaction and error pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            settings = settings_of(request)
            request.state.portal_session = cookies.load(request, settings)
            await run_in_threadpool(resolve_login, request)
            unit = _Unit(request.app.state.session_factory,
                         writer=request.method == "POST" or self.path in WRITING_GETS)
            request.state.portal_unit = unit
            try:
                if request.method == "POST":
                    await _check_csrf(request)
                response = await original(request)
            except (BillingError, LoginRequired, PasswordChangeRequired) as exc:
                await run_in_threadpool(unit.close, exc)
                if isinstance(exc, LoginRequired):
                    response = redirect(request, "/", "Log in to continue.")
                elif isinstance(exc, PasswordChangeRequired):
                    response = redirect(request, PASSWORD_PAGE, "Choose your own password "
                                        "first: the one you logged in with was for once only.")
                else:
                    response = await run_in_threadpool(error_page, request, exc)
                return _finish(request, response)
            except BaseException as exc:
                await run_in_threadpool(unit.close, exc)
                raise
            await run_in_threadpool(unit.close, None)
            return _finish(request, response)

        return handler


def install_templates(app: Any, settings: Settings) -> None:
    app.state.portal_templates = _environment(settings)
