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


def test_the_server_makes_no_outbound_http_requests() -> None:
    """API7 (SSRF): nothing in the package can fetch a URL a client supplies, because nothing
    in it opens an outbound connection. Webhooks will change this; they must then check the
    resolved address (docs/security.md)."""
    found = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in PACKAGE.rglob("*.py")
        for name in _imports(path)
        if name in OUTBOUND or name.split(".")[0] in OUTBOUND - {"urllib", "http"}
    }
    assert found == set()


def test_the_check_sees_an_outbound_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import httpx\nfrom urllib.request import urlopen\n", encoding="utf-8")
    assert {"httpx", "urllib.request"} <= _imports(sample) & OUTBOUND
