"""Prometheus metrics, served at ``/metrics`` to the networks of ``BILLING_API_METRICS_ALLOW``.

Process-wide, as Prometheus clients are: the HTTP metrics (requests by method, route template
and status; durations; requests in progress; answers cut off mid-body) and the price lines
streamed into invoice documents are counted where they happen. Billing runs happen in the
``billing-api bill`` process, not in the server, so they are read from the ``billing_runs`` table
at scrape time (one grouped query). With ``serve --workers N`` every worker writes its values
under ``PROMETHEUS_MULTIPROC_DIR`` (``serve`` sets it up) and a scrape adds them up.

Labels are bounded: route templates, never raw paths; no partner, key or address.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Iterator
from functools import lru_cache

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from billing_api.access.whitelist import IPAddress, IPNetwork
from billing_api.billing.models import BillingRun

log = logging.getLogger("billing_api.metrics")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
# From a health probe to a year-long invoice export.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0)

REQUESTS = Counter("billing_api_http_requests", "HTTP requests answered, by method, route "
                   "template and status.", ["method", "route", "status"])
DURATION = Histogram("billing_api_http_request_duration_seconds", "Time from the request to "
                     "the last byte of the answer (whole downloads included).",
                     ["method", "route"], buckets=DURATION_BUCKETS)
IN_PROGRESS = Gauge("billing_api_http_requests_in_progress", "Requests being answered now.",
                    multiprocess_mode="livesum")
ABORTED = Counter("billing_api_http_responses_aborted", "Answers cut off after their status "
                  "line was sent (client gone, database lost mid-download).", ["route"])
EXPORT_LINES = Counter("billing_api_export_lines_streamed", "Price lines written into invoice "
                       "documents, by document.", ["document"])


def observe_request(method: str, route: str, status: int, seconds: float, *,
                    aborted: bool) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    DURATION.labels(method, route).observe(seconds)
    if aborted:
        ABORTED.labels(route).inc()


class BillingRunCollector(Collector):
    """Billing runs in the database, by environment, read when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("billing_api_database_up",
                               "1 when the scrape could read the database, else 0.")
        runs = CounterMetricFamily("billing_api_billing_runs", "Completed billing runs (one per "
                                   "partner, environment and period).", labels=["environment"])
        invoices = CounterMetricFamily("billing_api_billing_run_invoices", "Invoices written "
                                       "by billing runs.", labels=["environment"])
        lines = CounterMetricFamily("billing_api_billing_run_lines", "Price lines written by "
                                    "billing runs.", labels=["environment"])
        last = GaugeMetricFamily("billing_api_billing_run_last_started_timestamp_seconds",
                                 "When the latest billing run started (Unix time).",
                                 labels=["environment"])
        try:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(BillingRun.environment, func.count(),
                           func.coalesce(func.sum(BillingRun.invoice_count), 0),
                           func.coalesce(func.sum(BillingRun.line_count), 0),
                           func.max(BillingRun.started_at))
                    .group_by(BillingRun.environment).order_by(BillingRun.environment)).all()
        except SQLAlchemyError as exc:
            log.warning("metrics: the database could not be read (%s)", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        for environment, count, invoice_count, line_count, started in rows:
            runs.add_metric([environment], count)
            invoices.add_metric([environment], invoice_count)
            lines.add_metric([environment], line_count)
            if started is not None:
                last.add_metric([environment], started.timestamp())
        yield from (up, runs, invoices, lines, last)


def exposition(engine: Engine) -> bytes:
    """The text exposition: this process's (or every worker's) metrics and the database's."""
    if os.environ.get(MULTIPROCESS_ENV):
        process: CollectorRegistry = CollectorRegistry()
        multiprocess.MultiProcessCollector(process)  # type: ignore[no-untyped-call]
    else:
        process = REGISTRY
    database = CollectorRegistry(auto_describe=False)
    database.register(BillingRunCollector(engine))
    return generate_latest(process) + generate_latest(database)


CONTENT_TYPE = CONTENT_TYPE_LATEST


@lru_cache(maxsize=8)
def parse_networks(setting: str) -> tuple[IPNetwork, ...]:
    """The comma-separated CIDRs of ``metrics_allow``; raises ``ValueError`` on a bad one."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False)
                 for part in setting.split(",") if part.strip())


def allowed(address: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    return address is not None and any(
        address.version == network.version and address in network for network in networks)
