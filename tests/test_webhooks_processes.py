"""Webhook delivery by real processes: ``billing-api serve`` killed with SIGKILL while the
receiver holds the request (the message is delivered after a restart), and several delivery
processes (``billing-api worker`` ×2, ``serve --workers 2``) delivering each message once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from billing_api.settings import Settings
from billing_api.webhooks.models import WebhookAttempt, WebhookMessage

from .conftest import TEST_SECRET
from .test_ops import _free_port
from .webhook_support import (
    ALLOW_LOOPBACK,
    add_endpoint,
    bill,
    hook_settings,
    partner_world,
    receiver,
)


def _env(database_url: str, **values: str) -> dict[str, str]:
    return os.environ | {
        "BILLING_API_DATABASE_URL": database_url, "BILLING_API_SECRET_KEY": TEST_SECRET,
        "BILLING_API_WEBHOOK_ALLOW": ALLOW_LOOPBACK, "BILLING_API_WEBHOOK_POLL_SECONDS": "0.1",
        "BILLING_API_WEBHOOK_BACKOFF_SECONDS": "0.1", "BILLING_API_REDIS_URL": "",
    } | {f"BILLING_API_{k.upper()}": v for k, v in values.items()}


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    log: Path

    def log_lines(self) -> list[dict[str, str]]:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@contextmanager
def process(database_url: str, log: Path, *args: str, **values: str) -> Iterator[Running]:
    """``python -m billing_api ARGS`` (stderr to ``log``) until the block ends (SIGTERM,
    then SIGKILL)."""
    with log.open("ab") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "billing_api", *args],
                                env=_env(database_url, **values), stdout=subprocess.DEVNULL,
                                stderr=sink)
    try:
        yield Running(proc, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def _serve_args(workers: int = 1) -> list[str]:
    return ["serve", "--port", str(_free_port()), "--workers", str(workers),
            "--log-format", "json", "--graceful-timeout", "1"]


def _delivered(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return len(session.scalars(select(WebhookMessage.id).where(
            WebhookMessage.delivered_at.is_not(None))).all())


def _wait(condition: Callable[[], bool], *logs: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out; logs:\n" + "\n".join(
            log.read_text(encoding="utf-8", errors="replace")[-3000:] for log in logs)
        time.sleep(0.1)


def test_not_lost_when_the_server_is_killed_mid_delivery(
        factory: sessionmaker[Session], settings: Settings, database_url: str,
        tmp_path: Path) -> None:
    config = hook_settings(settings)
    partner_id = partner_world(factory)
    lease = {"webhook_lease_seconds": "3", "webhook_connect_timeout_seconds": "1",
             "webhook_read_timeout_seconds": "1.5"}
    with receiver(hold=threading.Event()) as hooks:
        _, secret = add_endpoint(factory, config, partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        with process(database_url, tmp_path / "first.log", *_serve_args(), **lease) as server:
            assert hooks.holding.wait(120), server.log.read_text()[-3000:]
            server.proc.send_signal(signal.SIGKILL)  # while the receiver holds the request
            server.proc.wait(30)
            assert server.proc.returncode == -signal.SIGKILL
        assert hooks.hold is not None
        hooks.hold.set()
        with factory() as session:  # the killed worker recorded nothing: still leased
            message = session.scalars(select(WebhookMessage)).one()
            assert message.delivered_at is None and message.locked_until is not None
        with process(database_url, tmp_path / "second.log", *_serve_args(), **lease) as again:
            _wait(lambda: _delivered(factory) == 1, again.log)
    assert len(hooks.received) == 2
    assert len(set(hooks.msg_ids())) == 1  # the same message, sent again
    Webhook(secret).verify(hooks.received[1].body, hooks.received[1].headers)
    with factory() as session:
        assert [a.status_code for a in session.scalars(select(WebhookAttempt))] == [200]


@pytest.mark.parametrize("layout", ["two-workers", "serve-workers-2"])
def test_several_processes_deliver_each_message_once(
        factory: sessionmaker[Session], settings: Settings, database_url: str,
        layout: str, tmp_path: Path) -> None:
    config = hook_settings(settings)
    partner_id = partner_world(factory)
    periods = [f"2026-{month:02d}" for month in range(1, 13)]
    with receiver(delay=0.05) as hooks:
        for n in range(2):
            add_endpoint(factory, config, partner_id, f"{hooks.url}?endpoint={n}")
        for period in periods:
            bill(factory, partner_id, period)
        expected = 2 * len(periods)
        with factory() as session:
            assert len(session.scalars(select(WebhookMessage.id)).all()) == expected
        options = {"webhook_concurrency": "2"}
        if layout == "two-workers":
            quiet = options | {"webhook_delivery_in_serve": "false"}
            worker = ("worker", "--log-format", "json")
            with process(database_url, tmp_path / "one.log", *worker, **options) as one, \
                    process(database_url, tmp_path / "two.log", *worker, **options) as two:
                _wait(lambda: _delivered(factory) == expected, one.log, two.log)
                time.sleep(1)  # time for a duplicate to show up, if there were one
            split = [_delivery_lines(p) for p in (one, two)]
            assert sum(split) == expected, split
            # A server with delivery switched off leaves new messages to the workers.
            bill(factory, partner_id, "2027-01")
            with process(database_url, tmp_path / "quiet.log", *_serve_args(), **quiet) as q:
                _wait(lambda: "Application startup complete" in q.log.read_text(), q.log)
                time.sleep(2)
            assert _delivered(factory) == expected
        else:
            with process(database_url, tmp_path / "serve.log", *_serve_args(workers=2),
                         **options) as served:
                _wait(lambda: _delivered(factory) == expected, served.log)
                time.sleep(1)
    counts = Counter(hooks.msg_ids())
    assert len(counts) == expected
    assert set(counts.values()) == {1}, counts.most_common(3)
    # Each message went to its own endpoint.
    with factory() as session:
        bodies = {m.msg_id: m.endpoint_id for m in session.scalars(select(WebhookMessage).where(
            WebhookMessage.delivered_at.is_not(None)))}
    assert Counter(bodies.values()) == Counter({e: len(periods) for e in set(bodies.values())})


def _delivery_lines(worker: Running) -> int:
    """How many messages this worker logged as delivered."""
    return sum(1 for line in worker.log_lines() if line.get("logger") == "billing_api.webhooks"
               and line["message"].endswith(": delivered"))
