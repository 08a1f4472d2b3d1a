"""``billing-api worker``: background work (webhook delivery) outside the API servers."""

from __future__ import annotations

import logging
import logging.config
import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from billing_api.cli.context import engine, ensure_schema, settings
from billing_api.db import make_session_factory
from billing_api.ops.logs import logging_config
from billing_api.webhooks import worker as delivery_loop

log = logging.getLogger("billing_api.worker")


def worker(
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: Annotated[str, typer.Option(help="json or text.")] = "json",
) -> None:
    """Deliver webhooks until SIGTERM or SIGINT. Run as many as needed, on any host: each
    message is held by one worker at a time. Set BILLING_API_WEBHOOK_DELIVERY_IN_SERVE=false
    on the servers when workers do the delivery."""
    config = settings()
    logging.config.dictConfig(logging_config(log_level, log_format))
    ensure_schema()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("delivering webhooks (%d at a time, lease %gs)", config.webhook_concurrency,
             config.webhook_lease_seconds)
    delivery_loop.run(make_session_factory(engine()), config, stop)
    log.info("worker stopped")
