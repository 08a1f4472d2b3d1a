"""The cookie that carries one single sign-on attempt from its start to its callback.

``portal_sso`` = base64url(JSON) "." HMAC-SHA256 under a key derived from the secret with its
own label, holding the ``state``, ``nonce`` and PKCE verifier of the authorization request,
when it expires (10 minutes) and an HMAC of the browser's portal session id: a copy of the
cookie is refused in another browser, a tampered one everywhere, and it is deleted by the
callback whatever the outcome (one attempt, one callback). ``HttpOnly``, ``SameSite=Lax`` (the
provider's redirect back is a top-level GET, which Lax lets through), ``Path=/portal/sso``,
``Secure`` over HTTPS: the rules of the session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from billing_api.portal.session import _b64, _signing_key, _unb64, is_https
from billing_api.portal.sso_client import Authorization
from billing_api.settings import Settings

COOKIE_NAME = "portal_sso"
COOKIE_PATH = "/portal/sso"
MAX_AGE_SECONDS = 600
_LABEL = b"billing-api/portal-sso/v1"


@dataclass(frozen=True)
class Pending:
    state: str
    nonce: str
    code_verifier: str


def _bind(settings: Settings, sid: str) -> str:
    key = _signing_key(settings, _LABEL + b"/browser")
    return _b64(hmac.new(key, sid.encode(), hashlib.sha256).digest())


def _sign(settings: Settings, body: str) -> str:
    return _b64(hmac.new(_signing_key(settings, _LABEL), body.encode(), hashlib.sha256).digest())


def write(response: Response, request: Request, settings: Settings, sid: str,
          authorization: Authorization, *, now: float | None = None) -> None:
    payload = {"state": authorization.state, "nonce": authorization.nonce,
               "verifier": authorization.code_verifier, "browser": _bind(settings, sid),
               "expires": int((now or time.time()) + MAX_AGE_SECONDS)}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    response.set_cookie(COOKIE_NAME, f"{body}.{_sign(settings, body)}", max_age=MAX_AGE_SECONDS,
                        path=COOKIE_PATH, httponly=True, samesite="lax",
                        secure=is_https(request, settings))


def read(request: Request, settings: Settings, sid: str, *,
         now: float | None = None) -> tuple[Pending | None, str]:
    """The attempt this browser started, or None and why not (``state_missing``,
    ``state_tampered``, ``state_expired``, ``other_browser``)."""
    value = request.cookies.get(COOKIE_NAME, "")
    if not value:
        return None, "state_missing"
    body, _, signature = value.partition(".")
    if not signature or not hmac.compare_digest(_sign(settings, body), signature):
        return None, "state_tampered"
    try:
        data = json.loads(_unb64(body))
        pending = Pending(str(data["state"]), str(data["nonce"]), str(data["verifier"]))
        browser, expires = str(data["browser"]), int(data["expires"])
    except (ValueError, KeyError, TypeError):
        return None, "state_tampered"
    if expires <= (now or time.time()):
        return None, "state_expired"
    if not hmac.compare_digest(browser, _bind(settings, sid)):
        return None, "other_browser"
    return pending, ""


def clear(response: Response, request: Request, settings: Settings) -> None:
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="lax",
                           secure=is_https(request, settings))
