"""The OpenID Connect client of the portal's single sign-on, built from Authlib's.

Authlib does the protocol: discovery (``/.well-known/openid-configuration`` of the issuer),
the authorization URL with ``state``, ``nonce`` and a PKCE S256 challenge, the code exchange
at the token endpoint (client secret, HTTP Basic), and the ID token: its signature against the
provider's JWKS and its claims (``iss`` = the configured issuer, ``aud`` = our client id,
``exp``/``iat`` with Authlib's 2 minutes of leeway, ``nonce``, ``at_hash``). Nothing here
parses a JWT by hand.

Key rotation: the JWKS is cached; a token whose key id is unknown *or* whose signature fails
against the cached keys makes us fetch the JWKS again, once, and verify again (a provider
without ``kid`` in its headers rotates too). That costs one fetch per redeemed code at most:
ID tokens come from the token endpoint over our own connection, never from the browser, so
nobody can make us fetch by sending forged ones.

Every failure is an ``SsoRefused`` with a reason for the audit row; tokens are neither logged
nor kept (RP-initiated logout names our client id instead of an ``id_token_hint``).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.base_client.sync_app import BaseApp, OAuth2Mixin
from authlib.integrations.base_client.sync_openid import OpenIDMixin
from authlib.integrations.httpx_client import OAuth2Client
from joserfc.errors import BadSignatureError, ClaimError, InvalidKeyIdError, JoseError

from billing_api.access.sso import SsoRefused
from billing_api.settings import Settings

TIMEOUT_SECONDS = 10.0
# The discovery document is fetched again after this long (endpoints rarely move).
METADATA_MAX_AGE = 24 * 3600.0
UNREACHABLE = ("The sign-in service of the platform cannot be reached right now. Try again in "
               "a few minutes.")


class _AuthlibApp(OAuth2Mixin, OpenIDMixin, BaseApp):  # type: ignore[misc]
    """Authlib's framework-free OAuth 2 + OpenID client, over httpx (synchronous)."""

    client_cls = OAuth2Client


@dataclass(frozen=True)
class Authorization:
    """Where to send the browser, and what its callback must match (kept in a signed cookie
    bound to the browser, never on the server's logs)."""

    url: str
    state: str
    nonce: str
    code_verifier: str


class SsoClient:
    """One per app: the provider's metadata and keys are cached here."""

    def __init__(self, settings: Settings) -> None:
        # Authlib logs the PKCE verifier at DEBUG: never let it through, whatever the level.
        logging.getLogger("authlib").setLevel(logging.INFO)
        self.issuer = settings.oidc_issuer
        self.client_id = settings.oidc_client_id.strip()
        self._app = _AuthlibApp(
            None, client_id=self.client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            server_metadata_url=f"{self.issuer}/.well-known/openid-configuration",
            client_kwargs={"scope": settings.oidc_scopes, "code_challenge_method": "S256",
                           "token_endpoint_auth_method": "client_secret_basic",
                           "timeout": TIMEOUT_SECONDS})

    def _metadata(self) -> dict[str, Any]:
        app = self._app
        loaded = app.server_metadata.get("_loaded_at")
        if loaded is not None and time.time() - loaded > METADATA_MAX_AGE:
            app.server_metadata.clear()
        try:
            metadata: dict[str, Any] = app.load_server_metadata()
        except (httpx.HTTPError, ValueError) as exc:
            app.server_metadata.clear()
            raise SsoRefused("provider_unreachable", UNREACHABLE,
                             detail=f"discovery: {type(exc).__name__}") from None
        if metadata.get("issuer") != self.issuer:
            # OpenID Connect Discovery §4.3: the document must name the issuer we asked.
            app.server_metadata.clear()
            raise SsoRefused("provider_misconfigured", UNREACHABLE,
                             detail="discovery names another issuer")
        return metadata

    def form_origins(self) -> list[str]:
        """Origins the portal's forms may redirect to (the CSP's ``form-action``): the
        issuer's, and those of its authorization and end-session endpoints once known."""
        metadata = self._app.server_metadata
        urls = [self.issuer, metadata.get("authorization_endpoint"),
                metadata.get("end_session_endpoint")]
        found: list[str] = []
        for url in urls:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is not None and parts.scheme in ("http", "https") and parts.netloc:
                origin = f"{parts.scheme}://{parts.netloc}"
                if origin not in found:
                    found.append(origin)
        return found

    def begin(self, redirect_uri: str) -> Authorization:
        """A new authorization request: fresh state, nonce and PKCE verifier."""
        self._metadata()
        verifier = secrets.token_urlsafe(48)
        found = self._app.create_authorization_url(
            redirect_uri=redirect_uri, state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32), code_verifier=verifier)
        return Authorization(url=found["url"], state=found["state"], nonce=found["nonce"],
                             code_verifier=verifier)

    def finish(self, redirect_uri: str, code: str, code_verifier: str,
               nonce: str) -> dict[str, Any]:
        """Redeem ``code`` and return the verified ID token's claims. Raises ``SsoRefused``:
        ``code_rejected`` (the provider refused the code: replayed, expired, not ours),
        ``provider_unreachable``, ``id_token_missing``, ``id_token_signature``,
        ``id_token_<claim>`` (``iss``, ``aud``, ``exp``, ``nonce`` …)."""
        self._metadata()
        try:
            token = self._app.fetch_access_token(redirect_uri=redirect_uri, code=code,
                                                 code_verifier=code_verifier)
        except httpx.HTTPError as exc:
            raise SsoRefused("provider_unreachable", UNREACHABLE,
                             detail=f"token endpoint: {type(exc).__name__}") from None
        except AuthlibBaseError as exc:
            raise SsoRefused("code_rejected", "The platform did not accept this sign-in (it may "
                             "have been used already or be too old). Start again.",
                             detail=f"token endpoint: {exc.error}"[:200]) from None
        if "id_token" not in token:
            raise SsoRefused("id_token_missing", _INVALID, detail="no id_token in the answer")
        options = {"iss": {"essential": True, "values": [self.issuer]},
                   "aud": {"essential": True, "values": [self.client_id]}}
        try:
            try:
                claims = self._app.parse_id_token(token, nonce=nonce, claims_options=options)
            except (BadSignatureError, InvalidKeyIdError):
                self._app.fetch_jwk_set(force=True)  # the provider may have rotated its keys
                claims = self._app.parse_id_token(token, nonce=nonce, claims_options=options)
        except (BadSignatureError, InvalidKeyIdError):
            raise SsoRefused("id_token_signature", _INVALID,
                             detail="the ID token's signature does not verify") from None
        except ClaimError as exc:
            raise SsoRefused(f"id_token_{exc.claim}"[:40], _INVALID,
                             detail=f"ID token: {exc.description}"[:200]) from None
        except JoseError as exc:
            raise SsoRefused("id_token_invalid", _INVALID,
                             detail=f"ID token: {exc.error}"[:200]) from None
        except httpx.HTTPError as exc:
            raise SsoRefused("provider_unreachable", UNREACHABLE,
                             detail=f"keys: {type(exc).__name__}") from None
        return dict(claims)

    def logout_url(self, post_logout_redirect_uri: str) -> str | None:
        """The provider's end-session URL (RP-initiated logout) when its discovery offers one;
        None otherwise, or when the provider cannot be reached (the portal session is ended
        anyway)."""
        try:
            metadata = self._metadata()
        except SsoRefused:
            return None
        if not metadata.get("end_session_endpoint"):
            return None
        found = self._app.create_logout_url(post_logout_redirect_uri=post_logout_redirect_uri,
                                            client_id=self.client_id)
        url: str = found["url"]
        return url


_INVALID = "The platform's answer could not be verified, so the portal cannot let you in."
