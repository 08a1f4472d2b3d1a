"""A real OpenID Connect provider on loopback for the single sign-on tests.

``oidc-provider-mock`` (PyPI; Authlib's server side in a Flask app) runs in a child process
of its own on 127.0.0.1 and a free port: real discovery, JWKS, authorization and token
endpoints, RS256-signed ID tokens and RP-initiated logout. A child process because the
provider's Authlib calls emit deprecation warnings that the suite's ``filterwarnings = error``
would turn into 500s inside a thread of ours.

A person's claims are set with ``PUT /users/<sub>``; whatever they hold goes into the ID token
*after* the standard claims, so ``{"aud": …}`` or ``{"exp": …}`` makes the provider sign a
token with a wrong audience or one already expired. ``POST /test/rotate-key`` (added here)
replaces the signing key, as a key rotation does.

Run as a script it is the provider: it prints its port on stdout and serves until killed.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

import httpx


@dataclass(frozen=True)
class Provider:
    issuer: str

    def set_user(self, sub: str, **claims: object) -> None:
        answer = httpx.put(f"{self.issuer}/users/{quote(sub, safe='')}", json=claims, timeout=10)
        assert answer.status_code == 204, answer.text

    def rotate_key(self) -> None:
        answer = httpx.post(f"{self.issuer}/test/rotate-key", timeout=10)
        assert answer.status_code == 204, answer.text

    def jwks(self) -> dict[str, object]:
        found: dict[str, object] = httpx.get(f"{self.issuer}/jwks", timeout=10).json()
        return found

    def authorize(self, authorization_url: str, sub: str) -> str:
        """Sign ``sub`` in on the provider's form (what a person does in the browser) and
        return where the provider sends the browser back: our callback with code and state."""
        assert authorization_url.startswith(self.issuer + "/"), authorization_url
        answer = httpx.post(authorization_url, data={"sub": sub}, timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["location"]


def callback_params(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


@contextmanager
def running_provider() -> Iterator[Provider]:
    process = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the provider did not start (exit {process.poll()})"
        issuer = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=10
                         ).json()["issuer"] == issuer
        yield Provider(issuer)
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def _serve() -> None:
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    import flask
    import oidc_provider_mock
    import werkzeug.serving
    from authlib import jose

    app = oidc_provider_mock.app(require_nonce=True, issue_refresh_token=False)

    @app.post("/test/rotate-key")
    def rotate_key() -> tuple[str, int]:
        flask.g.oidc_provider_mock_storage.jwk = jose.RSAKey.generate_key(is_private=True)
        return "", 204

    server = werkzeug.serving.make_server("127.0.0.1", 0, app, threaded=True)
    print(server.server_port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    _serve()
