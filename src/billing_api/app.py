"""``create_app(settings)``: builds the whole ASGI application; nothing happens at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from starlette.types import ASGIApp

from billing_api import __version__
from billing_api.api import einvoice_routes
from billing_api.api import routes as document_routes
from billing_api.api.deps import install_access
from billing_api.api.docs_routes import install_docs
from billing_api.api.problems import register_problem_handlers
from billing_api.api.schema_routes import router as schema_router
from billing_api.db import make_engine, make_session_factory
from billing_api.loop_reads import LoopReads
from billing_api.ops import install_ops
from billing_api.ops.context import RequestContextMiddleware
from billing_api.portal import install_portal
from billing_api.settings import Settings
from billing_api.webhooks.worker import BackgroundDelivery


class BillingApp(FastAPI):
    """FastAPI with the request context (id, access log line, metrics) outside even the 500
    handler, so that an unexpected error's answer carries its ``X-Request-Id`` too."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestContextMiddleware(super().build_middleware_stack())


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Webhook delivery (webhooks/worker.py); off when `billing-api worker` processes do it.
    background = None
    if app.state.settings.webhook_delivery_in_serve:
        background = BackgroundDelivery(app.state.session_factory, app.state.settings)
        background.start()
    yield
    if background is not None:
        await anyio.to_thread.run_sync(background.stop)
    # Counted refusals not yet written (access/audit.py) must not die with the worker.
    await anyio.to_thread.run_sync(app.state.refusal_audit.close)
    await close_loop_resources(app)


async def close_loop_resources(app: FastAPI) -> None:
    """Close the connections this event loop opened (``loop_reads``, the Redis limiter's):
    they cannot outlive it."""
    close_limiter = getattr(app.state.api_rate_limiter, "aclose", None)
    if close_limiter is not None:
        await close_limiter()
    for reads in {app.state.primary_reads, app.state.read_reads}:
        await reads.dispose()


def create_app(settings: Settings) -> FastAPI:
    settings.check_production_ready()
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    app = BillingApp(
        title="Partner Billing API",
        version=__version__,
        docs_url=None,  # the default page loads assets from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    # Document downloads read here (a streaming replica when configured); everything that
    # writes, and authentication, stays on the primary above, so a revocation is immediate.
    read_engine = engine if not settings.read_database_url else make_engine(
        settings.read_database_url, pool_size=settings.database_pool_size)
    app.state.read_engine = read_engine
    app.state.read_session_factory = make_session_factory(read_engine)
    # The same two databases for what runs on the event loop (authentication on the
    # primary; one invoice and subscriptiondetails on the read engine).
    app.state.primary_reads = LoopReads(engine, pool_size=settings.database_pool_size)
    app.state.read_reads = app.state.primary_reads if read_engine is engine else LoopReads(
        read_engine, pool_size=settings.database_pool_size)
    install_access(app)
    register_problem_handlers(app)
    app.include_router(document_routes.router)
    app.include_router(einvoice_routes.router)  # /api/v4/{invoices|customerinvoices}/{id}
    install_portal(app)
    app.include_router(schema_router)  # public: /api/schemas/{version}/{document}.xsd
    install_docs(app)  # /api/openapi.json's extras, /api/docs and its static files
    install_ops(app)  # /healthz, /readyz, /metrics
    return app


def app_from_environment() -> FastAPI:
    """The app with settings from ``BILLING_API_*`` variables: what ``billing-api serve``
    hands uvicorn as an import string (``--workers`` needs one)."""
    return create_app(Settings())
