"""Login, logout, the profile and its "Your APIs" tab (where the API is switched on).

Logins are throttled per e-mail and per address (``access.ratelimit.LoginThrottle``, counted
before the password is verified); every wrong attempt is counted in a ``login_failed`` audit
row (aggregated per address, reason and minute) and gets the same message whether or not
the e-mail exists (the password is verified against a dummy hash when it does not).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from sqlalchemy import func, select
from starlette.responses import RedirectResponse, Response

from billing_api.access import audit, keys, permissions, sessions
from billing_api.access.errors import RateLimited
from billing_api.access.models import Company, User, WhitelistEntry
from billing_api.access.passwords import verify_password
from billing_api.access.ratelimit import LoginThrottle
from billing_api.db import transaction
from billing_api.errors import Conflict
from billing_api.portal.sso_client import SsoClient
from billing_api.portal.sso_pages import absolute
from billing_api.portal.web import (
    PASSWORD_PAGE,
    PortalRoute,
    ViewerDep,
    begin_login,
    db,
    end_login,
    find_viewer,
    portal_session,
    redirect,
    render,
    settings_of,
    visitor_address,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

WRONG_LOGIN = "Wrong e-mail or password."
PROFILE = "/portal/profile"
YOUR_APIS = "/portal/profile/apis"


def _ways_in(request: Request) -> dict[str, Any]:
    """What the login page offers: the password form and/or "Sign in with <platform>"."""
    settings = settings_of(request)
    return {"local_login": settings.local_login,
            "sso_name": settings.oidc_platform_name if settings.oidc_enabled else ""}


@router.get("/")
def login_page(request: Request) -> Response:
    """The login form, or the profile when the visitor is logged in already."""
    if find_viewer(request) is not None:
        return redirect(request, PROFILE)
    return render(request, "login.html", title="Log in", **_ways_in(request))


def _login_form(request: Request, status: int, message: str = "",
                errors: dict[str, str] | None = None, email: str = "") -> Response:
    return render(request, "login.html", status, title="Log in", form_error=message,
                  errors=errors or {}, values={"email": email}, **_ways_in(request))


@router.post("/portal/login")
def log_in(request: Request, email: Annotated[str, Form()] = "",
           password: Annotated[str, Form()] = "") -> Response:
    wanted = email.strip().lower()
    settings = settings_of(request)
    if not settings.local_login:
        # Switched off for this installation: refused before any password is looked at.
        _audit_failure(request, wanted, visitor_address(request) or "unknown",
                       "local_login_off")
        return _login_form(request, 403, "Password login is switched off here: sign in with "
                           f"{settings.oidc_platform_name}.")
    missing = {name: text for name, value, text in (
        ("email", wanted, "Enter your e-mail address."),
        ("password", password, "Enter your password.")) if not value}
    if missing:
        return _login_form(request, 400, errors=missing, email=email.strip())
    throttle: LoginThrottle = request.app.state.portal_login_throttle
    address = visitor_address(request) or "unknown"
    try:
        # Counted before the password is verified: parallel guesses cannot exceed the limit.
        attempt = throttle.attempt(wanted, address)
    except RateLimited as exc:
        _audit_failure(request, wanted, address, "throttled")
        response = _login_form(request, 429, exc.message, email=email.strip())
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    with transaction(request.app.state.session_factory) as session:
        row = session.execute(
            select(User.id, User.password_hash, User.is_active, Company.kind)
            .join(Company, Company.id == User.company_id).where(User.email == wanted)
        ).one_or_none()
    # Always one argon2 verify, so an unknown e-mail takes as long as a known one.
    correct = verify_password(row.password_hash if row else None, password)
    if row is None or not correct or not row.is_active or row.kind != "partner":
        _audit_failure(request, wanted, address, "bad_credentials")
        return _login_form(request, 400, WRONG_LOGIN, email=email.strip())
    throttle.succeeded(attempt)
    user = db(request).get(User, row.id)
    if user is None or user.password_hash != row.password_hash:
        # Changed between the check and now (deactivated, or a new password): try again.
        return _login_form(request, 400, WRONG_LOGIN, email=email.strip())
    begin_login(request, user)
    return redirect(request, PASSWORD_PAGE if user.must_change_password else PROFILE)


def _audit_failure(request: Request, email: str, address: str, reason: str) -> None:
    # A read of its own: the request's transaction would be a writer (a POST), and failed
    # logins are counted in the app's RefusalLog, aggregated per address, reason and minute.
    with transaction(request.app.state.session_factory) as session:
        user = session.scalar(select(User).where(User.email == email))
        company_id, known = (user.company_id, user.email) if user else (None, None)
    refusals: audit.RefusalLog = request.app.state.refusal_audit
    # The typed value is kept only when it names an account: a password typed into the
    # e-mail field must not end up in the audit table.
    refusals.note(audit.EventType.LOGIN_FAILED, company_id=company_id,
                  client_address=address, path=request.url.path, reason=reason,
                  detail=known or "unknown e-mail")


@router.post("/portal/logout")
def log_out(request: Request) -> Response:
    """End this browser's session on the server: a copy of its cookie is worthless now. A
    session that began with single sign-on then goes on to the provider's end-session
    endpoint (RP-initiated logout) when its discovery offers one."""
    browser = portal_session(request)
    record_id, via = browser.record_id, browser.signed_in_with
    client: SsoClient | None = request.app.state.portal_sso
    # Asked before the transaction opens: it may fetch the provider's discovery document.
    provider_logout = client.logout_url(absolute(request, "/")) \
        if client is not None and record_id is not None and via == "oidc" else None
    if record_id is not None:
        sessions.end(db(request), record_id)
    end_login(request, "You are logged out.")
    if provider_logout is not None:
        return RedirectResponse(provider_logout, status_code=303)
    return redirect(request, "/")


@router.get(PROFILE)
def profile(request: Request, viewer: ViewerDep) -> Response:
    return render(request, "profile.html", title="Profile", user=viewer.user,
                  company=viewer.company, tab="details")


def _admins(viewer_company: Company) -> list[User]:
    return [u for u in viewer_company.users if u.is_account_admin and u.is_active]


@router.get(YOUR_APIS)
def your_apis(request: Request, viewer: ViewerDep) -> Response:
    company = viewer.company
    active_keys = [k for k in keys.list_keys(viewer.db, company)
                   if keys.key_status(k) == "active"]
    entries = viewer.db.scalar(select(func.count()).select_from(WhitelistEntry).where(
        WhitelistEntry.company_id == company.id)) or 0
    return render(request, "apis.html", title="Your APIs", company=company,
                  admins=_admins(company), tab="apis", active_keys=len(active_keys),
                  whitelist_entries=entries)


@router.post(f"{YOUR_APIS}/enable")
def enable_api(request: Request, viewer: ViewerDep) -> Response:
    """Switch the Billing API on: the access service refuses anyone but the Account
    Administrator (403 page, audited)."""
    permissions.set_api_enabled(viewer.db, viewer.company, viewer.user, True,
                                client_address=visitor_address(request))
    return redirect(request, YOUR_APIS,
                    "The Billing API is enabled. Next: create an API key and whitelist the "
                    "IP address your software calls from.")


@router.get(f"{YOUR_APIS}/disable")
def confirm_disable_api(request: Request, viewer: ViewerDep) -> Response:
    """The confirmation step (a page, so it works without JavaScript); administrator only."""
    permissions.require_admin(viewer.company, viewer.user)
    return render(request, "api_disable.html", title="Disable the Billing API",
                  company=viewer.company)


@router.post(f"{YOUR_APIS}/disable")
def disable_api(request: Request, viewer: ViewerDep) -> Response:
    """Switch the Billing API off: every key and link of the company is refused from the next
    request on. Refused (403 page, audited) to anyone but the Account Administrator."""
    permissions.require_admin(viewer.company, viewer.user)
    if not viewer.company.api_enabled:
        raise Conflict(f"The Billing API of {viewer.company.name} is not enabled.",
                       code="api_not_enabled")
    permissions.set_api_enabled(viewer.db, viewer.company, viewer.user, False,
                                client_address=visitor_address(request))
    return redirect(request, YOUR_APIS,
                    "The Billing API is disabled: every API call and download link of "
                    f"{viewer.company.name} is refused until it is enabled again.")

