"""``billing-api serve``: the ASGI server for the API and the portal."""

from __future__ import annotations

import logging
import logging.config
import os
import tempfile
from contextlib import ExitStack
from enum import StrEnum
from typing import Annotated

import typer
import uvicorn

from billing_api import migrate
from billing_api.cli.context import engine, settings
from billing_api.ops.logs import logging_config
from billing_api.ops.metrics import MULTIPROCESS_ENV

log = logging.getLogger("billing_api.serve")


class LogFormat(StrEnum):
    json = "json"
    text = "text"


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    graceful_timeout: Annotated[
        int, typer.Option(min=0, help="On SIGTERM/SIGINT: seconds to let running requests "
                          "(downloads) finish before they are cut off.")] = 30,
    log_format: Annotated[
        LogFormat, typer.Option(help="json: one JSON object per line; text: for a terminal.")
    ] = LogFormat.json,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve the Billing API and the portal. An empty SQLite database is migrated first.

    Logs go to stderr. On SIGTERM the server stops accepting connections at once, lets running
    requests finish (up to --graceful-timeout seconds) and exits.
    """
    config = settings()
    log_config = logging_config(log_level, log_format.value)
    logging.config.dictConfig(log_config)
    if config.is_sqlite and migrate.current_revision(engine()) is None:
        migrate.upgrade(engine())
    log.info("serving on http://%s:%s/ with %d worker(s) (database %s)", host, port, workers,
             engine().url.render_as_string(hide_password=True))
    engine().dispose()  # the workers open their own connections
    with ExitStack() as stack:
        if workers > 1 and not os.environ.get(MULTIPROCESS_ENV):
            # Each worker counts in its own files here; a scrape of any worker adds them up.
            os.environ[MULTIPROCESS_ENV] = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="billing-api-metrics-"))
        uvicorn.run(
            "billing_api.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers if workers > 1 else None,
            # Forwarding headers are honoured only through BILLING_API_TRUSTED_PROXIES, never
            # by uvicorn's own default of trusting 127.0.0.1.
            proxy_headers=False,
            server_header=False,
            log_config=log_config,
            log_level=log_level,
            access_log=False,  # RequestContextMiddleware writes the access line
            timeout_graceful_shutdown=graceful_timeout,
        )
