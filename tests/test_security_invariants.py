"""Properties of the code base that docs/security.md relies on, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import billing_api

PACKAGE = Path(billing_api.__file__).parent
# Modules that open connections to other hosts. Redis (rate limits) and the database are
# reached only at addresses the operator configures, never at one a client sends.
OUTBOUND = {"httpx", "requests", "urllib.request", "http.client", "aiohttp", "socket",
            "smtplib", "ftplib", "urllib3"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


# The modules allowed to connect out: webhook delivery, which checks every resolved address
# before it connects (webhooks/ssrf.py, docs/webhooks.md "Security"), and the single sign-on
# client, which talks only to the issuer the operator configures (BILLING_API_OIDC_ISSUER)
# and the endpoints its discovery document names; no URL a partner sends reaches it.
OUTBOUND_ALLOWED = {"webhooks/delivery.py", "portal/sso_client.py"}


def _outbound_imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        names = {name for name in _imports(path)
                 if name in OUTBOUND or name.split(".")[0] in OUTBOUND - {"urllib", "http"}}
        if names:
            found[path.relative_to(PACKAGE).as_posix()] = names
    return found


def test_only_webhook_delivery_and_sign_on_make_outbound_requests() -> None:
    """API7 (SSRF): nothing in the package can fetch a URL a client supplies, except webhook
    delivery, which refuses private and loopback addresses after resolving the host."""
    found = _outbound_imports()
    assert set(found) - OUTBOUND_ALLOWED == set(), found
    # The exceptions are real (the check is not vacuous): both do import httpx.
    assert {"httpx", "socket"} <= found["webhooks/delivery.py"]
    assert "httpx" in found["portal/sso_client.py"]


def test_the_check_sees_an_outbound_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import httpx\nfrom urllib.request import urlopen\n", encoding="utf-8")
    assert {"httpx", "urllib.request"} <= _imports(sample) & OUTBOUND
