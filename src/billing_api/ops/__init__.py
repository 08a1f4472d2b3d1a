"""Operations: request ids, JSON logs, Prometheus metrics, health and readiness.

``install_ops(app)`` adds ``/healthz``, ``/readyz`` and ``/metrics``; ``app.BillingApp`` wraps
the whole app in ``context.RequestContextMiddleware``; ``logs.logging_config`` is what
``billing-api serve`` hands to uvicorn. See docs/operations.md.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from billing_api.access.redaction import RedactingFilter
from billing_api.ops import health, metrics


def install_ops(app: FastAPI) -> None:
    """The probe and metrics routes; refuses a malformed ``metrics_allow`` at start-up."""
    metrics.parse_networks(app.state.settings.metrics_allow)
    app.include_router(health.router)
    # A logger's filters do not see its children's records: the access log needs its own.
    access_log = logging.getLogger("billing_api.requests")
    if not any(isinstance(f, RedactingFilter) for f in access_log.filters):
        access_log.addFilter(RedactingFilter())
