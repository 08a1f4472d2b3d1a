"""Portal pages over real HTTP without JavaScript: keys, whitelist, explorer, users, activity.

Each service's rule is tested in tests/test_access_*.py; here: that the page calls it, shows
its message next to the field it names, refuses with a 403 page (and an audit row), and that
every main action works as a plain form.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, links, permissions, users, whitelist
from billing_api.access.models import ApiKey, AuditEvent, Company, User
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests.browser import FormClient
from tests.http_server import serve
from tests.test_portal_session import CLERK_PASSWORD, PASSWORD, World, audit_rows, make_world

LINK = re.compile(r'class="request-url" href="([^"]+)"')


@pytest.fixture
def world(factory: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    """Acme with its API enabled; the clerk has no API permission."""
    company_id, admin, clerk = make_world(factory)
    with transaction(factory) as session:
        company = session.get(Company, company_id)
        assert company is not None
        permissions.set_api_enabled(session, company, company.users[0], True)
    app = create_app(settings)
    with serve(app) as base:
        yield World(base, company_id, admin, clerk, app)


@pytest.fixture
def admin(world: World) -> Iterator[FormClient]:
    with FormClient(world.base) as client:
        assert client.log_in(world.admin, PASSWORD).status_code == 303
        yield client


def error_of(page: str, field_id: str) -> str:
    found = re.search(rf'<p class="error" id="{field_id}-error">([^<]*)</p>', page)
    assert found, f"no error next to {field_id}"
    return html.unescape(found.group(1))


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_key_form_shows_errors_next_to_fields(admin: FormClient,
                                              factory: sessionmaker[Session]) -> None:
    cases = [({"name": "", "environment": "production"}, "f-name", "needs a name"),
             ({"name": "x", "environment": "staging"}, "f-environment", "production or sandbox"),
             ({"name": "x", "environment": "sandbox", "expires": "2001-01-01"}, "f-expires",
              "in the past"),
             ({"name": "x", "environment": "sandbox", "expires": "soon"}, "f-expires",
              "is not a date")]
    for form, field, message in cases:
        admin.get("/portal/billing-api/keys")
        answer = admin.post("/portal/billing-api/keys", {**form, "form_nonce": admin.nonce()})
        assert answer.status_code == 400
        assert message in error_of(answer.text, field)
        assert 'aria-invalid="true"' in answer.text
    assert count(factory, ApiKey) == 0


def test_a_key_secret_is_shown_once(admin: FormClient, factory: sessionmaker[Session]) -> None:
    admin.get("/portal/billing-api/keys")
    form = {"name": "ERP", "environment": "sandbox", "expires": "2099-12-31",
            "form_nonce": admin.nonce(), "csrf_token": admin.csrf()}
    first = admin.post("/portal/billing-api/keys", form)
    secret = re.search(r'<code id="secret"[^>]*>(nwb_test_\w+)</code>', first.text)
    assert first.status_code == 200 and secret
    again = admin.post("/portal/billing-api/keys", form)
    assert again.status_code == 409 and secret.group(1) not in again.text
    listing = admin.get("/portal/billing-api/keys").text
    assert secret.group(1) not in listing and "2099-12-31" in listing
    assert secret.group(1)[:15] + "…" in listing
    assert count(factory, ApiKey) == 1


def test_whitelist_validation_add_and_remove(admin: FormClient, world: World,
                                             factory: sessionmaker[Session]) -> None:
    page = admin.get("/portal/billing-api/whitelist").text
    assert 'id="whitelist-empty"' in page and "<code>127.0.0.1</code>" in page
    cases = [("192.0.2.7/24", "f-network", "host bits set"),
             ("0.0.0.0/0", "f-network", "every address"),
             ("not-an-ip", "f-network", "not an IP address"),
             ("", "f-network", "Enter an IP address")]
    for network, field, message in cases:
        answer = admin.post("/portal/billing-api/whitelist", {"network": network})
        assert answer.status_code == 400 and message in error_of(answer.text, field)
        assert f'value="{network}"' in answer.text  # what was typed stays in the field
    long = admin.post("/portal/billing-api/whitelist", {"network": "192.0.2.8",
                                                        "description": "x" * 201})
    assert "under 200" in error_of(long.text, "f-description")
    added = admin.post("/portal/billing-api/whitelist", {"network": "2001:db8::/48",
                                                         "description": "office"})
    assert added.status_code == 303
    duplicate = admin.post("/portal/billing-api/whitelist", {"network": "2001:DB8::/48"})
    assert "whitelisted already" in error_of(duplicate.text, "f-network")
    assert admin.post("/portal/billing-api/whitelist/mine").status_code == 303
    page = admin.get("/portal/billing-api/whitelist").text
    assert 'id="whitelist-empty"' not in page and "it is on the whitelist" in page
    entry = re.search(r'action="(/portal/billing-api/whitelist/\d+/remove)"', page)
    assert entry
    assert admin.post(entry.group(1)).status_code == 303
    assert count(factory, AuditEvent) > 0
    with factory() as session:
        assert whitelist.networks_for(session, world.company_id) == ["127.0.0.1/32"]


def _key(factory: sessionmaker[Session], settings: Settings, world: World,
         environment: Environment = Environment.PRODUCTION) -> tuple[int, str]:
    with transaction(factory) as session:
        company = session.get(Company, world.company_id)
        assert company is not None
        key, secret = keys.create_key(session, settings, company, environment=environment,
                                      name="erp")
        if not whitelist.networks_for(session, company.id):
            whitelist.add_entry(session, company, "127.0.0.1")
        return key.id, secret


def test_explorer_signs_a_link_for_exactly_that_request(
        admin: FormClient, world: World, factory: sessionmaker[Session],
        settings: Settings) -> None:
    key_id, secret = _key(factory, settings, world)
    page = admin.get("/portal/billing-api/endpoints").text
    assert "No version selected" in page and "<details" not in page
    page = admin.get("/portal/billing-api/endpoints", key=key_id, version="v1").text
    assert "End of Life" in error_of(page, "f-version")
    query = {"key": key_id, "version": "v2", "endpoint": "customerinvoices", "build": "1",
             "accept": "application/json", "startDate": "2026-01-01", "endDate": "2026-03-31"}
    page = admin.get("/portal/billing-api/endpoints", **query).text
    assert page.count("<details") == 4 and "GET</span><code>/v2/subscriptiondetails" in page
    href = html.unescape(LINK.search(page).group(1))  # type: ignore[union-attr]
    path, params = urlsplit(href).path, parse_qsl(urlsplit(href).query)
    assert path == "/api/v2/customerinvoices"
    assert dict(params) | {"token": ""} == {"startDate": "20260101", "endDate": "20260331",
                                            "format": "json", "token": ""}
    token = dict(params)["token"]
    assert links.verify_link(settings, token, path, params) == keys.digest(settings, secret)
    assert secret not in page and "X-Api-Key: &lt;your key&gt;" in page
    assert "-H &#39;Accept: application/json&#39;" in page
    downloaded = httpx.get(world.base + href, timeout=10)
    assert downloaded.status_code == 200 and downloaded.json() == {"Invoices": []}
    tampered = httpx.get(world.base + href.replace("format=json", "format=xml"), timeout=10)
    assert tampered.status_code == 401


def test_explorer_errors_next_to_fields(admin: FormClient, world: World,
                                        factory: sessionmaker[Session],
                                        settings: Settings) -> None:
    key_id, _ = _key(factory, settings, world)
    base = {"key": key_id, "version": "v4", "build": "1", "endpoint": "subscriptiondetails"}
    cases = [({}, "subscriptiondetails-startDate", "Enter a start date"),
             ({"startDate": "2026-02-30"}, "subscriptiondetails-startDate", "not a real"),
             ({"startDate": "2026-02-01", "endDate": "2026-01-01"},
              "subscriptiondetails-endDate", "before the start date"),
             ({"startDate": "2026-01-01", "endDate": "2026-02-01"},
              "subscriptiondetails-subscriptionId", "Enter a subscription ID"),
             ({"startDate": "2026-01-01", "endDate": "2026-02-01", "subscriptionId": "x1"},
              "subscriptiondetails-subscriptionId", "whole number"),
             # Not an ASCII digit, though str.isdigit() says so: refused as the API refuses it.
             ({"startDate": "2026-01-01", "endDate": "2026-02-01", "subscriptionId": "²"},
              "subscriptiondetails-subscriptionId", "whole number")]
    for extra, field, message in cases:
        answer = admin.get("/portal/billing-api/endpoints", **base, **extra)
        assert answer.status_code == 400 and message in error_of(answer.text, field)
        assert 'id="ep-subscriptiondetails" open' in answer.text
    # The curl line saves the file under the name the API gives it, subscription id included.
    built = admin.get("/portal/billing-api/endpoints", **base, startDate="2026-01-01",
                      endDate="2026-02-01", subscriptionId="42")
    assert built.status_code == 200
    assert "-o subscriptiondetails_v4_42_20260101_20260201.xml" in html.unescape(built.text)
    with transaction(factory) as session:
        keys.revoke_key(session, session.get(Company, world.company_id), key_id)  # type: ignore[arg-type]
    answer = admin.get("/portal/billing-api/endpoints", key=key_id, version="v4")
    assert "not an active key" in error_of(answer.text, "f-key")


def test_users_page_adds_grants_and_deactivates(admin: FormClient, world: World,
                                                factory: sessionmaker[Session],
                                                settings: Settings) -> None:
    admin.get("/portal/users")
    created = admin.post("/portal/users", {"email": "new@acme.example", "full_name": "Nick New",
                                           "form_nonce": admin.nonce()})
    password = re.search(r'<code id="password"[^>]*>([^<]+)</code>', created.text)
    assert created.status_code == 200 and password
    admin.get("/portal/users")
    taken = admin.post("/portal/users", {"email": world.clerk, "form_nonce": admin.nonce()})
    assert "exists already" in error_of(taken.text, "f-email")
    with FormClient(world.base) as newcomer:
        assert newcomer.log_in("new@acme.example", html.unescape(password.group(1))
                               ).status_code == 303
    with factory() as session:
        clerk = session.scalars(select(User).where(User.email == world.clerk)).one()
    grant = admin.post(f"/portal/users/{clerk.id}/api-permission", {"granted": "1"})
    assert grant.status_code == 303
    with FormClient(world.base) as client:
        client.log_in(world.clerk, CLERK_PASSWORD)
        assert client.get("/portal/billing-api/keys").status_code == 200
    confirm = admin.get(f"/portal/users/{clerk.id}/deactivate")
    assert confirm.status_code == 200 and "Deactivate user" in confirm.text
    assert admin.post(f"/portal/users/{clerk.id}/deactivate").status_code == 303
    with factory() as session:
        assert session.get(User, clerk.id).is_active is False  # type: ignore[union-attr]


def test_users_without_the_right_role_get_a_403_page_and_an_audit_row(
        world: World, factory: sessionmaker[Session]) -> None:
    with FormClient(world.base) as clerk:
        clerk.log_in(world.clerk, CLERK_PASSWORD)
        apis = clerk.get("/portal/profile/apis").text
        assert "You have no API permission" in apis and world.admin in apis
        assert "/portal/billing-api/keys" not in apis and "/portal/users" not in apis
        for path in ("/portal/users", "/portal/billing-api/keys", "/portal/activity"):
            refused = clerk.get(path)
            assert refused.status_code == 403 and "Not allowed" in refused.text, path
        clerk.get("/portal/profile")
        posted = clerk.post("/portal/users", {"email": "sneaky@acme.example"})
        assert posted.status_code == 403
    assert [r[:2] for r in audit_rows(factory, "portal_denied")] == [
        ("/portal/users", "not_account_admin"),
        ("/portal/billing-api/keys", "no_api_permission"),
        ("/portal/activity", "no_api_permission"),
        ("/portal/users", "not_account_admin")]
    assert count(factory, User) == 2


def test_activity_lists_the_companys_events_newest_first(
        admin: FormClient, world: World, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        other, other_admin = users.create_company(session, "Other BV", "o@other.example", "pw")
        permissions.set_api_enabled(session, other, other_admin, True)
    admin.get("/portal/billing-api/whitelist")
    admin.post("/portal/billing-api/whitelist", {"network": "192.0.2.1", "description": "a"})
    page = admin.get("/portal/activity").text
    events = re.findall(r"<td>(api enabled|whitelist added)</td>", page)
    assert events == ["whitelist added", "api enabled"]
    assert "o@other.example" not in page
