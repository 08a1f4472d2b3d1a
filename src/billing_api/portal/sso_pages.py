"""Single sign-on with the distributor's platform (OpenID Connect, Authorization Code + PKCE).

``POST /portal/sso/start`` (the login page's "Sign in with …" button, a form with its CSRF
token) sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE challenge,
kept in a signed short-lived cookie bound to this browser (``portal/sso_state.py``).
``GET /portal/sso/callback`` checks the ``state`` against that cookie (and deletes it), redeems
the code, verifies the ID token (``portal/sso_client.py``, Authlib) and lets
``access.sso.resolve`` say which portal user this is. Then it is an ordinary login: a new
server-side session (``signed_in_with = "oidc"``), new id, new CSRF token.

Every refusal is a page that says what happened and a ``sso_refused`` audit row (counted per
address, reason and minute like failed logins); no token is logged or stored. Without the
provider configured both routes answer 404.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from billing_api.access import audit, sso, users
from billing_api.access.sso import SsoRefused
from billing_api.errors import NotFound
from billing_api.portal import sso_state
from billing_api.portal.session import is_https
from billing_api.portal.sso_client import SsoClient
from billing_api.portal.web import (
    PortalRoute,
    begin_login,
    db,
    portal_session,
    redirect,
    render,
    settings_of,
    visitor_address,
)

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

START = "/portal/sso/start"
CALLBACK = "/portal/sso/callback"
PROFILE = "/portal/profile"
TRY_AGAIN = "Something went wrong with this sign-in. Go back to the login page and try again."


def sso_client(request: Request) -> SsoClient:
    """The app's provider client; ``NotFound`` (404) when single sign-on is not configured."""
    client: SsoClient | None = getattr(request.app.state, "portal_sso", None)
    if client is None:
        raise NotFound("single sign-on is not configured here", code="sso_not_configured")
    return client


def absolute(request: Request, path: str) -> str:
    """``path`` on this portal as the browser sees it (HTTPS behind a trusted proxy)."""
    scheme = "https" if is_https(request, settings_of(request)) else request.url.scheme
    return f"{scheme}://{request.url.netloc}{path}"


@router.post(START)
def start(request: Request) -> Response:
    client = sso_client(request)
    try:
        authorization = client.begin(absolute(request, CALLBACK))
    except SsoRefused as exc:
        return refused(request, exc)
    response = RedirectResponse(authorization.url, status_code=303)
    sso_state.write(response, request, settings_of(request), portal_session(request).sid,
                    authorization)
    return response


@router.get(CALLBACK)
def callback(request: Request, state: str = "", code: str = "", error: str = "") -> Response:
    client = sso_client(request)
    settings = settings_of(request)
    pending, why = sso_state.read(request, settings, portal_session(request).sid)
    try:
        if pending is None:
            raise SsoRefused(why, TRY_AGAIN)
        if not hmac.compare_digest(pending.state.encode(), state.encode()):
            raise SsoRefused("state_mismatch", TRY_AGAIN)
        if error:
            raise SsoRefused("provider_denied", "The platform did not sign you in.",
                             detail=f"provider error {error[:60]}")
        if not code:
            raise SsoRefused("code_missing", TRY_AGAIN)
        claims = client.finish(absolute(request, CALLBACK), code, pending.code_verifier,
                               pending.nonce)
        identity = sso.Identity.from_claims(claims, settings.oidc_company_claim)
        user = sso.resolve(db(request), identity)
    except SsoRefused as exc:
        response = refused(request, exc)
    else:
        if user.must_change_password:
            # A one-time password someone else saw must not outlive a sign-in that did
            # without it: replaced by one nobody knows (the operator can reset it).
            users.reset_password(db(request), user, secrets.token_urlsafe(32),
                                 must_change=False)
        begin_login(request, user, signed_in_with="oidc")
        response = redirect(request, PROFILE, f"Signed in with {settings.oidc_platform_name}.")
    sso_state.clear(response, request, settings)
    return response


def refused(request: Request, exc: SsoRefused) -> Response:
    """The refusal page, and its audit row (aggregated like failed logins)."""
    refusals: audit.RefusalLog = request.app.state.refusal_audit
    refusals.note(audit.EventType.SSO_REFUSED, company_id=exc.company_id,
                  client_address=visitor_address(request) or "unknown",
                  path=request.url.path, reason=exc.code, detail=exc.detail)
    status = 502 if exc.code in ("provider_unreachable", "provider_misconfigured") else 403
    platform = settings_of(request).oidc_platform_name
    return render(request, "error.html", status, title=f"Sign-in with {platform} refused",
                  message=exc.message)
