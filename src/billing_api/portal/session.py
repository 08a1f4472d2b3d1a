"""The portal's session cookie: a signed envelope around a random session id.

The cookie is ``base64url(JSON payload) "." base64url(HMAC-SHA256)`` under a key derived from
the settings' secret (its own label). The payload is a random 256-bit session id and a flash
message; nothing else. Who is logged in is decided on the server: ``access.sessions`` keeps
one row per logged-in session, found by an HMAC digest of the id, and a session without a
live row is anonymous. So logging out (the row is deleted) makes a copied cookie worthless.

* **Fixation**: logging in issues a brand-new session id, so a cookie planted before login
  carries nothing afterwards.
* **CSRF**: the synchroniser token is HMAC(secret, session id), never stored: bound to the
  session (a new id at login, at a password change), unguessable without the secret, compared
  in constant time. ``portal.web`` checks it on every POST before any route runs.
* **Cookie flags**: HttpOnly, SameSite=Lax, Path=/, and Secure when the request came over
  HTTPS (directly, or per ``X-Forwarded-Proto`` from a configured trusted proxy).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from billing_api.access import sessions
from billing_api.access.client_address import parse_address, parse_trusted_proxies
from billing_api.settings import Settings

COOKIE_NAME = "portal_session"
CSRF_FIELD = "csrf_token"
NONCE_FIELD = "form_nonce"


@dataclass
class PortalSession:
    """One browser's session; ``dirty`` means the cookie must be written on the response.
    ``record_id`` and ``user_id`` come from the server-side row (None: anonymous)."""

    sid: str
    csrf: str
    flash: str = ""
    dirty: bool = False
    record_id: int | None = None
    user_id: int | None = None
    binding: str = ""
    signed_in_with: str = ""  # the server-side row's: "password" or "oidc"

    @classmethod
    def fresh(cls, settings: Settings, sid: str | None = None) -> PortalSession:
        """A new anonymous session (or, with ``sid``, the one a login just started)."""
        sid = sid or sessions.new_token()
        return cls(sid=sid, csrf=csrf_token(settings, sid), dirty=True)

    def csrf_matches(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(
            self.csrf.encode(), (submitted or "").encode())

    def set_flash(self, message: str) -> None:
        self.flash, self.dirty = message, True

    def pop_flash(self) -> str:
        message = self.flash
        if message:
            self.flash, self.dirty = "", True
        return message


def _signing_key(settings: Settings, label: bytes = b"billing-api/portal-session/v1") -> bytes:
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, label, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def csrf_token(settings: Settings, sid: str) -> str:
    """The session's CSRF token: derived from its id, so it dies with the session."""
    key = _signing_key(settings, b"billing-api/portal-csrf/v1")
    return _b64(hmac.new(key, sid.encode(), hashlib.sha256).digest())


def encode(settings: Settings, session: PortalSession) -> str:
    payload = {"sid": session.sid, "flash": session.flash}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_signing_key(settings), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def decode(settings: Settings, value: str) -> PortalSession | None:
    """The session in a cookie value, or None when it is unsigned or tampered with. Whether
    it is logged in is for ``access.sessions`` to say (see ``portal.web``)."""
    body, _, signature = value.partition(".")
    expected = _b64(hmac.new(_signing_key(settings), body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(_unb64(body))
        sid, flash = str(data["sid"]), str(data["flash"])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    return PortalSession(sid=sid, csrf=csrf_token(settings, sid), flash=flash)


def load(request: Request, settings: Settings) -> PortalSession:
    """The request's session, or a fresh anonymous one (with a new CSRF token)."""
    value = request.cookies.get(COOKIE_NAME)
    found = decode(settings, value) if value else None
    return found or PortalSession.fresh(settings)


def is_https(request: Request, settings: Settings) -> bool:
    """Whether the browser talks HTTPS to us: the request's own scheme, or
    ``X-Forwarded-Proto`` when the TCP peer is one of the configured trusted proxies."""
    if request.url.scheme == "https":
        return True
    peer = parse_address(request.client.host) if request.client else None
    trusted = parse_trusted_proxies(settings.trusted_proxies)
    if peer is None or not any(peer.version == n.version and peer in n for n in trusted):
        return False
    # Every field line counts (RFC 9110 §5.3): the proxy's own value is the last one, whatever
    # line a client sent before it.
    lines = ",".join(request.headers.getlist("x-forwarded-proto"))
    proto = lines.split(",")[-1].strip().lower()
    return proto == "https"


def write_cookie(response: Response, request: Request, settings: Settings,
                 session: PortalSession) -> None:
    """Set the cookie; a logged-in session's cookie lives as long as the session may (the
    server enforces both timeouts whatever the browser keeps)."""
    response.set_cookie(
        COOKIE_NAME, encode(settings, session),
        max_age=settings.portal_session_max_seconds if session.record_id is not None else None,
        path="/", httponly=True, samesite="lax", secure=is_https(request, settings))
