"""Server-side portal sessions, one's own password and the portal's "Disable Billing API",
over real HTTP (uvicorn on loopback, httpx) and the CLI.

Each test replays what an attacker holding a copied cookie or a one-time password would try,
and checks it no longer gets in. The same in a real browser: tests/test_portal_accounts_browser.py.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, permissions, sessions, users, whitelist
from billing_api.access.models import AuditEvent, Company, User, UserSession
from billing_api.app import create_app
from billing_api.db import transaction, utcnow
from billing_api.environments import Environment
from billing_api.portal import session as cookies
from billing_api.settings import Settings
from tests.browser import FormClient
from tests.http_server import serve
from tests.test_access_cli import run  # noqa: F401  (the CLI fixture)
from tests.test_portal_session import (
    CLERK_PASSWORD,
    PASSWORD,
    World,
    audit_rows,
    make_world,
)

NEW_PASSWORD = "a much better passphrase"
PROFILE = "/portal/profile"
PASSWORD_PAGE = "/portal/profile/password"
SESSIONS = "/portal/profile/sessions"


@pytest.fixture
def world(factory: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    """Acme with its API enabled, a production key and 127.0.0.1 whitelisted."""
    company_id, admin, clerk = make_world(factory)
    with transaction(factory) as session:
        company = session.get(Company, company_id)
        assert company is not None
        permissions.set_api_enabled(session, company, company.users[0], True)
    app = create_app(settings)
    with serve(app) as base:
        yield World(base, company_id, admin, clerk, app)


def logged_in(base: str, email: str, password: str, **headers: str) -> FormClient:
    client = FormClient(base)
    client.http.headers.update(headers)
    assert client.log_in(email, password).status_code == 303
    assert client.get(PROFILE).status_code == 200
    return client


def is_logged_out(answer: httpx.Response) -> bool:
    return answer.status_code == 303 and answer.headers["location"] == "/"


def session_rows(factory: sessionmaker[Session], email: str | None = None) -> list[UserSession]:
    with factory() as session:
        stmt = select(UserSession).order_by(UserSession.id)
        if email is not None:
            stmt = stmt.join(User, User.id == UserSession.user_id).where(User.email == email)
        return list(session.scalars(stmt))


def replay(base: str, cookie: str, method: str = "GET", path: str = PROFILE,
           data: dict[str, str] | None = None) -> httpx.Response:
    """An attacker's request with a copied cookie value (and nothing else of the browser's)."""
    with httpx.Client(base_url=base, timeout=10) as attacker:
        return attacker.request(method, path, data=data,
                                headers={"Cookie": f"{cookies.COOKIE_NAME}={cookie}"})


def move_back(factory: sessionmaker[Session], record_id: int, **columns: dt.timedelta) -> None:
    with transaction(factory) as session:
        row = session.get(UserSession, record_id)
        assert row is not None
        session.execute(update(UserSession).where(UserSession.id == record_id).values(
            {name: getattr(row, name) - delta for name, delta in columns.items()}))


# --- a copied cookie ---------------------------------------------------------------------------


def test_a_captured_cookie_stops_working_after_logout(world: World,
                                                      factory: sessionmaker[Session]) -> None:
    with logged_in(world.base, world.admin, PASSWORD) as admin:
        captured = admin.http.cookies[cookies.COOKIE_NAME]
        token = admin.csrf()
        assert replay(world.base, captured).status_code == 200  # the copy works … until
        assert admin.post("/portal/logout").status_code == 303
    assert session_rows(factory) == []
    assert is_logged_out(replay(world.base, captured))
    disable = replay(world.base, captured, "POST", "/portal/profile/apis/disable",
                     {"csrf_token": token})
    assert is_logged_out(disable)
    with factory() as session:
        assert session.get(Company, world.company_id).api_enabled is True  # type: ignore[union-attr]


def test_the_table_holds_only_a_digest_of_the_cookies_session_id(
        world: World, factory: sessionmaker[Session], settings: Settings) -> None:
    with logged_in(world.base, world.admin, PASSWORD, **{"User-Agent": "Agent/1.0"}) as admin:
        sid = cookies.decode(settings, admin.http.cookies[cookies.COOKIE_NAME]).sid  # type: ignore[union-attr]
    assert len(sid) >= 43  # 256 random bits
    [row] = session_rows(factory)
    assert row.token_digest == sessions.token_digest(settings, sid) != sid
    with factory() as session:
        stored = [str(v) for v in session.execute(select(UserSession)).scalars().one()
                  .__dict__.values()]
    assert not any(sid in value for value in stored)
    assert (row.client_address, row.user_agent) == ("127.0.0.1", "Agent/1.0")


# --- timeouts ------------------------------------------------------------------------------


def test_an_idle_session_ends_and_an_active_one_is_kept_alive(
        world: World, factory: sessionmaker[Session], settings: Settings) -> None:
    idle = dt.timedelta(seconds=settings.portal_session_idle_seconds)
    with logged_in(world.base, world.admin, PASSWORD) as admin:
        [row] = session_rows(factory)
        move_back(factory, row.id, last_seen_at=idle - dt.timedelta(minutes=1),
                  created_at=idle)
        assert admin.get(PROFILE).status_code == 200  # used in time: refreshed
        [row] = session_rows(factory)
        assert utcnow() - row.last_seen_at < dt.timedelta(minutes=1)
        move_back(factory, row.id, last_seen_at=idle + dt.timedelta(seconds=1))
        assert is_logged_out(admin.get(PROFILE))
    assert session_rows(factory) == []  # the expired row is gone


def test_a_session_ends_at_its_absolute_lifetime_however_busy(
        world: World, factory: sessionmaker[Session], settings: Settings) -> None:
    lifetime = dt.timedelta(seconds=settings.portal_session_max_seconds)
    assert lifetime == dt.timedelta(hours=8) and settings.portal_session_idle_seconds == 1800
    with logged_in(world.base, world.admin, PASSWORD) as admin:
        [row] = session_rows(factory)
        move_back(factory, row.id, created_at=lifetime + dt.timedelta(seconds=1))
        assert is_logged_out(admin.get(SESSIONS))  # seen a moment ago, but too old
    assert session_rows(factory) == []


def test_tiny_timeouts_from_the_settings_are_enforced(
        factory: sessionmaker[Session], settings: Settings) -> None:
    make_world(factory)
    short = settings.model_copy(update={"portal_session_idle_seconds": 1,
                                        "portal_session_max_seconds": 1})
    with serve(create_app(short)) as base, FormClient(base) as admin:
        answer = admin.log_in("admin@acme.example", PASSWORD)
        assert "Max-Age=1;" in answer.headers["set-cookie"]
        [row] = session_rows(factory)
        move_back(factory, row.id, created_at=dt.timedelta(seconds=1),
                  last_seen_at=dt.timedelta(seconds=1))
        assert is_logged_out(admin.get(PROFILE))


# --- the sessions page ----------------------------------------------------------------------


def test_the_sessions_page_lists_ones_sessions_and_ends_one(
        world: World, factory: sessionmaker[Session]) -> None:
    with logged_in(world.base, world.admin, PASSWORD, **{"User-Agent": "Laptop/1"}) as laptop, \
            logged_in(world.base, world.admin, PASSWORD, **{"User-Agent": "Phone/2"}) as phone, \
            logged_in(world.base, world.clerk, CLERK_PASSWORD) as clerk:
        page = laptop.get(SESSIONS).text
        assert page.count("(this session)") == 1 and "Laptop/1" in page and "Phone/2" in page
        assert page.count('id="session-') == 2  # the clerk's session is not listed
        phone_row = next(r for r in session_rows(factory, world.admin)
                         if r.user_agent == "Phone/2")
        assert re.search(rf'id="session-{phone_row.id}"', page)
        # The clerk cannot end the administrator's session (404, audited) …
        clerk.get(SESSIONS)
        assert clerk.post(f"{SESSIONS}/{phone_row.id}/end").status_code == 404
        assert phone.get(PROFILE).status_code == 200
        # … the administrator can, from the laptop.
        ended = laptop.post(f"{SESSIONS}/{phone_row.id}/end")
        assert (ended.status_code, ended.headers["location"]) == (303, SESSIONS)
        assert is_logged_out(phone.get(PROFILE))
        assert laptop.get(PROFILE).status_code == 200
        assert laptop.get(SESSIONS).text.count("End session") == 0
    assert [r[1] for r in audit_rows(factory, "portal_denied")] == ["session_not_found"]


def account_events(factory: sessionmaker[Session], event_type: str) -> list[tuple[str | None, str]]:
    """(actor e-mail, detail) of the audit rows of one type, oldest first."""
    with factory() as session:
        return [(email, detail) for email, detail in session.execute(
            select(User.email, AuditEvent.detail)
            .select_from(AuditEvent).outerjoin(User, User.id == AuditEvent.actor_user_id)
            .where(AuditEvent.event_type == event_type).order_by(AuditEvent.id)).all()]


def test_sign_out_everywhere_ends_every_session_of_ones_own(
        world: World, factory: sessionmaker[Session]) -> None:
    with logged_in(world.base, world.admin, PASSWORD) as one, \
            logged_in(world.base, world.admin, PASSWORD) as two, \
            logged_in(world.base, world.clerk, CLERK_PASSWORD) as clerk:
        captured = two.http.cookies[cookies.COOKIE_NAME]
        one.get(SESSIONS)
        out = one.post(f"{SESSIONS}/end-all")
        assert is_logged_out(out)
        assert "signed out everywhere (2 sessions)" in one.get("/").text
        assert is_logged_out(one.get(PROFILE)) and is_logged_out(two.get(PROFILE))
        assert is_logged_out(replay(world.base, captured))
        assert clerk.get(PROFILE).status_code == 200  # somebody else's is not touched
    assert len(session_rows(factory)) == 1
    assert account_events(factory, "sessions_ended") == [
        (world.admin, "signed out everywhere: 2 session(s)")]


# --- one's own password ----------------------------------------------------------------------


def test_a_password_change_needs_the_current_password_and_a_sound_new_one(
        world: World, factory: sessionmaker[Session]) -> None:
    def refused(client: FormClient, current: str, new: str, again: str | None = None) -> str:
        client.get(PASSWORD_PAGE)
        answer = client.post(PASSWORD_PAGE, {"current_password": current, "new_password": new,
                                             "new_password_again": new if again is None
                                             else again})
        assert answer.status_code == 400, answer.text
        found = re.findall(r'<p class="error" id="f-(\w+)-error">([^<]*)</p>', answer.text)
        assert len(found) == 1
        return f"{found[0][0]}: {found[0][1]}"

    with logged_in(world.base, world.admin, PASSWORD) as admin:
        assert "current_password: Enter your current" in refused(admin, "", NEW_PASSWORD)
        assert "current_password: That is not your current" in refused(
            admin, "wrong password!", NEW_PASSWORD)
        assert "new_password: Use at least 12" in refused(admin, PASSWORD, "short")
        assert "new_password: Use at most 256" in refused(admin, PASSWORD, "x" * 257)
        assert "new_password: Choose a password different" in refused(admin, PASSWORD, PASSWORD)
        # Five tries per 15 minutes and user, counted before the password is checked.
        admin.get(PASSWORD_PAGE)
        throttled = admin.post(PASSWORD_PAGE, {"current_password": PASSWORD,
                                               "new_password": NEW_PASSWORD,
                                               "new_password_again": NEW_PASSWORD})
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    with logged_in(world.base, world.clerk, CLERK_PASSWORD) as clerk:
        assert "new_password: Do not use your e-mail" in refused(
            clerk, CLERK_PASSWORD, "CLERK@acme.example!!")
        assert "new_password: Do not use your e-mail" in refused(
            clerk, CLERK_PASSWORD, "my clerk password")
        assert "new_password_again: The two new passwords differ" in refused(
            clerk, CLERK_PASSWORD, NEW_PASSWORD, "something else")
    for email, password in ((world.admin, PASSWORD), (world.clerk, CLERK_PASSWORD)):
        with FormClient(world.base) as check:  # nothing changed
            assert check.log_in(email, password).status_code == 303
    # The wrong current password is a denial, and audited; nothing was changed.
    assert [email for email, _ in account_events(factory, "password_change_refused")] == [
        world.admin]
    assert account_events(factory, "password_changed") == []


def test_a_password_change_ends_every_other_session_and_keeps_this_one(
        world: World, factory: sessionmaker[Session]) -> None:
    with logged_in(world.base, world.admin, PASSWORD) as here, \
            logged_in(world.base, world.admin, PASSWORD) as there:
        copied = here.http.cookies[cookies.COOKIE_NAME]  # a thief's copy of this very browser
        changed = here.change_password(PASSWORD, NEW_PASSWORD)
        assert (changed.status_code, changed.headers["location"]) == (303, PROFILE)
        assert here.get(PROFILE).status_code == 200  # still logged in here …
        assert "Your password is changed" in here.page
        assert is_logged_out(there.get(PROFILE))  # … and nowhere else
        assert is_logged_out(replay(world.base, copied))  # not even with this browser's old id
    assert len(session_rows(factory)) == 1
    assert [email for email, _ in account_events(factory, "password_changed")] == [world.admin]
    with FormClient(world.base) as later:
        assert later.log_in(world.admin, PASSWORD).status_code == 400
        assert later.log_in(world.admin, NEW_PASSWORD).status_code == 303


def test_the_first_login_with_a_cli_one_time_password_forces_a_change(
        run: Any, settings: Settings, factory: sessionmaker[Session]) -> None:  # noqa: F811
    otp, _ = run("companies", "create", "--name", "Delta BV", "--admin-email", "d@delta.example")
    otp = otp.strip()
    user_otp, _ = run("users", "add", "--company", "Delta BV", "--email", "e@delta.example")
    run("companies", "create", "--name", "Echo BV", "--admin-email", "x@echo.example",
        "--password-stdin", stdin="chosen by the operator\n")
    with factory() as session:
        flags = dict(session.execute(select(User.email, User.must_change_password)).all())
    assert flags == {"d@delta.example": True, "e@delta.example": True, "x@echo.example": False}
    with serve(create_app(settings)) as base, FormClient(base) as browser:
        landed = browser.log_in("d@delta.example", otp)
        assert (landed.status_code, landed.headers["location"]) == (303, PASSWORD_PAGE)
        for path in (PROFILE, "/portal/profile/apis", SESSIONS, "/portal/users",
                     "/portal/activity", "/portal/billing-api/keys", "/"):
            answer = browser.get(path)
            assert (answer.status_code, answer.headers.get("location")) == (
                303, PROFILE if path == "/" else PASSWORD_PAGE), path
        form = browser.get(PASSWORD_PAGE)
        assert form.status_code == 200 and 'id="must-change"' in form.text
        assert 'aria-label="Main"' not in form.text  # no way round it but logging out
        enable = browser.post("/portal/profile/apis/enable")
        assert (enable.status_code, enable.headers["location"]) == (303, PASSWORD_PAGE)
        browser.get(PASSWORD_PAGE)
        assert browser.change_password(otp, NEW_PASSWORD).status_code == 303
        assert browser.get("/portal/profile/apis").status_code == 200
        with FormClient(base) as again:
            assert again.log_in("d@delta.example", otp).status_code == 400  # used up
            assert again.log_in("d@delta.example", NEW_PASSWORD).headers["location"] == PROFILE
        with FormClient(base) as other:
            other.first_log_in("e@delta.example", user_otp.strip(), NEW_PASSWORD + "!")
            assert other.get(PROFILE).status_code == 200
    with factory() as session:
        assert session.scalars(select(Company.api_enabled).where(
            Company.name == "Delta BV")).one() is False
        assert not any(session.scalars(select(User.must_change_password).where(
            User.email.in_(["d@delta.example", "e@delta.example"]))))


def test_a_password_reset_by_the_operator_ends_sessions_and_must_be_changed(
        run: Any, settings: Settings, factory: sessionmaker[Session]) -> None:  # noqa: F811
    run("companies", "create", "--name", "Delta BV", "--admin-email", "d@delta.example",
        "--password-stdin", stdin=PASSWORD + "\n")
    with serve(create_app(settings)) as base, logged_in(base, "d@delta.example",
                                                         PASSWORD) as browser:
        otp, _ = run("users", "reset-password", "--company", "Delta BV", "--email",
                     "d@delta.example")
        assert is_logged_out(browser.get(PROFILE))
        assert browser.log_in("d@delta.example", PASSWORD).status_code == 400
        assert browser.log_in("d@delta.example", otp.strip()).headers["location"] == \
            PASSWORD_PAGE
    # The operator's act, never shown as the user's own.
    assert account_events(factory, "password_reset") == [
        (None, "for d@delta.example; every portal session ended; one-time, to be changed at "
               "the next login")]


def test_the_portal_add_user_password_is_one_time(world: World) -> None:
    with logged_in(world.base, world.admin, PASSWORD) as admin:
        admin.get("/portal/users")
        created = admin.post("/portal/users", {"email": "new@acme.example",
                                               "form_nonce": admin.nonce()})
        otp = re.search(r'<code id="password"[^>]*>([^<]+)</code>', created.text)
        assert otp
    with FormClient(world.base) as newcomer:
        assert newcomer.log_in("new@acme.example", otp.group(1)).headers["location"] == \
            PASSWORD_PAGE


# --- deactivation ------------------------------------------------------------------------------


def test_deactivation_in_the_portal_or_the_cli_ends_every_session(
        world: World, factory: sessionmaker[Session], run: Any) -> None:  # noqa: F811
    with logged_in(world.base, world.clerk, CLERK_PASSWORD) as one, \
            logged_in(world.base, world.clerk, CLERK_PASSWORD) as two, \
            logged_in(world.base, world.admin, PASSWORD) as admin:
        clerk_id = session_rows(factory, world.clerk)[0].user_id
        admin.get(f"/portal/users/{clerk_id}/deactivate")
        done = admin.post(f"/portal/users/{clerk_id}/deactivate")
        assert done.status_code == 303
        assert session_rows(factory, world.clerk) == []
        assert is_logged_out(one.get(PROFILE)) and is_logged_out(two.get(PROFILE))
        assert admin.get(PROFILE).status_code == 200
    with transaction(factory) as session:
        company = session.get(Company, world.company_id)
        assert company is not None
        users.add_user(session, company, "temp@acme.example", CLERK_PASSWORD)
    with logged_in(world.base, "temp@acme.example", CLERK_PASSWORD) as temp:
        run("users", "deactivate", "--company", "Acme Cloud BV", "--email", "temp@acme.example")
        assert session_rows(factory, "temp@acme.example") == []
        assert is_logged_out(temp.get(PROFILE))


# --- Disable Billing API ------------------------------------------------------------------------


def test_the_administrator_disables_the_api_after_confirming_and_keys_stop_working(
        world: World, factory: sessionmaker[Session], settings: Settings) -> None:
    with transaction(factory) as session:
        company = session.get(Company, world.company_id)
        assert company is not None
        whitelist.add_entry(session, company, "127.0.0.1")
        _, secret = keys.create_key(session, settings, company,
                                    environment=Environment.PRODUCTION, name="erp")
    api = f"{world.base}/api/v4/invoices"
    assert httpx.get(api, headers={"X-Api-Key": secret}, timeout=10).status_code == 200
    with logged_in(world.base, world.admin, PASSWORD) as admin:
        apis = admin.get("/portal/profile/apis").text
        assert 'href="/portal/profile/apis/disable"' in apis
        confirm = admin.get("/portal/profile/apis/disable")
        assert confirm.status_code == 200 and "Disable the Billing API?" in confirm.text
        with factory() as session:  # asking is not doing
            assert session.get(Company, world.company_id).api_enabled is True  # type: ignore[union-attr]
        done = admin.post("/portal/profile/apis/disable")
        assert (done.status_code, done.headers["location"]) == (303, "/portal/profile/apis")
        assert "The Billing API is disabled" in admin.get("/portal/profile/apis").text
        again = admin.post("/portal/profile/apis/disable")
        assert again.status_code == 409
    refused = httpx.get(api, headers={"X-Api-Key": secret, "Accept": "application/json"},
                        timeout=10)
    assert refused.status_code == 403 and refused.json()["code"] == "api_disabled"
    with factory() as session:
        rows = session.execute(select(AuditEvent.actor_user_id, AuditEvent.client_address)
                               .where(AuditEvent.event_type == "api_disabled")).all()
        admin_id = session.scalar(select(User.id).where(User.email == world.admin))
    assert [tuple(r) for r in rows] == [(admin_id, "127.0.0.1")]


def test_a_non_administrator_cannot_disable_the_api(
        world: World, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        company = session.get(Company, world.company_id)
        assert company is not None
        clerk = users.find_user(session, company, world.clerk)
        permissions.set_api_permission(session, company, company.users[0], clerk, True)
    with logged_in(world.base, world.clerk, CLERK_PASSWORD) as clerk_client:
        assert "/portal/profile/apis/disable" not in clerk_client.get("/portal/profile/apis").text
        assert clerk_client.get("/portal/profile/apis/disable").status_code == 403
        clerk_client.get(PROFILE)
        forged = clerk_client.post("/portal/profile/apis/disable")  # valid CSRF token
        assert forged.status_code == 403 and "Not allowed" in forged.text
        no_token = clerk_client.post("/portal/profile/apis/disable", csrf=False)
        assert no_token.status_code == 403 and "security token" in no_token.text
    with factory() as session:
        assert session.get(Company, world.company_id).api_enabled is True  # type: ignore[union-attr]
        assert session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.event_type == "api_disabled")) == 0
    assert [r[:2] for r in audit_rows(factory, "portal_denied")] == [
        ("/portal/profile/apis/disable", "not_account_admin"),
        ("/portal/profile/apis/disable", "not_account_admin"),
        ("/portal/profile/apis/disable", "csrf_failed")]


def test_the_demos_printed_login_is_one_time_and_a_new_one_ends_its_sessions(
        run: Any, settings: Settings, factory: sessionmaker[Session]) -> None:  # noqa: F811
    out, _ = run("demo", "--customers", "1", "--months", "1", "--if-empty")
    first = re.search(r"with password (\S+)", out)
    assert first and "one-time" in out
    with serve(create_app(settings)) as base, FormClient(base) as browser:
        browser.first_log_in("admin@northwind.example", first.group(1), NEW_PASSWORD)
        assert browser.get(PROFILE).status_code == 200
        out, _ = run("demo", "--if-empty")  # data exists: only a new printed password
        second = re.search(r"with password (\S+)", out)
        assert second and second.group(1) != first.group(1)
        assert is_logged_out(browser.get(PROFILE))
        with FormClient(base) as again:
            assert again.log_in("admin@northwind.example", NEW_PASSWORD).status_code == 400
            assert again.log_in("admin@northwind.example", second.group(1)).headers[
                "location"] == PASSWORD_PAGE
