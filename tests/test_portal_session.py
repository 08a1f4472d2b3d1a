"""Portal login, session cookie and CSRF, over real HTTP (uvicorn on loopback, httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import audit, permissions, sessions, users
from billing_api.access.models import AuditEvent, Company, User, UserSession
from billing_api.access.passwords import hash_password
from billing_api.access.ratelimit import LoginThrottle
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.portal import ROUTERS
from billing_api.portal import session as cookies
from billing_api.portal.web import PortalRoute, current_viewer
from billing_api.settings import Settings
from tests.browser import FormClient
from tests.http_server import serve

PASSWORD = "correct horse battery staple"
CLERK_PASSWORD = "clerk password 1234"
PUBLIC_PORTAL = {"/", "/portal/login", "/portal/logout", "/portal/sso/start",
                 "/portal/sso/callback"}  # single sign-on: tests/test_portal_sso.py


@dataclass
class World:
    base: str
    company_id: int
    admin: str
    clerk: str
    app: object


def make_world(factory: sessionmaker[Session]) -> tuple[int, str, str]:
    with transaction(factory) as session:
        company, admin = users.create_company(session, "Acme Cloud BV", "admin@acme.example",
                                              PASSWORD)
        admin.full_name = "Ada Admin"
        clerk = users.add_user(session, company, "clerk@acme.example", CLERK_PASSWORD)
        return company.id, admin.email, clerk.email


@pytest.fixture
def world(factory: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    company_id, admin, clerk = make_world(factory)
    app = create_app(settings)
    with serve(app) as base:
        yield World(base, company_id, admin, clerk, app)


def audit_rows(factory: sessionmaker[Session], event: str) -> list[tuple[str, str, str]]:
    audit.flush_pending()  # refusals are counted in memory first
    with factory() as session:
        rows = session.execute(select(AuditEvent.path, AuditEvent.reason, AuditEvent.detail)
                               .where(AuditEvent.event_type == event)
                               .order_by(AuditEvent.created_at, AuditEvent.id)).all()
    return [(r.path, r.reason, r.detail) for r in rows]


def test_login_page_has_title_labels_and_safe_headers(world: World) -> None:
    with FormClient(world.base) as client:
        page = client.get("/")
    assert page.status_code == 200
    assert "<title>Log in · Partner portal</title>" in page.text
    assert '<label for="f-email">E-mail</label>' in page.text
    assert '<meta name="viewport"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie


@pytest.mark.parametrize("trusted", ["", "127.0.0.1/32"])
def test_cookie_is_secure_when_a_trusted_proxy_says_https(
        settings: Settings, factory: sessionmaker[Session], trusted: str) -> None:
    make_world(factory)
    app = create_app(settings.model_copy(update={"trusted_proxies": trusted}))
    with serve(app) as base, FormClient(base) as client:
        forwarded = client.http.get("/", headers={"X-Forwarded-Proto": "https"})
    # Only a configured proxy may say the browser used HTTPS.
    assert ("Secure" in forwarded.headers["set-cookie"]) is bool(trusted)


def test_login_starts_a_new_session_with_a_new_csrf_token(
        world: World, settings: Settings, factory: sessionmaker[Session]) -> None:
    with FormClient(world.base) as client:
        client.get("/")
        before = client.http.cookies[cookies.COOKIE_NAME]
        answer = client.post("/portal/login", {"email": world.admin, "password": PASSWORD})
        assert answer.status_code == 303 and answer.headers["location"] == "/portal/profile"
        after = client.http.cookies[cookies.COOKIE_NAME]
        assert "Max-Age=28800" in answer.headers["set-cookie"]
        assert client.get("/portal/profile").status_code == 200
        assert client.get("/").headers["location"] == "/portal/profile"
    old, new = cookies.decode(settings, before), cookies.decode(settings, after)
    assert old is not None and new is not None
    assert old.sid != new.sid and old.csrf != new.csrf
    # Only the new id names a session on the server, and only by its digest.
    with factory() as session:
        digests = list(session.scalars(select(UserSession.token_digest)))
    assert digests == [sessions.token_digest(settings, new.sid)]
    assert new.sid not in digests[0]
    with FormClient(world.base) as planted:  # the pre-login cookie logs nobody in
        planted.http.cookies.set(cookies.COOKIE_NAME, before)
        assert planted.get("/portal/profile").headers["location"] == "/"


def test_wrong_password_and_unknown_email_get_the_same_answer(
        world: World, factory: sessionmaker[Session]) -> None:
    with FormClient(world.base) as client:
        wrong = client.log_in(world.admin, "not the password")
        unknown = client.log_in("nobody@acme.example", "not the password")
        empty = client.log_in("", "")
    for answer in (wrong, unknown):
        assert answer.status_code == 400
        assert "Wrong e-mail or password." in answer.text
    assert "Enter your e-mail address." in empty.text and "Enter your password." in empty.text
    assert audit_rows(factory, "login_failed") == [
        ("/portal/login", "bad_credentials", world.admin),
        ("/portal/login", "bad_credentials", "unknown e-mail")]
    with factory() as session:
        companies = list(session.scalars(select(AuditEvent.company_id).order_by(AuditEvent.id)))
    assert companies == [world.company_id, None]


def test_logins_are_throttled_per_email_and_per_address(
        world: World, factory: sessionmaker[Session]) -> None:
    world.app.state.portal_login_throttle = LoginThrottle(  # type: ignore[attr-defined]
        per_email=2, per_ip=3)
    with FormClient(world.base) as client:
        for _ in range(2):
            assert client.log_in(world.admin, "guess").status_code == 400
        blocked = client.log_in(world.admin, PASSWORD)  # even the right password
        assert blocked.status_code == 429
        assert "too many failed logins" in blocked.text
        assert int(blocked.headers["retry-after"]) > 0
        assert client.log_in(world.clerk, "guess").status_code == 400
        by_address = client.log_in(world.clerk, CLERK_PASSWORD)
        assert by_address.status_code == 429
    # Aggregated: one row per address, reason, account and minute, with a count.
    audit.flush_pending()
    with factory() as session:
        rows = session.execute(select(AuditEvent.reason, AuditEvent.detail, AuditEvent.count)
                               .where(AuditEvent.event_type == "login_failed")
                               .order_by(AuditEvent.created_at, AuditEvent.id)).all()
    assert [tuple(r) for r in rows] == [
        ("bad_credentials", world.admin, 2), ("throttled", world.admin, 1),
        ("bad_credentials", world.clerk, 1), ("throttled", world.clerk, 1)]


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
        world: World, factory: sessionmaker[Session]) -> None:
    with FormClient(world.base) as client:
        client.get("/")
        anonymous = client.post("/portal/login", {"email": world.admin, "password": PASSWORD},
                                csrf=False)
        assert anonymous.status_code == 403
        assert client.log_in(world.admin, PASSWORD).status_code == 303
        client.get("/portal/profile/apis")
        missing = client.post("/portal/profile/apis/enable", csrf=False)
        wrong = client.post("/portal/profile/apis/enable", {"csrf_token": "x" * 43})
    for refused in (missing, wrong):
        assert refused.status_code == 403
        assert "security token" in refused.text
    with factory() as session:
        assert session.get(Company, world.company_id).api_enabled is False  # type: ignore[union-attr]
    assert [r[:2] for r in audit_rows(factory, "portal_denied")] == [
        ("/portal/profile/apis/enable", "csrf_failed")] * 2


def test_pages_need_a_login(world: World) -> None:
    with FormClient(world.base) as client:
        for path in ("/portal/profile", "/portal/billing-api/keys", "/portal/users",
                     "/portal/activity", "/portal/billing-api/endpoints"):
            answer = client.get(path)
            assert (answer.status_code, answer.headers["location"]) == (303, "/"), path
        client.get("/")
        posted = client.post("/portal/billing-api/whitelist", {"network": "192.0.2.1"})
        assert (posted.status_code, posted.headers["location"]) == (303, "/")
        assert "Log in to continue." in client.get("/").text


def _depends_on(dependant: object, target: object) -> bool:
    return any(d.call is target or _depends_on(d, target)
               for d in getattr(dependant, "dependencies", []))


def test_every_portal_route_needs_a_login_except_the_login_pages() -> None:
    # The portal's own routers: FastAPI ≥ 0.160 keeps included routers as one opaque entry
    # in ``app.routes``, so walking the app would see none of them.
    every = [r for router in ROUTERS for r in router.routes]
    routes = [r for r in every if isinstance(r, PortalRoute)]
    assert routes == every and len(routes) > 15
    open_routes = {r.path for r in routes if not _depends_on(r.dependant, current_viewer)}
    assert open_routes == PUBLIC_PORTAL


def test_logout_ends_the_session(world: World) -> None:
    with FormClient(world.base) as client:
        client.log_in(world.admin, PASSWORD)
        client.get("/portal/profile")
        out = client.post("/portal/logout")
        assert (out.status_code, out.headers["location"]) == (303, "/")
        assert "You are logged out." in client.get("/").text
        assert client.get("/portal/profile").headers["location"] == "/"


def test_cookie_is_refused_when_tampered_with(settings: Settings) -> None:
    session = cookies.PortalSession.fresh(settings)
    value = cookies.encode(settings, session)
    decoded = cookies.decode(settings, value)
    assert decoded is not None and decoded.csrf == session.csrf
    body, signature = value.split(".")
    forged = cookies.encode(settings, cookies.PortalSession.fresh(settings)).split(".")[0]
    assert cookies.decode(settings, f"{forged}.{signature}") is None
    assert cookies.decode(settings, body) is None
    other = Settings(database_url=settings.database_url,
                     secret_key=SecretStr("another-secret-0123456789abcdefghij"))
    assert cookies.decode(other, value) is None
    # The CSRF token is bound to the session id and the secret.
    assert cookies.csrf_token(settings, session.sid) != cookies.csrf_token(other, session.sid)
    assert cookies.csrf_token(settings, session.sid) != cookies.csrf_token(
        settings, "x" + session.sid)


def test_deactivation_or_a_new_password_ends_existing_sessions(
        world: World, factory: sessionmaker[Session]) -> None:
    with FormClient(world.base) as admin, FormClient(world.base) as clerk:
        admin.log_in(world.admin, PASSWORD)
        clerk.log_in(world.clerk, CLERK_PASSWORD)
        assert clerk.get("/portal/profile").status_code == 200
        with transaction(factory) as session:
            user = session.scalars(select(User).where(User.email == world.admin)).one()
            user.password_hash = hash_password("a brand new password")
        assert admin.get("/portal/profile").headers["location"] == "/"
        with transaction(factory) as session:
            company = session.get(Company, world.company_id)
            assert company is not None
            target = users.find_user(session, company, world.clerk)
            permissions.deactivate_user(session, company, target)
        assert clerk.get("/portal/profile").headers["location"] == "/"
        assert clerk.log_in(world.clerk, CLERK_PASSWORD).status_code == 400
