"""Authentication by construction: every route is protected or on an explicit public list."""

from __future__ import annotations

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount, Route

from billing_api.api.deps import is_protected
from billing_api.app import create_app
from billing_api.settings import Settings
from tests.access_helpers import test_app

# Reachable without an API key, on purpose. Portal pages (session login) belong here too.
# /metrics answers only BILLING_API_METRICS_ALLOW's networks (tests/test_ops.py).
PUBLIC_PATHS = {"/healthz", "/readyz", "/metrics", "/api/openapi.json", "/api/docs",
                "/api/docs/oauth2-redirect",
                "/"}  # the portal's login page (tests/test_portal_session.py walks the portal)
# The XSDs describe the document format, not anybody's data.
PUBLIC_PATHS.add("/api/schemas/{version}/{document}.xsd")
# /api/static: the vendored Swagger UI files /api/docs loads.
PUBLIC_PREFIXES = ("/static", "/portal", "/api/static")


def unprotected(app: object) -> list[str]:
    found = []
    # FastAPI keeps an included router as one entry: walk the routes inside it too.
    for context in iter_route_contexts(app.routes):  # type: ignore[attr-defined]
        route = context.original_route
        path = context.path or ""
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            continue
        if isinstance(route, APIRoute) and is_protected(route.dependant):
            continue
        if isinstance(route, Route | Mount | APIRoute):
            found.append(path)
    return found


def test_every_route_is_protected_or_public(settings: Settings) -> None:
    assert unprotected(create_app(settings)) == []


def test_the_walk_catches_an_unprotected_api_route(settings: Settings) -> None:
    app = test_app(settings)
    assert unprotected(app) == []

    @app.get("/api/{version}/forgotten")
    def forgotten() -> str:
        return "leak"

    assert unprotected(app) == ["/api/{version}/forgotten"]


def test_the_walk_sees_routes_inside_included_routers(settings: Settings) -> None:
    from fastapi import APIRouter

    app = test_app(settings)
    router = APIRouter(prefix="/api/{version}")

    @router.get("/leak")
    def leak() -> str:
        return "leak"

    app.include_router(router)
    assert unprotected(app) == ["/api/{version}/leak"]


def test_the_walk_sees_the_document_routes(settings: Settings) -> None:
    paths = {c.path for c in iter_route_contexts(create_app(settings).routes)}
    assert "/api/{version}/invoices" in paths and "/api/{version}/subscriptiondetails" in paths
