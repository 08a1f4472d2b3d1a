"""The interactive API reference at ``/api/docs``: vendored Swagger UI 5, nothing from elsewhere.

FastAPI's own docs page loads Swagger UI from a CDN, and PyPI's Swagger UI bundle is v4, which
cannot render OpenAPI 3.1. So the app serves its own page: HTML naming only files under
``/api/static/swagger/`` (vendored from the npm registry by ``scripts/vendor-assets``) and the
description at ``/api/openapi.json``, under a Content-Security-Policy that lets the browser
load and call nothing but this origin. The page and the files are public, like the
description itself: they hold no data, and every call made from the page needs a key.
"""

from __future__ import annotations

from functools import cache
from html import escape
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from billing_api.api.openapi_docs import install_openapi

DOCS_PATH = "/api/docs"
STATIC_PATH = "/api/static"
STATIC_DIR = Path(__file__).parent / "static"
SWAGGER_DIR = STATIC_DIR / "swagger"

# Swagger UI needs no inline script (init.js is a file) and no inline style sheet; its CSS
# draws icons from data: URIs. "Try it out" calls this origin, so connect-src 'self' is enough.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}: reference</title>
<link rel="stylesheet" href="{static}/swagger-ui.css?v={version}">
<link rel="icon" type="image/png" href="{static}/favicon-32x32.png?v={version}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}">
<noscript><p>This reference needs JavaScript. The description it shows is
<a href="{openapi}">{openapi}</a> (OpenAPI 3.1).</p></noscript>
</div>
<script src="{static}/swagger-ui-bundle.js?v={version}"></script>
<script src="{static}/init.js?v={version}"></script>
</body>
</html>
"""


@cache
def swagger_ui_version() -> str:
    """The vendored Swagger UI version (``VERSION``, written by ``scripts/vendor-assets``)."""
    return (SWAGGER_DIR / "VERSION").read_text(encoding="utf-8").strip()


def docs_page(title: str, openapi_url: str, root_path: str = "") -> str:
    """The page's HTML: every URL in it is a path on this origin."""
    return PAGE.format(
        title=escape(title),
        static=escape(f"{root_path}{STATIC_PATH}/swagger"),
        openapi=escape(f"{root_path}{openapi_url}"),
        version=escape(swagger_ui_version()),
    )


router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH, response_class=HTMLResponse)
def api_docs(request: Request) -> HTMLResponse:
    app = request.app
    page = docs_page(app.title, app.openapi_url, request.scope.get("root_path", ""))
    return HTMLResponse(page, headers=PAGE_HEADERS)


def install_docs(app: FastAPI) -> None:
    """The polished OpenAPI description, the reference page and its static files."""
    install_openapi(app, app.state.settings.rate_limit_per_minute)
    app.include_router(router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="api-static")
