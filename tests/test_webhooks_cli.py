"""``billing-api webhooks`` through typer's CliRunner against the test database: add prints
the secret once, the Account Administrator's consent (``--as``), the address rules, the
delivery log and resend."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from billing_api.access import audit, users
from billing_api.access.models import AuditEvent, Company
from billing_api.cli import app, context
from billing_api.db import transaction
from billing_api.settings import Settings
from billing_api.webhooks import secret_store
from billing_api.webhooks.models import WebhookEndpoint, WebhookMessage

from .webhook_support import (
    ADMIN,
    ALLOW_LOOPBACK,
    PASSWORD,
    bill,
    deliver_until,
    hook_settings,
    partner_world,
    receiver,
)

Invoke = Callable[..., tuple[str, str]]
CLERK = "clerk@hooks.example"
CLERK_PASSWORD = "the clerk's passphrase"


@pytest.fixture
def run(settings: Settings, engine: object, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    monkeypatch.setenv("BILLING_API_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BILLING_API_SECRET_KEY", settings.secret_key.get_secret_value())
    monkeypatch.setenv("BILLING_API_WEBHOOK_ALLOW", ALLOW_LOOPBACK)
    context.settings.cache_clear()
    context.engine.cache_clear()
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None, ok: bool = True) -> tuple[str, str]:
        result = runner.invoke(app, list(args), input=stdin)
        assert (result.exit_code == 0) == ok, (args, result.stdout, result.stderr)
        return result.stdout, result.stderr

    yield invoke
    context.engine().dispose()
    context.settings.cache_clear()
    context.engine.cache_clear()


def test_add_list_log_resend_remove(run: Invoke, factory: sessionmaker[Session],
                                    settings: Settings) -> None:
    partner_id = partner_world(factory)
    company = str(partner_id)
    with transaction(factory) as session:
        users.add_user(session, session.get_one(Company, partner_id), CLERK, CLERK_PASSWORD)
    with receiver() as hooks:
        # A user who is not the Account Administrator is refused, even with their password.
        _, err = run("webhooks", "add", "--company", company, "--environment", "production",
                     hooks.url, "--as", CLERK, "--password-stdin", stdin=CLERK_PASSWORD + "\n",
                     ok=False)
        assert "not the Account Administrator" in err
        # Naming the Administrator without their password is not acting as them.
        run("webhooks", "add", "--company", company, "--environment", "production", hooks.url,
            "--as", ADMIN, ok=False)
        out, err = run("webhooks", "add", "--company", company, "--environment", "production",
                       hooks.url, "--as", ADMIN, "--password-stdin", stdin=PASSWORD + "\n")
        secret = out.strip()
        assert out.count("\n") == 1 and secret.startswith("whsec_")
        assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32
        assert "shown once" in err
        with factory() as session:  # stored encrypted, recoverable with the server secret
            stored = session.scalars(select(WebhookEndpoint)).one()
            assert secret not in stored.secret_encrypted
            assert secret_store.decrypt(settings, stored.secret_encrypted) == secret
            # In id order: an aggregated refusal row that a later refusal updated comes
            # back last from a PostgreSQL heap scan (a new row version).
            events = session.scalars(select(AuditEvent.event_type)
                                     .order_by(AuditEvent.id)).all()
            assert events == [audit.EventType.CLI_DENIED, audit.EventType.WEBHOOK_ADDED]
        out, _ = run("webhooks", "list", "--company", company)
        assert out.split("\t")[1:4] == ["production", hooks.url, "active"]
        assert secret not in out

        bill(factory, partner_id, "2026-08")
        deliver_until(factory, hook_settings(settings),
                      lambda: len(hooks.received) == 1)
        out, _ = run("webhooks", "log", "--company", company, "--environment", "production",
                     hooks.url)
        msg_id = hooks.msg_ids()[0]
        assert out.splitlines()[0].split("\t")[::3] == [msg_id, "delivered"]
        assert out.splitlines()[1].split("\t")[2] == "200"
        run("webhooks", "resend", "--company", company, msg_id)
        deliver_until(factory, hook_settings(settings), lambda: len(hooks.received) == 2)
        assert hooks.msg_ids() == [msg_id, msg_id]

        run("webhooks", "remove", "--company", company, "--environment", "production",
            hooks.url)
        with factory() as session:
            assert session.scalars(select(WebhookEndpoint)).all() == []
            assert session.scalars(select(WebhookMessage)).all() == []


def test_add_refuses_loopback_without_the_allow_list(run: Invoke, factory: sessionmaker[Session],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    partner_id = partner_world(factory)
    monkeypatch.setenv("BILLING_API_WEBHOOK_ALLOW", "")
    context.settings.cache_clear()
    _, err = run("webhooks", "add", "--company", str(partner_id), "--environment", "production",
                 "http://127.0.0.1:8080/hooks", ok=False)
    assert "https://" in err
    _, err = run("webhooks", "add", "--company", str(partner_id), "--environment", "sandbox",
                 "https://127.0.0.1/hooks", ok=False)
    assert "public addresses only" in err
    with factory() as session:
        assert session.scalars(select(WebhookEndpoint)).all() == []
