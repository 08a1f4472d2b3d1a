"""The portal's Webhooks page in a real browser (Debian's chromium via Playwright): the
Account Administrator adds an endpoint and sees its secret once, follows the delivery log,
resends, and enables an endpoint disabled after failing; a user who is not the
Administrator sees no link and is refused (403 and an audit row)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks import Webhook

from billing_api.access import users
from billing_api.access.models import AuditEvent, Company
from billing_api.app import create_app
from billing_api.db import transaction, utcnow
from billing_api.settings import Settings
from billing_api.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from tests.browser import Visit, chromium
from tests.http_server import serve

from .webhook_support import (
    ADMIN,
    PASSWORD,
    bill,
    deliver_until,
    hook_settings,
    partner_world,
    receiver,
)

CLERK = "clerk@hooks.example"
CLERK_PASSWORD = "the clerk's passphrase"
PAGE = "/portal/billing-api/webhooks"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def config(settings: Settings) -> Settings:
    return hook_settings(settings)


@pytest.fixture
def partner_id(factory: sessionmaker[Session]) -> int:
    partner_id = partner_world(factory)
    with transaction(factory) as session:
        clerk = users.add_user(session, session.get_one(Company, partner_id), CLERK,
                               CLERK_PASSWORD)
        clerk.can_use_api = True  # sees the Billing API pages, but is not the Administrator
    return partner_id


@pytest.fixture
def visit(browser: Browser, config: Settings, partner_id: int,
          request: pytest.FixtureRequest) -> Iterator[Visit]:
    with serve(create_app(config)) as base:
        opened = Visit(browser, base, name="-".join(request.node.name.split("_")[1:3]))
        yield opened
        foreign, console = opened.foreign_requests(), opened.console_errors
        opened.close()
    assert foreign == [], f"requests left localhost: {foreign}"
    assert console == [], f"browser console errors: {console}"


def _attempts(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return len(session.scalars(select(WebhookAttempt.id)).all())


def test_administrator_adds_an_endpoint_follows_the_log_and_resends(
        visit: Visit, factory: sessionmaker[Session], config: Settings, partner_id: int) -> None:
    page = visit.page
    visit.log_in(ADMIN, PASSWORD)
    with receiver(statuses=[500, 200]) as hooks:
        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
        page.get_by_label("URL").fill(hooks.url)
        page.get_by_label("production").check()
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Your new webhook")
        secret = page.locator("#secret").inner_text().strip()
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+=*", secret)
        visit.shot("webhook-created")
        page.get_by_role("link", name="Back to Webhooks").click()
        expect(page.locator(".webhook")).to_contain_text(hooks.url)
        assert secret not in page.content()  # shown once

        bill(factory, partner_id, "2026-08")
        deliver_until(factory, config, lambda: _attempts(factory) == 1)  # the 500
        page.reload()
        row = page.locator("table.delivery-log tbody tr")
        expect(row).to_have_count(1)
        expect(row).to_contain_text("retrying")
        expect(row).to_contain_text("HTTP 500")
        visit.shot("webhook-log")
        page.get_by_role("button", name="Resend").click()
        expect(page.locator(".flash")).to_contain_text("will be sent again")
        deliver_until(factory, config, lambda: _attempts(factory) == 2)
        page.reload()
        expect(row).to_contain_text("delivered")
        expect(row).to_contain_text("HTTP 200")
    assert len(hooks.received) == 2
    Webhook(secret).verify(hooks.received[-1].body, hooks.received[-1].headers)

    # Disabled after failing for the whole retry window: a notice, and a way back.
    with transaction(factory) as session:
        session.execute(update(WebhookEndpoint).values(
            disabled_at=utcnow(), disabled_reason="Disabled: 3 days of HTTP 500."))
    page.reload()
    expect(page.get_by_role("alert")).to_contain_text("is disabled")
    expect(page.get_by_role("alert")).to_contain_text("3 days of HTTP 500")
    visit.shot("webhook-disabled")
    page.get_by_role("button", name="Enable again").click()
    expect(page.locator(".flash")).to_contain_text("enabled again")
    expect(page.locator(".webhook .status").first).to_have_text("active")
    with factory() as session:
        assert session.scalars(select(WebhookEndpoint.disabled_at)).one() is None


def test_a_user_who_is_not_the_administrator_is_refused(
        visit: Visit, factory: sessionmaker[Session], partner_id: int) -> None:
    page = visit.page
    visit.log_in(CLERK, CLERK_PASSWORD)
    expect(page.get_by_role("link", name="API keys")).to_have_count(1)
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)
    page.goto(PAGE)
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    refused = page.request.post(visit.absolute(PAGE), form={
        "csrf_token": visit.csrf_token(), "url": "https://hooks.example.com/x",
        "environment": "production"})
    assert refused.status == 403
    with factory() as session:
        assert session.scalars(select(WebhookEndpoint)).all() == []
        assert session.scalars(select(WebhookMessage)).all() == []
        denied = session.execute(select(AuditEvent.path, AuditEvent.reason).where(
            AuditEvent.event_type == "portal_denied").order_by(AuditEvent.id)).all()
    assert [tuple(row) for row in denied] == [(PAGE, "not_account_admin")] * 2
