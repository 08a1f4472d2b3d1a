"""The portal's session: a signed cookie holding who is logged in and the CSRF token.

The cookie is ``base64url(JSON payload) "." base64url(HMAC-SHA256)`` under a key derived from
the settings' secret (its own label, so it differs from the key pepper and the link-signing
key). It holds no secret of the partner's: a session id, the user id, the login time, a
digest binding it to the user's password hash, the CSRF synchroniser token, a flash message
and the one-time form nonces already used. Nothing is stored on the server.

* **Fixation**: ``log_in`` replaces the session id and the CSRF token, so a cookie planted
  before login carries nothing afterwards.
* **Lifetime**: a logged-in session ends 8 hours after login (checked from the signed login
  time, not only by the cookie's ``Max-Age``), when the user is deactivated, or when the
  password changes (the binding digest no longer matches).
* **CSRF**: every POST must carry ``csrf_token`` equal to the session's token (compared in
  constant time); ``portal.web`` checks it before any route runs.
* **Shown once**: forms that reveal a secret carry a random ``form_nonce``; a nonce is
  accepted once per session, so re-posting the form (a reload) cannot reveal or create again.
* **Cookie flags**: HttpOnly, SameSite=Lax, Path=/, and Secure when the request came over
  HTTPS (directly, or per ``X-Forwarded-Proto`` from a configured trusted proxy).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from billing_api.access.client_address import parse_address, parse_trusted_proxies
from billing_api.settings import Settings

COOKIE_NAME = "portal_session"
LIFETIME_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"
NONCE_FIELD = "form_nonce"
MAX_USED_NONCES = 20


@dataclass
class PortalSession:
    """One browser's session; ``dirty`` means the cookie must be written on the response."""

    sid: str
    csrf: str
    user_id: int | None = None
    logged_in_at: int = 0
    binding: str = ""
    flash: str = ""
    used_nonces: list[str] = field(default_factory=list)
    dirty: bool = False

    @classmethod
    def fresh(cls) -> PortalSession:
        return cls(sid=secrets.token_urlsafe(16), csrf=secrets.token_urlsafe(32), dirty=True)

    def payload(self) -> dict[str, Any]:
        return {"sid": self.sid, "csrf": self.csrf, "uid": self.user_id,
                "iat": self.logged_in_at, "bind": self.binding, "flash": self.flash,
                "used": self.used_nonces}

    def csrf_matches(self, submitted: str | None) -> bool:
        return bool(submitted) and hmac.compare_digest(
            self.csrf.encode(), (submitted or "").encode())

    def take_nonce(self, nonce: str) -> bool:
        """True the first time ``nonce`` is seen in this session; False for a repeat or none."""
        if not nonce or nonce in self.used_nonces:
            return False
        self.used_nonces = [*self.used_nonces, nonce][-MAX_USED_NONCES:]
        self.dirty = True
        return True

    def set_flash(self, message: str) -> None:
        self.flash, self.dirty = message, True

    def pop_flash(self) -> str:
        message = self.flash
        if message:
            self.flash, self.dirty = "", True
        return message


def _signing_key(settings: Settings) -> bytes:
    secret = settings.secret_key.get_secret_value().encode()
    return hmac.new(secret, b"billing-api/portal-session/v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def password_binding(settings: Settings, password_hash: str) -> str:
    """A short digest of the password hash: a new password ends every existing session."""
    mac = hmac.new(_signing_key(settings), b"bind\n" + password_hash.encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def encode(settings: Settings, session: PortalSession) -> str:
    body = _b64(json.dumps(session.payload(), separators=(",", ":")).encode())
    signature = _b64(hmac.new(_signing_key(settings), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def decode(settings: Settings, value: str, *, now: float | None = None) -> PortalSession | None:
    """The session in a cookie value, or None when it is unsigned, tampered or expired."""
    body, _, signature = value.partition(".")
    expected = _b64(hmac.new(_signing_key(settings), body.encode(), hashlib.sha256).digest())
    if not signature or not hmac.compare_digest(expected, signature):
        return None
    try:
        data = json.loads(_unb64(body))
        session = PortalSession(
            sid=str(data["sid"]), csrf=str(data["csrf"]),
            user_id=int(data["uid"]) if data["uid"] is not None else None,
            logged_in_at=int(data["iat"]), binding=str(data["bind"]),
            flash=str(data["flash"]), used_nonces=[str(n) for n in data["used"]])
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None
    current = time.time() if now is None else now
    if session.user_id is not None and not (
            0 <= current - session.logged_in_at < LIFETIME_SECONDS):
        return None
    return session


def load(request: Request, settings: Settings) -> PortalSession:
    """The request's session, or a fresh anonymous one (with a new CSRF token)."""
    value = request.cookies.get(COOKIE_NAME)
    found = decode(settings, value) if value else None
    return found or PortalSession.fresh()


def log_in(settings: Settings, user_id: int, password_hash: str) -> PortalSession:
    """A brand-new session for ``user_id``: new id, new CSRF token (no session fixation)."""
    session = PortalSession.fresh()
    session.user_id = user_id
    session.logged_in_at = int(time.time())
    session.binding = password_binding(settings, password_hash)
    return session


def is_https(request: Request, settings: Settings) -> bool:
    """Whether the browser talks HTTPS to us: the request's own scheme, or
    ``X-Forwarded-Proto`` when the TCP peer is one of the configured trusted proxies."""
    if request.url.scheme == "https":
        return True
    peer = parse_address(request.client.host) if request.client else None
    trusted = parse_trusted_proxies(settings.trusted_proxies)
    if peer is None or not any(peer.version == n.version and peer in n for n in trusted):
        return False
    proto = request.headers.get("x-forwarded-proto", "").split(",")[-1].strip().lower()
    return proto == "https"


def write_cookie(response: Response, request: Request, settings: Settings,
                 session: PortalSession) -> None:
    """Set the cookie; a logged-in session's cookie lives as long as the session may."""
    response.set_cookie(
        COOKIE_NAME, encode(settings, session),
        max_age=LIFETIME_SECONDS if session.user_id is not None else None,
        path="/", httponly=True, samesite="lax", secure=is_https(request, settings))
