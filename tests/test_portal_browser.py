"""The portal in a real browser (Debian's chromium via Playwright) against uvicorn on loopback,
following portal.md's walk from the first login to a downloaded invoice file.

Screenshots of every page land in ``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import etree
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import users
from billing_api.access.models import ApiKey, AuditEvent, Company
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.demo.generator import DemoResult, build_demo
from billing_api.settings import Settings
from tests.browser import Visit, chromium
from tests.http_server import serve

TODAY = dt.date(2026, 4, 1)  # demo invoices dated 2026-03-23 and (March's) 2026-04-01
START, END = "2026-03-01", "2026-04-30"
API_QUERY = "startDate=20260301&endDate=20260430"
NEW_PASSWORD = "a password of Nora's own choosing"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def demo(factory: sessionmaker[Session]) -> DemoResult:
    return build_demo(factory, customers=5, months=2, today=TODAY)


@pytest.fixture
def base(settings: Settings, demo: DemoResult) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture
def visit(browser: Browser, base: str, request: pytest.FixtureRequest) -> Iterator[Visit]:
    opened = Visit(browser, base, name="-".join(request.node.name.split("_")[1:3]))
    yield opened
    foreign, console = opened.foreign_requests(), opened.console_errors
    opened.close()
    assert foreign == [], f"requests left localhost: {foreign}"
    assert console == [], f"browser console errors: {console}"


def _download(page: Page) -> tuple[str, bytes]:
    link = page.locator("a.request-url")
    with page.expect_download() as info:
        link.click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def _choose_key(page: Page, name: str) -> None:
    select = page.get_by_label("API key")
    value = select.locator("option", has_text=name).get_attribute("value")
    assert value
    select.select_option(value)


def _explore(page: Page, endpoint: str, accept: str) -> str:
    """Fill the endpoint's form and return the green link's href."""
    section = page.locator(f"#ep-{endpoint}")
    if section.get_attribute("open") is None:
        section.locator("summary").click()
    section.get_by_label("Accept header").select_option(accept)
    section.get_by_label("Start Date").fill(START)
    section.get_by_label("End Date").fill(END)
    # With JavaScript htmx swaps the section in place, without it the page reloads: either
    # way the explorer's answer must arrive before the link is read.
    with page.expect_response(lambda r: "/portal/billing-api/endpoints?" in r.url):
        section.get_by_role("button", name="Show request").click()
    link = page.locator(f"#ep-{endpoint} a.request-url")
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href is not None
    return href


def test_walk_from_first_login_to_downloaded_invoices(
        visit: Visit, demo: DemoResult, factory: sessionmaker[Session], base: str) -> None:
    page = visit.page
    page.goto("/")
    expect(page).to_have_title(re.compile("Log in"))
    visit.shot("login")
    # The demo's password was printed once: the first login leads to the change form.
    visit.log_in(demo.admin_email, demo.admin_password, lands_on="/portal/profile/password")
    expect(page.locator("#must-change")).to_contain_text("one-time password")
    visit.shot("must-change-password")
    visit.change_password(demo.admin_password, NEW_PASSWORD)
    visit.shot("profile")

    # Your APIs: off until the Account Administrator enables it.
    page.get_by_role("link", name="Your APIs").first.click()
    enable = page.get_by_role("button", name="Enable Billing API")
    expect(enable).to_be_visible()
    visit.shot("your-apis-disabled")
    enable.click()
    expect(page.locator(".flash")).to_contain_text("The Billing API is enabled")
    visit.shot("your-apis-enabled")

    # A production key: the secret is shown once, with a copy button (JavaScript on).
    page.get_by_role("navigation", name="Billing API").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("ERP production")
    page.get_by_label("production").check()
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#secret").inner_text().strip()
    assert re.fullmatch(r"nwb_live_[0-9A-Za-z]{49}", secret)
    visit.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copied")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    expect(page.get_by_role("alert")).to_contain_text("full access to")
    visit.shot("key-created")
    page.reload()  # re-sends the form: shows "gone", creates nothing
    expect(page.get_by_role("heading", level=1)).to_have_text("Secret no longer shown")
    assert secret not in page.content()
    page.goto("/portal/billing-api/keys")
    assert secret not in page.content()
    expect(page.locator("tbody tr")).to_have_count(1)
    visit.shot("keys")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == 1

    # The whitelist: a banner while empty, then one click adds this browser's address.
    page.goto("/portal/billing-api/whitelist")
    expect(page.locator("#whitelist-empty")).to_contain_text("every API call is refused")
    visit.shot("whitelist-empty")
    page.get_by_role("button", name="Add my address (127.0.0.1)").click()
    expect(page.locator(".flash")).to_contain_text("127.0.0.1/32 is whitelisted")
    expect(page.locator("#whitelist-empty")).to_have_count(0)
    visit.shot("whitelist")

    # Your Endpoints: key, then version (v1 is End of Life and cannot be chosen).
    page.goto("/portal/billing-api/endpoints")
    version = page.get_by_label("API version")
    expect(version.locator("option:checked")).to_have_text("No version selected")
    expect(version.locator("option[value=v1]")).to_be_disabled()
    expect(version.locator("option[value=v1]")).to_contain_text("End of Life")
    _choose_key(page, "ERP production")
    version.select_option("v4")
    expect(page.locator("details.endpoint summary")).to_have_text(
        [re.compile(rf"GET\s*/v4/{e}") for e in
         ("invoices", "customerinvoices", "consolidatedinvoices", "subscriptiondetails")])
    visit.shot("endpoints")
    headers = {"X-Api-Key": secret}
    api = f"{base}/api/v4/consolidatedinvoices?{API_QUERY}"

    json_href = _explore(page, "consolidatedinvoices", "application/json")
    assert "format=json" in json_href and "token=" in json_href
    expect(page.locator("#curl-consolidatedinvoices")).to_contain_text("X-Api-Key: <your key>")
    assert secret not in page.content()
    visit.shot("endpoints-json")
    name, body = _download(page)
    assert name.endswith(".json")
    by_header = httpx.get(api, headers={**headers, "Accept": "application/json"}, timeout=30)
    assert by_header.status_code == 200, by_header.text
    assert json.loads(body) == by_header.json()
    assert json.loads(body)["Invoices"], "the demo window should hold invoices"

    xml_href = _explore(page, "consolidatedinvoices", "")
    assert "format=xml" in xml_href
    visit.shot("endpoints-xml")
    name, body = _download(page)
    assert name.endswith(".xml")
    by_header = httpx.get(api, headers=headers, timeout=30)
    assert by_header.status_code == 200, by_header.text
    assert body == by_header.content
    assert etree.fromstring(body).tag == "ConsolidatedInvoice"

    page.goto("/portal/users")
    visit.shot("users")
    page.goto("/portal/activity")
    expect(page.locator("tbody tr").first).to_contain_text("whitelist added")
    visit.shot("activity")

    # Revoking the key kills the green links made with it.
    page.goto("/portal/billing-api/keys")
    page.get_by_role("link", name="Revoke…").click()
    visit.shot("key-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.locator(".flash")).to_contain_text("is revoked")
    expect(page.locator("tbody tr").first).to_contain_text("revoked")
    refused = page.request.get(visit.absolute(json_href))
    assert refused.status == 401
    assert refused.json()["code"] == "revoked_key"


def test_non_administrator_sees_no_enable_action_and_is_refused(
        visit: Visit, demo: DemoResult, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        company = session.get(Company, demo.partner_id)
        assert company is not None
        users.add_user(session, company, "clerk@northwind.example", "clerk password 123",
                       full_name="Carl Clerk")
    page = visit.page
    visit.log_in("clerk@northwind.example", "clerk password 123")
    page.goto("/portal/profile/apis")
    expect(page.get_by_role("button", name="Enable Billing API")).to_have_count(0)
    expect(page.locator("#admin-only")).to_contain_text("Nora Northwind")
    expect(page.locator("#admin-only")).to_contain_text(demo.admin_email)
    visit.shot("your-apis-not-admin")

    refused = page.request.post(visit.absolute("/portal/profile/apis/enable"),
                                form={"csrf_token": visit.csrf_token()})
    assert refused.status == 403
    assert "Not allowed" in refused.text()
    page.goto("/portal/users")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    visit.shot("users-refused")
    with factory() as session:
        assert session.get(Company, demo.partner_id).api_enabled is False  # type: ignore[union-attr]
        denied = session.execute(select(AuditEvent.path, AuditEvent.reason).where(
            AuditEvent.event_type == "portal_denied").order_by(AuditEvent.id)).all()
    assert [tuple(row) for row in denied] == [
        ("/portal/profile/apis/enable", "not_account_admin"),
        ("/portal/users", "not_account_admin")]


def test_phone_without_javascript(browser: Browser, base: str, demo: DemoResult) -> None:
    """On a phone-sized screen with JavaScript off, every main action still works: the forms
    post, the confirmation is a page, the endpoint expands (details/summary) and the link
    appears after a plain form GET."""
    visit = Visit(browser, base, name="phone-no-js", viewport=(375, 740), javascript=False)
    page = visit.page
    try:
        visit.first_log_in(demo.admin_email, demo.admin_password, NEW_PASSWORD)
        page.goto("/portal/profile/apis")
        page.get_by_role("button", name="Enable Billing API").click()
        expect(page.locator(".flash")).to_contain_text("enabled")
        page.goto("/portal/billing-api/keys")
        page.get_by_label("Name").fill("phone")
        page.get_by_role("button", name="Create key").click()
        expect(page.locator("#secret")).to_contain_text("nwb_live_")
        expect(page.get_by_role("button", name="Copy")).to_be_hidden()
        visit.shot("key-created")
        page.goto("/portal/billing-api/whitelist")
        page.get_by_role("button", name=re.compile("Add my address")).click()
        page.goto("/portal/billing-api/endpoints")
        _choose_key(page, "phone")
        page.get_by_label("API version").select_option("v3")
        page.get_by_role("button", name="Show endpoints").click()
        href = _explore(page, "invoices", "application/json")
        assert href.startswith("/api/v3/invoices?")
        visit.shot("endpoints")
        # Nothing wider than the screen: tables scroll inside their own box.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert visit.foreign_requests() == [] and visit.console_errors == []
    finally:
        visit.close()
