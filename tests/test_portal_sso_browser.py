"""Single sign-on in a real browser (Debian's chromium via Playwright): the demo partner's
Account Administrator signs in through the distributor's OpenID Connect provider (a real one on
loopback, tests/oidc_provider.py, its own login form) and walks the seed: enable the Billing
API, create a key, whitelist this machine, download a document from Your Endpoints; logging out
ends the provider's session too. The protocol's refusals: tests/test_portal_sso.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Route, expect
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import User
from billing_api.app import create_app
from billing_api.demo.generator import DemoResult, build_demo
from billing_api.settings import Settings
from tests.browser import Visit, chromium
from tests.conftest import TEST_SECRET
from tests.http_server import serve
from tests.oidc_provider import Provider, running_provider
from tests.test_portal_browser import API_QUERY, TODAY, _choose_key, _download, _explore

# The provider's pages (not ours) link a stylesheet from a CDN: refused in the browser
# (nothing leaves the machine) and left out of the foreign-request check below.
PROVIDER_STYLESHEET = "https://cdn.jsdelivr.net/npm/@picocss/pico@2/css/pico.min.css"
NOT_LOOPBACK = re.compile(r"^https?://(?!127\.0\.0\.1[:/])")
ABORTED = "Failed to load resource: net::ERR_FAILED"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


@pytest.fixture
def demo(factory: sessionmaker[Session]) -> DemoResult:
    return build_demo(factory, customers=5, months=2, today=TODAY)


@pytest.fixture
def base(database_url: str, provider: Provider, demo: DemoResult) -> Iterator[str]:
    settings = Settings(database_url=database_url, secret_key=TEST_SECRET, redis_url=None,
                        oidc_issuer=provider.issuer, oidc_client_id="billing-portal",
                        oidc_client_secret="portal-client-secret-0123456789",
                        local_login=False)
    with serve(create_app(settings)) as url:
        yield url


def _abort(route: Route) -> None:
    route.abort()


def test_sign_in_with_the_platform_and_walk_the_seed(
        browser: Browser, base: str, provider: Provider, demo: DemoResult,
        factory: sessionmaker[Session]) -> None:
    provider.set_user("platform-nora", email=demo.admin_email, email_verified=True,
                      company_id=demo.partner_id, name="Nora Northwind")
    visit = Visit(browser, base, name="sso-walk")
    visit.context.route(NOT_LOOPBACK, _abort)
    page = visit.page
    try:
        page.goto("/")
        expect(page.get_by_label("Password", exact=True)).to_have_count(0)  # switched off
        visit.shot("login")
        page.get_by_role("button", name="Sign in with Commerce Platform").click()
        page.wait_for_url(re.compile("^" + re.escape(provider.issuer) + "/oauth2/authorize"))
        visit.shot("provider-login")
        page.locator("input[name=sub]").fill("platform-nora")
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(re.compile(r"/portal/profile$"))
        expect(page.locator(".flash")).to_contain_text("Signed in with Commerce Platform")
        expect(page.locator("footer")).to_contain_text(demo.admin_email)
        visit.shot("profile")

        # Your APIs: the Account Administrator (the portal says so, not the provider) enables.
        page.get_by_role("link", name="Your APIs").first.click()
        page.get_by_role("button", name="Enable Billing API").click()
        expect(page.locator(".flash")).to_contain_text("The Billing API is enabled")

        page.get_by_role("navigation", name="Main").get_by_role("link", name="API keys").click()
        page.get_by_label("Name").fill("ERP production")
        page.get_by_label("production").check()
        page.get_by_role("button", name="Create key").click()
        secret = page.locator("#secret").inner_text().strip()
        assert re.fullmatch(r"nwb_live_[0-9A-Za-z]{49}", secret)
        visit.shot("key-created")

        page.goto("/portal/billing-api/whitelist")
        page.get_by_role("button", name="Add my address (127.0.0.1)").click()
        expect(page.locator(".flash")).to_contain_text("127.0.0.1/32 is whitelisted")

        page.goto("/portal/billing-api/endpoints")
        _choose_key(page, "ERP production")
        page.get_by_label("API version").select_option("v4")
        href = _explore(page, "consolidatedinvoices", "application/json")
        assert "format=json" in href and "token=" in href
        visit.shot("endpoints")
        name, body = _download(page)
        assert name.endswith(".json")
        by_header = httpx.get(f"{base}/api/v4/consolidatedinvoices?{API_QUERY}",
                              headers={"X-Api-Key": secret, "Accept": "application/json"},
                              timeout=30)
        assert by_header.status_code == 200, by_header.text
        assert json.loads(body) == by_header.json() and json.loads(body)["Invoices"]

        # Logging out ends the portal session, then the provider's (RP-initiated logout),
        # which sends the browser back to the login page.
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(re.compile("^" + re.escape(provider.issuer) + "/oauth2/end_session"))
        visit.shot("provider-logout")
        page.get_by_role("button", name="End session").click()
        page.wait_for_url(re.compile(re.escape(base) + r"/(\?state=.*)?$"))
        expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
        page.goto("/portal/profile")
        expect(page.get_by_role("heading", level=1)).to_have_text("Log in")
        with factory() as session:
            admin = session.scalars(select(User).where(User.email == demo.admin_email)).one()
            assert admin.oidc_subject == "platform-nora" and admin.is_account_admin
            assert not admin.must_change_password  # the demo's one-time password is gone
        foreign = [url for url in visit.foreign_requests() if url != PROVIDER_STYLESHEET]
        console = [text for text in visit.console_errors if not text.startswith(ABORTED)]
        assert foreign == [], f"requests left localhost: {foreign}"
        assert console == [], f"browser console errors: {console}"
    finally:
        visit.close()
