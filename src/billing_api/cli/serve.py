"""``billing-api serve``: the ASGI server for the API and the portal."""

from __future__ import annotations

import inspect
import logging
import logging.config
import os
import tempfile
from contextlib import ExitStack
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

import typer
import uvicorn

from billing_api import migrate
from billing_api.cli.context import database_label, engine, schema_revision, settings
from billing_api.ops.logs import logging_config
from billing_api.ops.metrics import MULTIPROCESS_ENV
from billing_api.settings import Settings

log = logging.getLogger("billing_api.serve")

# uvicorn kills a worker that has not answered its supervisor's health check within this many
# seconds, at start-up too. Its default of 5 s killed and restarted workers in a loop on a busy
# 2-core host, where importing the app alone took longer (tests/test_workers_redis.py).
WORKER_HEALTHCHECK_SECONDS = 60


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + host))


def configuration_lines(config: Settings, database: str, workers: int) -> list[str]:
    """What this server runs with, for the startup log: enough to see a wrong deployment at a
    glance, never a secret (URLs without their password, the secret by its source only)."""
    limits = (f"Redis {_without_password(config.redis_url)} (one count for all workers)"
              if config.redis_url else
              "in-process (each worker counts alone: set BILLING_API_REDIS_URL to share)")
    proxies = config.trusted_proxies.strip() or "none (forwarding headers ignored)"
    return [
        f"environment: {config.environment_name}",
        f"database: {database}",
        f"database pool: {config.database_pool_size} connections per worker, "
        f"{config.database_pool_size * workers} in all",
        "read replica: " + (f"{_without_password(config.read_database_url)} (document "
                            "downloads; writes and authentication on the database above)"
                            if config.read_database_url else "none"),
        f"rate limits: {limits}, {config.rate_limit_per_minute} requests per key per minute",
        f"trusted proxies: {proxies}",
        f"metrics readable from: {config.metrics_allow.strip() or 'nobody'}",
        f"secret: {config.secret_source}",
        "portal login: " + ", ".join(
            ([f"single sign-on with {config.oidc_issuer} as {config.oidc_client_id.strip()}"]
             if config.oidc_enabled else []) + (["password"] if config.local_login else [])),
        "webhooks: " + ("delivered by each server worker" if config.webhook_delivery_in_serve
                        else "delivered by `billing-api worker` processes (not here)"),
    ]


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
    config = settings()  # a bad configuration ends here: one line on stderr, exit 2
    revision = schema_revision()  # so does an unreachable database
    log_config = logging_config(log_level, log_format.value)
    logging.config.dictConfig(log_config)
    if config.is_sqlite and revision is None:
        migrate.upgrade(engine())
    for line in configuration_lines(config, database_label(), workers):
        log.info("%s", line)
    log.info("serving on http://%s:%s/ with %d worker(s)", host, port, workers)
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
            # asyncio, not uvloop: on a saturated uvloop loop some connections waited over a
            # second while others were served in 70 ms (p99 1.4 s against 0.17 s with
            # asyncio, for 5-10 % fewer requests/s: bench/load.py).
            loop="asyncio",
            **_healthcheck_option(),
        )


def _healthcheck_option() -> dict[str, Any]:
    """``timeout_worker_healthcheck`` where this uvicorn has it (newer than 0.30)."""
    if "timeout_worker_healthcheck" in inspect.signature(uvicorn.run).parameters:
        return {"timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS}
    return {}
