"""What the webhook tests share: a real HTTP receiver on loopback, a partner with invoices
to bill, an endpoint registered through the service, and delivery rounds run in-process."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import users
from billing_api.access.models import Company
from billing_api.billing.run import bill_partner
from billing_api.db import transaction
from billing_api.settings import Settings
from billing_api.webhooks import delivery, endpoints, worker

from . import factories as f
from . import loopback

ADMIN = "admin@hooks.example"
PASSWORD = "a long admin passphrase"
ALLOW_LOOPBACK = "127.0.0.1/32,::1/128"


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    path: str


@dataclass
class Receiver:
    """Answers each POST with the next of ``statuses`` (the last one repeats); ``hold`` makes
    a request wait until it is set (or the client goes away); ``location`` goes with a 3xx."""

    url: str = ""
    statuses: list[int] = field(default_factory=lambda: [200])
    received: list[Received] = field(default_factory=list)
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    delay: float = 0.0
    location: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def msg_ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.received]

    def wait_for(self, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} received"
            time.sleep(0.05)


@contextmanager
def receiver(**options: object) -> Iterator[Receiver]:
    state = Receiver(**options)  # type: ignore[arg-type]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            with state.lock:
                state.received.append(Received({k.lower(): v for k, v in self.headers.items()},
                                               body, self.path))
            if state.hold is not None and not state.hold.is_set():
                state.holding.set()
                state.hold.wait(60)
            if state.delay:
                time.sleep(state.delay)
            status = state.next_status()
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with loopback.serve(Handler) as base:
        state.url = f"{base}/hooks/billing"
        try:
            yield state
        finally:
            if state.hold is not None:
                state.hold.set()  # let a held request end before the server shuts down


def hook_settings(settings: Settings, **values: object) -> Settings:
    """The suite's settings with loopback allowed and quick retries, unless ``values`` say."""
    defaults: dict[str, object] = {
        "webhook_allow": ALLOW_LOOPBACK, "webhook_backoff_seconds": 0.05,
        "webhook_connect_timeout_seconds": 2.0, "webhook_read_timeout_seconds": 5.0,
        "webhook_lease_seconds": 10.0, "webhook_poll_seconds": 0.05}
    return settings.model_copy(update=defaults | values)


def partner_world(factory: sessionmaker[Session]) -> int:
    """A partner with an Account Administrator, its API on, and one subscription to bill."""
    with transaction(factory) as session:
        if session.scalar(select(Company.id).where(Company.kind == "distributor")) is None:
            f.distributor(session)
        partner = f.partner(session, api_enabled=True)
        users.add_user(session, partner, ADMIN, PASSWORD)
        _, period, rate = f.plan(session, f.vendor(session))
        f.subscription(session, f.customer(session, partner), period, rate, amount=Decimal(2),
                       start=dt.date(2026, 1, 1))
        return partner.id


def add_endpoint(factory: sessionmaker[Session], settings: Settings, partner_id: int,
                 url: str, environment: str = "production") -> tuple[int, str]:
    with transaction(factory, writer=True) as session:
        company = session.get_one(Company, partner_id)
        endpoint, secret = endpoints.add_endpoint(session, settings, company, environment, url,
                                                  actor=None, resolve=delivery.resolve)
        return endpoint.id, secret


def bill(factory: sessionmaker[Session], partner_id: int, period: str,
         environment: str = "production") -> int | None:
    year, month = (int(x) for x in period.split("-"))
    with transaction(factory, writer=True) as session:
        return bill_partner(session, partner_id, environment, period,
                            dt.date(year, month, 28)).sync_position


def deliver_until(factory: sessionmaker[Session], settings: Settings,
                  done: Callable[[], bool], timeout: float = 30) -> int:
    """Run delivery rounds (as the loop does) until ``done()``; returns the rounds."""
    deadline = time.monotonic() + timeout
    rounds = 0
    with ThreadPoolExecutor(settings.webhook_concurrency) as pool:
        while not done():
            assert time.monotonic() < deadline, "delivery did not finish in time"
            worker.deliver_due(factory, settings, pool)
            rounds += 1
            time.sleep(0.02)
    return rounds
