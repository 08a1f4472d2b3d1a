"""``billing-api serve``: the ASGI server for the API and the portal."""

from __future__ import annotations

from typing import Annotated

import typer
import uvicorn

from billing_api import migrate
from billing_api.app import create_app
from billing_api.cli.context import engine, err, settings


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
) -> None:
    """Serve the Billing API and the portal. An empty SQLite database is migrated first."""
    config = settings()
    if config.is_sqlite and migrate.current_revision(engine()) is None:
        migrate.upgrade(engine())
    err.print(
        f"serving on http://{host}:{port}/ (database "
        f"{engine().url.render_as_string(hide_password=True)})"
    )
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        # Forwarding headers are honoured only through BILLING_API_TRUSTED_PROXIES, never by
        # uvicorn's own default of trusting 127.0.0.1.
        proxy_headers=False,
        server_header=False,
        log_level="info",
    )
