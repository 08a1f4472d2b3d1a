"""Sessions, passwords and Disable Billing API in a real browser (Debian's chromium via
Playwright): two browser contexts are two people's (or one person's two) browsers.

The same rules over plain HTTP, with more cases: tests/test_portal_accounts.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, expect
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, permissions, users, whitelist
from billing_api.access.models import Company, UserSession
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.portal import session as cookies
from billing_api.settings import Settings
from tests.browser import Visit, chromium
from tests.http_server import serve

ADMIN = "admin@acme.example"
ONE_TIME = "printed-once-0123"
MINE = "my own long passphrase"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def company_id(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as session:
        company, _ = users.create_company(session, "Acme Cloud BV", ADMIN, ONE_TIME,
                                          must_change_password=True)
        return company.id


@pytest.fixture
def base(settings: Settings, company_id: int) -> Iterator[str]:
    with serve(create_app(settings)) as url:
        yield url


@pytest.fixture
def visits(browser: Browser, base: str, request: pytest.FixtureRequest) -> Iterator[
        tuple[Visit, Visit]]:
    """Two separate browsers (contexts: own cookies) of the same person."""
    name = "-".join(request.node.name.split("_")[1:3])
    first, second = Visit(browser, base, name=f"{name}-a"), Visit(browser, base, name=f"{name}-b")
    yield first, second
    problems = [(v.name, v.foreign_requests(), v.console_errors) for v in (first, second)]
    first.close()
    second.close()
    assert all(not foreign and not console for _, foreign, console in problems), problems


def on_login_page(visit: Visit) -> None:
    visit.page.goto("/portal/profile")
    expect(visit.page).to_have_url(re.compile(r"/$"))
    expect(visit.page.get_by_role("heading", level=1)).to_have_text("Log in")


def test_the_first_login_forces_a_new_password_and_the_one_time_one_dies(
        visits: tuple[Visit, Visit]) -> None:
    visit, _ = visits
    page = visit.page
    visit.log_in(ADMIN, ONE_TIME, lands_on="/portal/profile/password")
    expect(page.locator("#must-change")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    visit.shot("must-change")
    page.goto("/portal/profile/apis")  # every page leads back to the form
    expect(page).to_have_url(re.compile(r"/portal/profile/password$"))
    page.get_by_label("Current password").fill(ONE_TIME)
    page.get_by_label("New password", exact=True).fill("short")
    page.get_by_label("New password again").fill("short")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#f-new_password-error")).to_contain_text("at least 12")
    visit.change_password(ONE_TIME, MINE)
    expect(page.locator(".flash")).to_contain_text("Your password is changed")
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("E-mail").fill(ADMIN)
    page.get_by_label("Password", exact=True).fill(ONE_TIME)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("Wrong e-mail or password.")
    visit.log_in(ADMIN, MINE)


def test_a_cookie_copied_from_the_browser_is_useless_after_logout(
        visits: tuple[Visit, Visit], base: str) -> None:
    visit, _ = visits
    visit.first_log_in(ADMIN, ONE_TIME, MINE)
    [cookie] = [c for c in visit.context.cookies() if c["name"] == cookies.COOKIE_NAME]
    stolen = {"Cookie": f"{cookies.COOKIE_NAME}={cookie['value']}"}
    assert httpx.get(f"{base}/portal/profile", headers=stolen, timeout=10).status_code == 200
    visit.page.get_by_role("button", name="Log out").click()
    expect(visit.page.locator(".flash")).to_have_text("You are logged out.")
    replayed = httpx.get(f"{base}/portal/profile", headers=stolen, timeout=10)
    assert (replayed.status_code, replayed.headers["location"]) == (303, "/")


def test_sign_out_everywhere_ends_the_other_browsers_session(
        visits: tuple[Visit, Visit], factory: sessionmaker[Session]) -> None:
    laptop, phone = visits
    laptop.first_log_in(ADMIN, ONE_TIME, MINE)
    phone.log_in(ADMIN, MINE)
    page = laptop.page
    page.get_by_role("navigation", name="Profile").get_by_role("link", name="Sessions").click()
    expect(page.locator("tbody tr")).to_have_count(2)
    expect(page.locator("tr.current")).to_contain_text("(this session)")
    laptop.shot("sessions")
    page.get_by_role("button", name="Sign out everywhere").click()
    expect(page.locator(".flash")).to_contain_text("signed out everywhere (2 sessions)")
    on_login_page(phone)
    on_login_page(laptop)
    with factory() as session:
        assert list(session.scalars(select(UserSession))) == []


def test_a_password_change_ends_the_other_browser_but_keeps_this_one(
        visits: tuple[Visit, Visit]) -> None:
    here, there = visits
    here.first_log_in(ADMIN, ONE_TIME, MINE)
    there.log_in(ADMIN, MINE)
    here.page.goto("/portal/profile/password")
    here.change_password(MINE, MINE + " again")
    here.page.goto("/portal/profile/sessions")
    expect(here.page.locator("tbody tr")).to_have_count(1)
    on_login_page(there)
    here.page.goto("/portal/profile/apis")
    expect(here.page).to_have_url(re.compile(r"/portal/profile/apis$"))


def test_an_idle_session_ends_in_the_browser(
        visits: tuple[Visit, Visit], factory: sessionmaker[Session], settings: Settings) -> None:
    visit, _ = visits
    visit.first_log_in(ADMIN, ONE_TIME, MINE)
    idle = dt.timedelta(seconds=settings.portal_session_idle_seconds + 1)
    with transaction(factory) as session:
        row = session.scalars(select(UserSession)).one()
        session.execute(update(UserSession).values(last_seen_at=row.last_seen_at - idle))
    on_login_page(visit)
    expect(visit.page.locator(".flash")).to_have_text("Log in to continue.")


def test_disable_billing_api_with_confirmation_and_without_javascript(
        browser: Browser, base: str, company_id: int, factory: sessionmaker[Session],
        settings: Settings) -> None:
    with transaction(factory) as session:
        company = session.get(Company, company_id)
        assert company is not None
        permissions.set_api_enabled(session, company, company.users[0], True)
        whitelist.add_entry(session, company, "127.0.0.1")
        _, secret = keys.create_key(session, settings, company,
                                    environment=Environment.PRODUCTION, name="erp")
    api = f"{base}/api/v4/invoices"
    headers = {"X-Api-Key": secret, "Accept": "application/json"}
    assert httpx.get(api, headers=headers, timeout=10).status_code == 200
    visit = Visit(browser, base, name="disable-no-js", javascript=False)
    page = visit.page
    try:
        visit.first_log_in(ADMIN, ONE_TIME, MINE)
        page.goto("/portal/profile/apis")
        page.get_by_role("link", name="Disable Billing API…").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Disable the Billing API?")
        visit.shot("confirm")
        page.get_by_role("link", name="Cancel").click()  # changing one's mind changes nothing
        expect(page).to_have_url(re.compile(r"/portal/profile/apis$"))
        assert httpx.get(api, headers=headers, timeout=10).status_code == 200
        page.get_by_role("link", name="Disable Billing API…").click()
        page.get_by_role("button", name="Disable Billing API").click()
        expect(page.locator(".flash")).to_contain_text("The Billing API is disabled")
        expect(page.get_by_role("button", name="Enable Billing API")).to_be_visible()
        visit.shot("disabled")
        page.goto("/portal/activity")
        expect(page.locator("tbody tr").first).to_contain_text("api disabled")
        expect(page.locator("tbody tr").first).to_contain_text(ADMIN)
        assert visit.foreign_requests() == [] and visit.console_errors == []
    finally:
        visit.close()
    refused = httpx.get(api, headers=headers, timeout=10)
    assert refused.status_code == 403 and refused.json()["code"] == "api_disabled"
