"""The delivery loop: what ``billing-api serve`` runs in a thread and ``billing-api worker``
runs in the foreground. Any number of them may run against one database (delivery.py's
leases let exactly one of them hold a message at a time)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from billing_api.settings import Settings
from billing_api.webhooks import delivery

log = logging.getLogger("billing_api.webhooks")


def deliver_due(factory: sessionmaker[Session], settings: Settings,
                pool: ThreadPoolExecutor) -> int:
    """One round: claim what is due (up to the concurrency), send in parallel, record each.
    Returns how many messages were attempted."""
    if not delivery.any_due(factory):
        return 0
    claims = delivery.claim(factory, settings, settings.webhook_concurrency)

    def one(claim: delivery.Claim) -> None:
        try:
            delivery.record(factory, settings, claim, delivery.send(claim, settings))
        except Exception:
            # E.g. the endpoint was removed meanwhile, or the database went away: the lease
            # expires and the message (if it still exists) is tried again.
            log.exception("webhook %s: the attempt could not be recorded", claim.msg_id)

    for future in [pool.submit(one, claim) for claim in claims]:
        future.result()
    return len(claims)


def run(factory: sessionmaker[Session], settings: Settings, stop: threading.Event) -> None:
    """Deliver until ``stop`` is set. A failing round (database away) is logged and retried
    after the poll interval: messages wait in the outbox meanwhile."""
    with ThreadPoolExecutor(settings.webhook_concurrency,
                            thread_name_prefix="webhook") as pool:
        while not stop.is_set():
            try:
                busy = deliver_due(factory, settings, pool)
            except Exception:
                log.exception("webhook delivery round failed; retrying")
                busy = 0
            if not busy:
                stop.wait(settings.webhook_poll_seconds)


class BackgroundDelivery:
    """The loop in a daemon thread, for the server's lifespan."""

    def __init__(self, factory: sessionmaker[Session], settings: Settings) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=run, args=(factory, settings, self._stop),
                                         name="webhook-delivery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
