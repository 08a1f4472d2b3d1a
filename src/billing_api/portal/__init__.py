"""The partner portal: server-rendered pages (Jinja2, vendored htmx) on the API's own app.

``install_portal(app)`` mounts the pages (``/`` and ``/portal/…``) and the static files
(``/static``), and creates the per-app state the pages need (templates, login throttle).
The pages add no rules: every decision is an ``access`` service's. See docs/portal.md.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from billing_api.access.ratelimit import SlidingWindowLimiter, login_throttle
from billing_api.portal import (
    access_pages,
    account_pages,
    admin_pages,
    explorer,
    invoice_pages,
    pages,
    sso_pages,
    webhook_pages,
)
from billing_api.portal.sso_client import SsoClient
from billing_api.portal.web import install_templates

STATIC = Path(__file__).parent / "static"
ROUTERS = (pages.router, account_pages.router, access_pages.router, explorer.router,
           admin_pages.router, invoice_pages.router, sso_pages.router,
           webhook_pages.router)


def install_portal(app: FastAPI) -> None:
    """Mount the portal on ``app`` (after ``app.state.settings`` is set)."""
    install_templates(app, app.state.settings)
    app.state.portal_login_throttle = login_throttle(app.state.settings.redis_url)
    app.state.portal_password_limiter = SlidingWindowLimiter()
    settings = app.state.settings
    # Single sign-on: one client per app, so the provider's metadata and keys are cached.
    app.state.portal_sso = SsoClient(settings) if settings.oidc_enabled else None
    if app.state.portal_sso is not None:
        app.state.portal_form_origins = app.state.portal_sso.form_origins
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
