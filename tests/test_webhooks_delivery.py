"""Webhooks over real HTTP to a real receiver on loopback: the outbox row written by the
billing run, Standard Webhooks signatures (verified with the ``standardwebhooks`` library),
retries, giving up, redirects, timeouts, and the address checks (SSRF)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import threading
import time

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook, WebhookVerificationError

from billing_api.access.models import Company
from billing_api.billing.run import bill_partner
from billing_api.db import transaction
from billing_api.errors import InvalidInput
from billing_api.settings import Settings
from billing_api.sync import cursor
from billing_api.webhooks import delivery, endpoints, outbox, secret_store, ssrf
from billing_api.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

from .webhook_support import (
    add_endpoint,
    bill,
    deliver_until,
    hook_settings,
    partner_world,
    receiver,
)


def _message(factory: sessionmaker[Session]) -> WebhookMessage:
    with factory() as session:
        return session.scalars(select(WebhookMessage)).one()


def _attempts(factory: sessionmaker[Session]) -> list[tuple[int | None, str]]:
    with factory() as session:
        return [(a.status_code, a.error) for a in session.scalars(
            select(WebhookAttempt).order_by(WebhookAttempt.id))]


def test_a_billing_run_writes_its_event_in_its_own_transaction(
        factory: sessionmaker[Session], settings: Settings) -> None:
    config = hook_settings(settings)
    partner_id = partner_world(factory)
    add_endpoint(factory, config, partner_id, "http://127.0.0.1:9/hooks")
    # A run that rolls back leaves no message behind.
    with pytest.raises(RuntimeError), transaction(factory, writer=True) as session:
        bill_partner(session, partner_id, "production", "2026-08", dt.date(2026, 8, 28))
        assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 1
        raise RuntimeError("the run fails after its end")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 0
    position = bill(factory, partner_id, "2026-08")
    assert position == 1
    message = _message(factory)
    event = json.loads(message.body)
    assert event["type"] == "invoices.created" == message.event_type
    data = event["data"]
    before = cursor.encode(partner_id, "production", 0)
    assert data["partner_company_id"] == partner_id
    assert (data["environment"], data["period"], data["invoice_date"]) == (
        "production", "2026-08", "2026-08-28")
    assert data["run_position"] == 1 and data["cursor"] == before
    assert data["invoices"] == {"purchase": 1, "customer": 1} and data["lines"] == 2
    assert data["links"]["invoices"] == f"/api/v4/invoices?since={before}"
    assert data["links"]["customerinvoices"] == f"/api/v4/customerinvoices?since={before}"
    # Sandbox has no endpoint; a period billed again is a no-op: no message either.
    bill(factory, partner_id, "2026-08", "sandbox")
    bill(factory, partner_id, "2026-08")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 1


def test_a_run_without_invoices_sends_nothing(factory: sessionmaker[Session],
                                              settings: Settings) -> None:
    config = hook_settings(settings)
    partner_id = partner_world(factory)
    add_endpoint(factory, config, partner_id, "http://127.0.0.1:9/hooks", "sandbox")
    bill(factory, partner_id, "2026-08", "sandbox")  # the subscription is in production
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 0


def test_the_event_arrives_signed_and_verifies_with_standardwebhooks(
        factory: sessionmaker[Session], settings: Settings) -> None:
    config = hook_settings(settings)
    partner_id = partner_world(factory)
    with receiver() as hooks:
        _, secret = add_endpoint(factory, config, partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        deliver_until(factory, config, lambda: _message(factory).delivered_at is not None)
    assert len(hooks.received) == 1
    got = hooks.received[0]
    assert got.path == "/hooks/billing"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["host"] == hooks.url.split("/")[2]
    verified = Webhook(secret).verify(got.body, got.headers)
    assert verified["data"]["period"] == "2026-08"
    assert got.headers["webhook-id"] == _message(factory).msg_id
    # A forged body does not verify (the check can fail).
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace("2026-08", "2026-09"), got.headers)
    assert _attempts(factory) == [(200, "")]


def test_retried_while_the_receiver_fails_then_delivered_once(
        factory: sessionmaker[Session], settings: Settings) -> None:
    config = hook_settings(settings)
    partner_id = partner_world(factory)
    with receiver(statuses=[500, 503, 204]) as hooks:
        _, secret = add_endpoint(factory, config, partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        deliver_until(factory, config, lambda: _message(factory).delivered_at is not None)
        time.sleep(0.3)  # nothing more arrives once delivered
    assert [a[0] for a in _attempts(factory)] == [500, 503, 204]
    assert len(set(hooks.msg_ids())) == 1 and len(hooks.received) == 3
    for got in hooks.received:  # every attempt is signed afresh and verifies
        Webhook(secret).verify(got.body, got.headers)
    message = _message(factory)
    assert message.attempts == 3 and message.locked_until is None


def test_given_up_after_the_retry_window_disables_the_endpoint(
        factory: sessionmaker[Session], settings: Settings) -> None:
    config = hook_settings(settings, webhook_retry_seconds=0.5)
    partner_id = partner_world(factory)
    with receiver(statuses=[500]) as hooks:
        endpoint_id, _ = add_endpoint(factory, config, partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        deliver_until(factory, config, lambda: _message(factory).failed_at is not None)
        with factory() as session:
            endpoint = session.get_one(WebhookEndpoint, endpoint_id)
            assert endpoint.disabled_at is not None
            assert "could not be delivered" in endpoint.disabled_reason
            assert "HTTP 500" in endpoint.disabled_reason
        # A disabled endpoint gets no new messages; enabling it again sends what waits.
        bill(factory, partner_id, "2026-09")
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(WebhookMessage)) == 1
        hooks.statuses = [200]
        with transaction(factory, writer=True) as session:
            company = session.get_one(Company, partner_id)
            endpoint = session.get_one(WebhookEndpoint, endpoint_id)
            endpoints.enable_endpoint(session, company, endpoint, actor=None)
            message = session.scalars(select(WebhookMessage)).one()
            outbox.resend(session, company, message, actor=None)
        deliver_until(factory, config, lambda: _message(factory).delivered_at is not None)
    assert _attempts(factory)[-1] == (200, "")


def test_redirects_are_not_followed(factory: sessionmaker[Session],
                                    settings: Settings) -> None:
    config = hook_settings(settings, webhook_retry_seconds=60)
    partner_id = partner_world(factory)
    with receiver() as elsewhere, receiver(statuses=[302]) as hooks:
        hooks.location = elsewhere.url
        add_endpoint(factory, config, partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        deliver_until(factory, config, lambda: len(_attempts(factory)) >= 2)
    assert elsewhere.received == []
    assert _attempts(factory)[0] == (302, "redirect not followed")
    assert _message(factory).delivered_at is None


def test_a_receiver_that_does_not_answer_times_out(factory: sessionmaker[Session],
                                                   settings: Settings) -> None:
    config = hook_settings(settings, webhook_read_timeout_seconds=0.5)
    partner_id = partner_world(factory)
    with receiver(hold=threading.Event()) as hooks:
        add_endpoint(factory, config, partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        started = time.monotonic()
        deliver_until(factory, config, lambda: len(_attempts(factory)) >= 1)
        elapsed = time.monotonic() - started
    status, error = _attempts(factory)[0]
    assert status is None and error.startswith("timeout")
    assert elapsed < 5


# --- SSRF ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hooks",          # loopback
    "https://127.0.0.1/hooks",
    "https://[::1]/hooks",
    "https://[::ffff:127.0.0.1]/hooks",     # loopback in IPv4-mapped form
    "https://10.1.2.3/hooks",               # private
    "https://169.254.169.254/latest/",      # link-local (cloud metadata)
    "https://localhost/hooks",              # resolves to loopback
    "http://93.184.215.14/hooks",           # public, but plain HTTP
    "ftp://example.com/hooks",
    "https://user:pw@example.com/hooks",
])
def test_add_refuses_urls_a_webhook_may_not_have(
        factory: sessionmaker[Session], settings: Settings, url: str) -> None:
    partner_id = partner_world(factory)
    with pytest.raises(InvalidInput) as refused:
        add_endpoint(factory, settings, partner_id, url)
    assert refused.value.field == "url"


def test_the_allow_list_lets_a_loopback_receiver_in(factory: sessionmaker[Session],
                                                    settings: Settings) -> None:
    partner_id = partner_world(factory)
    endpoint_id, secret = add_endpoint(factory, hook_settings(settings), partner_id,
                                       "http://127.0.0.1:9/hooks")
    assert secret.startswith("whsec_") and endpoint_id
    by_name = settings.model_copy(update={"webhook_allow": "localhost"})
    add_endpoint(factory, by_name, partner_id, "http://localhost:9/hooks")


def test_delivery_checks_the_address_again(factory: sessionmaker[Session],
                                           settings: Settings) -> None:
    """The allow-list changed (or DNS did) after the endpoint was added: nothing is sent."""
    partner_id = partner_world(factory)
    with receiver() as hooks:
        add_endpoint(factory, hook_settings(settings), partner_id, hooks.url)
        bill(factory, partner_id, "2026-08")
        strict = hook_settings(settings, webhook_allow="")
        deliver_until(factory, strict, lambda: len(_attempts(factory)) >= 1)
    assert hooks.received == []
    status, error = _attempts(factory)[0]
    assert status is None and error.startswith("refused")


def test_every_resolved_address_is_checked() -> None:
    allow = ssrf.AllowList.parse("")
    target = ssrf.check_url("https://hooks.example.com/x", allow)
    public = ipaddress.ip_address("93.184.215.14")
    assert ssrf.pick_address(target, [public], allow) == public
    for bad in ("127.0.0.1", "10.0.0.8", "::1", "::ffff:10.0.0.1", "fe80::1", "224.0.0.1",
                "100.64.0.1", "0.0.0.0", "240.0.0.1"):  # noqa: S104
        with pytest.raises(ssrf.AddressRefused):
            ssrf.pick_address(target, [public, ipaddress.ip_address(bad)], allow)
    # A name that resolves to nothing is refused too.
    with pytest.raises(ssrf.AddressRefused):
        ssrf.pick_address(target, [], allow)
    assert delivery.resolve("127.0.0.1", 80) == [ipaddress.ip_address("127.0.0.1")]


def test_the_signing_secret_survives_a_rotation_of_the_server_secret(settings: Settings) -> None:
    secret = secret_store.generate()
    stored = secret_store.encrypt(settings, secret)
    assert secret not in stored
    new = "a-new-server-secret-of-at-least-32-bytes-0123"
    rotated = settings.model_copy(update={"secret_key": SecretStr(new),
                                          "old_secret_keys": settings.secret_key})
    assert secret_store.decrypt(rotated, stored) == secret
    with pytest.raises(secret_store.UnreadableSecret):
        secret_store.decrypt(settings.model_copy(update={"secret_key": SecretStr(new)}), stored)


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(
        factory: sessionmaker[Session], settings: Settings) -> None:
    """``localhost`` allowed by name: the request reaches the loopback address that was
    checked, and the receiver still sees the URL's host name in ``Host``."""
    config = hook_settings(settings, webhook_allow="localhost")
    partner_id = partner_world(factory)
    with receiver() as hooks:
        port = hooks.url.split(":")[2].split("/")[0]
        add_endpoint(factory, config, partner_id, f"http://localhost:{port}/hooks/billing")
        bill(factory, partner_id, "2026-08")
        deliver_until(factory, config, lambda: _message(factory).delivered_at is not None)
    assert [r.headers["host"] for r in hooks.received] == [f"localhost:{port}"]
