"""No issued key or link token appears in any log line captured so far in the session."""

from __future__ import annotations

import httpx
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, links
from billing_api.settings import Settings
from tests import log_capture
from tests.access_helpers import make_partner, test_app
from tests.http_server import serve


def test_secrets_never_logged(settings: Settings, factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings)
    url = links.signed_url(settings, keys.digest(settings, p.secret), "/api/v4/whoami",
                           [("format", "json")])
    with serve(test_app(settings)) as base:
        assert httpx.get(base + "/api/v4/whoami", headers={"X-Api-Key": p.secret}).is_success
        assert httpx.get(base + url).is_success
        httpx.get(base + "/api/v4/whoami?token=x", headers={"X-Api-Key": p.secret[:-1]})
    assert p.secret in log_capture.ISSUED
    assert any("whoami" in line for line in log_capture.STORE.lines)  # the capture works
    assert log_capture.leaked_secrets() == []
