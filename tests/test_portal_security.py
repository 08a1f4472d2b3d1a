"""Portal security over real HTTP, walking the routes the app really has.

tests/test_portal_session.py covers the session cookie itself (flags on the login page,
fixation at login, expiry, tampering), the login throttle per e-mail and per address, and CSRF
on the login and enable forms. Here, for every portal route there is: CSRF on every form, a
non-administrator trying every administrator URL, one partner trying another partner's key,
user and whitelist entry ids — each refused, audited, and with nothing changed in the database;
plus the flags of the logged-in cookie behind an HTTPS proxy and the throttle behind a proxy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy import Table, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, permissions, sessions, users, whitelist
from billing_api.access.models import (
    ApiKey,
    AuditEvent,
    Company,
    User,
    UserSession,
    WhitelistEntry,
)
from billing_api.access.ratelimit import LoginThrottle
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.portal import ROUTERS
from billing_api.portal.web import PortalRoute
from billing_api.settings import Settings
from billing_api.webhooks import delivery as webhook_delivery
from billing_api.webhooks import endpoints as webhook_endpoints
from billing_api.webhooks.models import WebhookEndpoint, WebhookMessage
from tests.browser import CSRF_INPUT, FormClient
from tests.http_server import serve

PASSWORD = "correct horse battery staple"
# The single sign-on routes are login routes too (tests/test_portal_sso.py).
LOGIN_ROUTES = {"/portal/login", "/portal/logout", "/portal/sso/start",
                "/portal/sso/callback"}
# What only the Account Administrator may do: the walk below must find exactly these refused
# to a user who is not one, and nothing else refused for that reason.
ADMIN_ONLY = {("POST", "/portal/profile/apis/enable"), ("GET", "/portal/profile/apis/disable"),
              ("POST", "/portal/profile/apis/disable"), ("GET", "/portal/users"),
              ("POST", "/portal/users"), ("POST", "/portal/users/{user_id}/api-permission"),
              ("GET", "/portal/users/{user_id}/deactivate"),
              ("POST", "/portal/users/{user_id}/deactivate"),
              ("GET", "/portal/billing-api/webhooks"), ("POST", "/portal/billing-api/webhooks"),
              ("POST", "/portal/billing-api/webhooks/{endpoint_id}/remove"),
              ("POST", "/portal/billing-api/webhooks/{endpoint_id}/enable"),
              ("POST", "/portal/billing-api/webhooks/messages/{msg_id}/resend")}
# One's own password and sessions: any user may, so the walk below leaves these posts to
# tests/test_portal_accounts.py (ending one's sessions would end the walk).
SELF_SERVICE_POSTS = {"/portal/profile/password", "/portal/profile/sessions/{session_id}/end",
                      "/portal/profile/sessions/end-all"}
STATE_TABLES: tuple[Table, ...] = (Company.__table__, User.__table__,  # type: ignore[assignment]
                                   ApiKey.__table__, WhitelistEntry.__table__,
                                   WebhookEndpoint.__table__, WebhookMessage.__table__)


@dataclass
class Partner:
    company_id: int
    admin: str
    clerk: str  # API permission
    reader: str  # no API permission
    clerk_id: int
    reader_id: int
    admin_id: int
    key_id: int
    entry_id: int
    session_id: int  # a portal session of the administrator's
    endpoint_id: int
    msg_id: str


@dataclass
class World:
    base: str
    app: Any
    a: Partner
    b: Partner


def make_partner(factory: sessionmaker[Session], settings: Settings, name: str) -> Partner:
    slug = name.split()[0].lower()
    with transaction(factory) as session:
        company, admin = users.create_company(session, name, f"admin@{slug}.example", PASSWORD)
        clerk = users.add_user(session, company, f"clerk@{slug}.example", PASSWORD)
        reader = users.add_user(session, company, f"reader@{slug}.example", PASSWORD)
        permissions.set_api_enabled(session, company, admin, True)
        permissions.set_api_permission(session, company, admin, clerk, True)
        entry = whitelist.add_entry(session, company, "192.0.2.7", actor=admin)
        key, _ = keys.create_key(session, settings, company, environment=Environment.PRODUCTION,
                                 name="erp", actor=admin)
        _, login = sessions.start(session, settings, admin, client_address="192.0.2.9",
                                  user_agent="elsewhere")
        endpoint, _ = webhook_endpoints.add_endpoint(
            session, settings, company, "production", "https://93.184.215.14/hooks",
            actor=admin, resolve=webhook_delivery.resolve)
        message = WebhookMessage(endpoint_id=endpoint.id, msg_id=f"msg_{slug}",
                                 event_type="invoices.created", body="{}")
        session.add(message)
        session.flush()
        return Partner(company.id, admin.email, clerk.email, reader.email, clerk.id, reader.id,
                       admin.id, key.id, entry.id, login.id, endpoint.id, message.msg_id)


@pytest.fixture
def world(factory: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    a = make_partner(factory, settings, "Acme Cloud BV")
    b = make_partner(factory, settings, "Bravo Hosting BV")
    app = create_app(settings)
    with serve(app) as base:
        yield World(base, app, a, b)


def state(factory: sessionmaker[Session]) -> list[list[tuple[Any, ...]]]:
    """Every row of the tables a portal action could change (audit rows aside)."""
    with factory() as session:
        return [sorted(tuple(row) for row in session.execute(select(table)))
                for table in STATE_TABLES]


def denied(factory: sessionmaker[Session]) -> list[tuple[int | None, str, str]]:
    with factory() as session:
        return [(r.company_id, r.path, r.reason) for r in session.execute(
            select(AuditEvent.company_id, AuditEvent.path, AuditEvent.reason)
            .where(AuditEvent.event_type == "portal_denied").order_by(AuditEvent.id))]


def portal_routes() -> list[tuple[str, str]]:
    """(method, path template) of every portal route, from the app's own routers."""
    found = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, PortalRoute)
            found += [(method, route.path) for method in sorted(route.methods or ())
                      if method != "HEAD"]
    return found


def fill(template: str, partner: Partner) -> str:
    """The path with ``partner``'s own ids in it (a test fails on an id it does not know)."""
    ids = {"key_id": partner.key_id, "user_id": partner.clerk_id, "entry_id": partner.entry_id,
           "session_id": partner.session_id, "endpoint_id": partner.endpoint_id,
           "msg_id": partner.msg_id}
    names = set(re.findall(r"{(\w+)}", template))
    assert names <= set(ids), f"no test id for {names - set(ids)} in {template}"
    return template.format(**ids)


def logged_in(base: str, email: str) -> FormClient:
    client = FormClient(base)
    assert client.log_in(email, PASSWORD).status_code == 303
    client.get("/portal/profile")  # a page with a CSRF token on it
    return client


# --- CSRF on every form -----------------------------------------------------------------------


def test_every_form_is_refused_without_its_csrf_token(
        world: World, factory: sessionmaker[Session]) -> None:
    posts = [path for method, path in portal_routes() if method == "POST"]
    assert len(posts) >= 10
    before = state(factory)
    with logged_in(world.base, world.a.admin) as admin, \
            logged_in(world.base, world.b.admin) as other:
        wrong = (None, "", other.csrf(), admin.csrf()[:-1])  # missing, empty, foreign, altered
        for template in posts:
            if template in LOGIN_ROUTES:
                continue
            path = fill(template, world.a)
            form = {"granted": "1", "network": "198.51.100.1", "name": "x",
                    "environment": "production", "email": "new@acme.example"}
            for token in wrong:
                data = dict(form) if token is None else {**form, "csrf_token": token}
                answer = admin.post(path, data, csrf=False)
                assert answer.status_code == 403, (path, token, answer.status_code)
                assert "security token" in answer.text, path
        assert admin.get("/portal/profile").status_code == 200  # still logged in
        # Logged out, every form is refused the same way (the login form included).
        with FormClient(world.base) as anonymous:
            anonymous.get("/")
            for template in posts:
                answer = anonymous.post(fill(template, world.a), {"email": world.a.admin,
                                                                  "password": PASSWORD},
                                        csrf=False)
                assert answer.status_code == 403, template
    assert state(factory) == before
    rows = denied(factory)
    checked = len([t for t in posts if t not in LOGIN_ROUTES])
    assert rows == [(world.a.company_id, fill(t, world.a), "csrf_failed")
                    for t in posts if t not in LOGIN_ROUTES for _ in range(4)]
    assert len(rows) == 4 * checked


# --- a non-administrator, by URL ----------------------------------------------------------------


def test_a_non_administrator_is_refused_every_administrator_url_and_audited(
        world: World, factory: sessionmaker[Session]) -> None:
    """A user without API permission walks every portal route (GET and POST, with a valid CSRF
    token): exactly the administrator's routes are refused as such; the Billing API pages as
    no-permission; nothing changes. A user *with* API permission fares no better on the
    administrator's routes."""
    before = state(factory)
    outcome: dict[tuple[str, str], int] = {}
    with logged_in(world.base, world.a.reader) as reader:
        for method, template in portal_routes():
            if template in LOGIN_ROUTES or (method == "POST" and template in SELF_SERVICE_POSTS):
                continue
            path = fill(template, world.a)
            if method == "GET":
                answer = reader.get(path)
            else:
                reader.get("/portal/profile")
                answer = reader.post(path, {"granted": "1", "network": "198.51.100.1",
                                            "email": "sneaky@acme.example", "name": "x",
                                            "environment": "production"})
            outcome[(method, template)] = answer.status_code
    reasons = {(path, reason) for _, path, reason in denied(factory)}
    refused_as_admin = {(m, t) for (m, t) in outcome
                        if (fill(t, world.a), "not_account_admin") in reasons}
    assert refused_as_admin == ADMIN_ONLY
    for (method, template), status in outcome.items():
        if (method, template) in ADMIN_ONLY:
            assert status == 403, (method, template)
        elif template.startswith(("/portal/billing-api", "/portal/activity")):
            assert status == 403, (method, template)
            assert (fill(template, world.a), "no_api_permission") in reasons, template
        else:  # the profile and Your APIs tabs, which every user has ("/" redirects there)
            assert (method, status) == ("GET", 303 if template == "/" else 200), (
                method, template, status)
    assert len(denied(factory)) == sum(1 for s in outcome.values() if s == 403)
    with logged_in(world.base, world.a.clerk) as clerk:  # API permission, not administrator
        for method, template in sorted(ADMIN_ONLY):
            path = fill(template, world.a)
            answer = clerk.get(path) if method == "GET" else clerk.post(
                path, {"granted": "1", "email": "sneaky@acme.example"})
            assert answer.status_code == 403, (method, template)
            clerk.get("/portal/profile")
    assert sum(1 for _, _, r in denied(factory) if r == "not_account_admin") == 2 * len(
        ADMIN_ONLY)
    assert state(factory) == before


# --- one partner against another's ids ---------------------------------------------------------


ID_IN_PATH = r"/(\d+|msg_\w+)/"


def message(page: str) -> str:
    """The error page's message with numbers masked."""
    found = re.search(r'<p class="banner banner-bad" role="alert">([^<]*)</p>', page)
    assert found, page
    return re.sub(r"\d+", "N", found.group(1))


def test_another_partners_keys_users_and_whitelist_entries_are_out_of_reach(
        world: World, factory: sessionmaker[Session]) -> None:
    """Bravo's Account Administrator (every right in Bravo) uses Acme's ids in every URL that
    takes one: all 404, the same page as for an id that exists nowhere, each audited against
    Bravo, and nothing of Acme's changes."""
    a, b = world.a, world.b
    before = state(factory)
    attempts = [
        ("GET", f"/portal/billing-api/keys/{a.key_id}/revoke", {}),
        ("POST", f"/portal/billing-api/keys/{a.key_id}/revoke", {}),
        ("POST", f"/portal/billing-api/whitelist/{a.entry_id}/remove", {}),
        ("POST", f"/portal/users/{a.clerk_id}/api-permission", {"granted": "0"}),
        ("POST", f"/portal/users/{a.reader_id}/api-permission", {"granted": "1"}),
        ("GET", f"/portal/users/{a.admin_id}/deactivate", {}),
        ("POST", f"/portal/users/{a.admin_id}/deactivate", {}),
        ("POST", f"/portal/users/{a.clerk_id}/deactivate", {}),
        ("POST", f"/portal/profile/sessions/{a.session_id}/end", {}),
        ("POST", f"/portal/billing-api/webhooks/{a.endpoint_id}/remove", {}),
        ("POST", f"/portal/billing-api/webhooks/{a.endpoint_id}/enable", {}),
        ("POST", f"/portal/billing-api/webhooks/messages/{a.msg_id}/resend", {}),
    ]
    # Every route with an id in its path is among the attempts.
    with_ids = {(m, t) for m, t in portal_routes() if "{" in t}
    tried = {(m, re.sub(ID_IN_PATH, lambda _: "/{}/", p)) for m, p, _ in attempts}
    assert {(m, re.sub(r"{\w+}", "{}", t)) for m, t in with_ids} <= tried
    with logged_in(world.base, b.admin) as bravo:
        for method, path, form in attempts:
            answer = bravo.get(path) if method == "GET" else bravo.post(path, form)
            assert answer.status_code == 404, (method, path, answer.status_code)
            nowhere = re.sub(ID_IN_PATH, lambda m: "/msg_nowhere/" if "msg_" in m.group()
                             else "/987654/", path)
            missing = bravo.get(nowhere) if method == "GET" else bravo.post(nowhere, form)
            assert missing.status_code == 404
            assert message(answer.text) == message(missing.text), path  # indistinguishable
            bravo.get("/portal/profile")
        # The explorer signs no link for another partner's key.
        explorer = bravo.get("/portal/billing-api/endpoints", key=str(a.key_id), version="v4",
                             endpoint="invoices", build="1", startDate="20260101",
                             endDate="20261231")
        assert explorer.status_code == 400
        assert "token=" not in explorer.text and "not an active key of yours" in explorer.text
    assert state(factory) == before
    rows = denied(factory)
    assert len(rows) == 2 * len(attempts)
    assert {company for company, _, _ in rows} == {b.company_id}
    assert {reason for _, _, reason in rows} == {"key_not_found", "whitelist_entry_not_found",
                                                 "user_not_found", "session_not_found",
                                                 "webhook_not_found",
                                                 "webhook_message_not_found"}
    with factory() as session:  # Acme's administrator is still logged in elsewhere
        assert session.get(UserSession, a.session_id) is not None
    with factory() as session:
        acme_rows = session.scalars(select(AuditEvent.event_type).where(
            AuditEvent.company_id == a.company_id, AuditEvent.event_type.in_(
                ("key_revoked", "whitelist_removed", "user_deactivated",
                 "permission_granted", "permission_withdrawn")))).all()
    assert acme_rows == ["permission_granted"]  # the fixture's own grant to the clerk


# --- cookie flags and throttling behind a proxy -----------------------------------------------


def test_the_logged_in_cookie_is_secure_httponly_and_samesite_behind_an_https_proxy(
        factory: sessionmaker[Session], settings: Settings) -> None:
    a = make_partner(factory, settings, "Acme Cloud BV")
    app = create_app(settings.model_copy(update={"trusted_proxies": "127.0.0.1/32"}))
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.5"}
    with serve(app) as base, httpx.Client(base_url=base, headers=proxied, timeout=10) as http:
        # Like a browser on https://: the cookie is sent back by hand (httpx keeps a Secure
        # cookie away from the plain-HTTP hop between the "proxy" and the app).
        first = http.get("/")
        token = CSRF_INPUT.search(first.text)
        assert token
        http.cookies.clear()
        answer = http.post("/portal/login", headers={"Cookie": first.headers["set-cookie"]
                                                      .split(";")[0]},
                           data={"email": a.admin, "password": PASSWORD,
                                 "csrf_token": token.group(1)})
        assert answer.status_code == 303
        cookies = [first.headers["set-cookie"], answer.headers["set-cookie"]]
        session = answer.headers["set-cookie"].split(";")[0]
        for path in ("/portal/profile", "/portal/billing-api/keys", "/portal/users"):
            http.cookies.clear()
            page = http.get(path, headers={"Cookie": session})
            assert page.status_code == 200, path
            cookies += page.headers.get_list("set-cookie")
    for cookie in cookies:
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite", "path"} <= flags, cookie
        assert "samesite=lax" in cookie.lower()
    assert "max-age=28800" in cookies[1].lower()


def test_the_login_throttle_counts_the_real_client_behind_a_proxy_and_not_a_forged_one(
        factory: sessionmaker[Session], settings: Settings) -> None:
    """Behind a trusted proxy each client has its own budget; from an untrusted peer a
    rotating X-Forwarded-For does not buy fresh attempts."""
    a = make_partner(factory, settings, "Acme Cloud BV")
    emails = [f"nobody{i}@acme.example" for i in range(8)]
    for trusted, expected in (("127.0.0.1/32", [400] * 6 + [429] * 2),  # three each
                              ("", [400] * 3 + [429] * 5)):  # one budget: the peer's
        app = create_app(settings.model_copy(update={"trusted_proxies": trusted}))
        app.state.portal_login_throttle = LoginThrottle(per_email=100, per_ip=3)
        statuses = []
        with serve(app) as base, FormClient(base) as client:
            for i, email in enumerate(emails):
                # Two clients behind the proxy taking turns (or, untrusted, forged values).
                client.http.headers["X-Forwarded-For"] = f"203.0.113.{i % 2 + 1}"
                statuses.append(client.log_in(email, "guess").status_code)
            if trusted:
                client.http.headers["X-Forwarded-For"] = "203.0.113.1"
                assert client.log_in(a.admin, PASSWORD).status_code == 429  # its budget's gone
                client.http.headers["X-Forwarded-For"] = "203.0.113.77"
                assert client.log_in(a.admin, PASSWORD).status_code == 303  # another client
        assert statuses == expected, (trusted, statuses)
