"""Portal single sign-on against a real OpenID Connect provider on loopback
(tests/oidc_provider.py), over real HTTP: the portal under uvicorn, a cookie-keeping client as
the browser, the provider's own authorization form and token endpoint.

Each refusal (tampered state, replayed code, wrong audience, expired token, unknown user,
another company's claim, a deactivated user) is a page and an ``sso_refused`` audit row, and
nobody is logged in. The same sign-in in chromium: tests/test_portal_sso_browser.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response
from typer.testing import CliRunner

from billing_api.access import audit, permissions, users
from billing_api.access.models import AuditEvent, User, UserSession
from billing_api.app import create_app
from billing_api.cli import app as cli_app
from billing_api.cli import context
from billing_api.db import transaction
from billing_api.portal import sso_state
from billing_api.portal.sso_client import Authorization
from billing_api.settings import ConfigurationError, Settings, load_settings
from tests.browser import FormClient
from tests.conftest import TEST_SECRET
from tests.http_server import serve
from tests.log_capture import STORE
from tests.oidc_provider import Provider, callback_params, running_provider

CLIENT_ID = "billing-portal"
CLIENT_SECRET = "portal-client-secret-0123456789"
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with running_provider() as running:
        yield running


def sso_settings(database_url: str, provider: Provider, **extra: Any) -> Settings:
    return Settings(database_url=database_url, secret_key=TEST_SECRET, redis_url=None,
                    oidc_issuer=provider.issuer, oidc_client_id=CLIENT_ID,
                    oidc_client_secret=CLIENT_SECRET, **extra)


@dataclass
class World:
    base: str
    app: Any
    acme: int
    bravo: int
    clerk: str  # Acme, API permission, not the Account Administrator
    factory: sessionmaker[Session]


def build_world(factory: sessionmaker[Session]) -> tuple[int, int]:
    with transaction(factory) as session:
        acme, admin = users.create_company(session, "Acme Cloud BV", "admin@acme.example",
                                           PASSWORD)
        clerk = users.add_user(session, acme, "clerk@acme.example", PASSWORD)
        permissions.set_api_permission(session, acme, admin, clerk, True)
        bravo, _ = users.create_company(session, "Bravo Hosting BV", "admin@bravo.example",
                                        PASSWORD)
        return acme.id, bravo.id


@pytest.fixture
def world(factory: sessionmaker[Session], database_url: str,
          provider: Provider) -> Iterator[World]:
    acme, bravo = build_world(factory)
    app = create_app(sso_settings(database_url, provider))
    with serve(app) as base:
        yield World(base, app, acme, bravo, "clerk@acme.example", factory)


def start(browser: FormClient) -> str:
    """Press "Sign in with …" on the login page; returns the provider's authorization URL."""
    page = browser.get("/")
    assert "Sign in with Commerce Platform" in page.text
    answer = browser.post("/portal/sso/start")
    assert answer.status_code == 303, answer.text
    return answer.headers["location"]


def sign_in(browser: FormClient, provider: Provider, sub: str) -> httpx.Response:
    """The whole round trip; returns the portal's answer to the provider's redirect."""
    back = provider.authorize(start(browser), sub)
    return browser.get(urlsplit(back).path + "?" + urlsplit(back).query)


def refusals(world: World) -> list[tuple[int | None, str, int]]:
    """(company, reason, count) of the ``sso_refused`` rows, sorted (refusals are counted per
    address, reason, detail and minute, and written in batches)."""
    world.app.state.refusal_audit.flush()
    audit.flush_pending()
    with world.factory() as session:
        return sorted(((r.company_id, r.reason, r.count) for r in session.execute(
            select(AuditEvent.company_id, AuditEvent.reason, AuditEvent.count)
            .where(AuditEvent.event_type == "sso_refused"))), key=str)


def assert_refused(answer: httpx.Response, browser: FormClient) -> None:
    assert answer.status_code == 403, answer.text
    assert "Sign-in with Commerce Platform refused" in answer.text
    assert browser.get("/portal/profile").headers.get("location") == "/"  # not logged in


def clerk_claims(world: World, **extra: object) -> dict[str, object]:
    return {"email": world.clerk, "email_verified": True, "company_id": world.acme, **extra}


def test_sign_in_links_by_verified_email_then_by_subject(
        world: World, provider: Provider) -> None:
    # Whatever the provider says about roles, the portal's roles stay the portal's.
    provider.set_user("sub-clerk-1", **clerk_claims(world, roles=["account_admin"],
                                                   is_account_admin=True))
    with FormClient(world.base) as browser:
        # The button and Log out redirect to the provider: the CSP's form-action admits it.
        policy = browser.get("/").headers["content-security-policy"]
        assert f"form-action 'self' {provider.issuer};" in policy
        authorization = start(browser)
        query = parse_qs(urlsplit(authorization).query)
        assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
        assert query["client_id"] == [CLIENT_ID] and query["nonce"] and query["state"]
        assert set(query["scope"][0].split()) == {"openid", "email", "profile"}
        cookie = next(c for c in browser.http.cookies.jar if c.name == "portal_sso")
        assert cookie.path == "/portal/sso" and cookie.has_nonstandard_attr("HttpOnly")
        back = provider.authorize(authorization, "sub-clerk-1")
        answer = browser.get(urlsplit(back).path + "?" + urlsplit(back).query)
        assert answer.status_code == 303 and answer.headers["location"] == "/portal/profile"
        assert not any(c.name == "portal_sso" for c in browser.http.cookies.jar)
        profile = browser.get("/portal/profile")
        assert profile.status_code == 200 and world.clerk in profile.text
        assert "Signed in with Commerce Platform" in profile.text
        assert browser.get("/portal/users").status_code == 403  # still not the administrator
    with world.factory() as session:
        clerk = session.scalars(select(User).where(User.email == world.clerk)).one()
        assert clerk.oidc_subject == "sub-clerk-1" and not clerk.is_account_admin
        assert session.scalars(select(UserSession.signed_in_with).where(
            UserSession.user_id == clerk.id)).all() == ["oidc"]
        linked = session.scalars(select(AuditEvent.detail).where(
            AuditEvent.event_type == "sso_linked")).all()
    assert linked == ["clerk@acme.example ↔ sub sub-clerk-1: matched by verified e-mail at "
                      "sign-in"]
    # Pinned: the same sub signs in even with another e-mail on the platform now.
    provider.set_user("sub-clerk-1", **clerk_claims(world, email="renamed@acme.example"))
    with FormClient(world.base) as browser:
        assert sign_in(browser, provider, "sub-clerk-1").status_code == 303
        assert world.clerk in browser.get("/portal/profile").text
    # ... and another identity showing the clerk's verified e-mail does not.
    provider.set_user("sub-intruder", **clerk_claims(world))
    with FormClient(world.base) as browser:
        assert_refused(sign_in(browser, provider, "sub-intruder"), browser)
    assert refusals(world) == [(world.acme, "linked_to_other_identity", 1)]
    # No token in any log line, and no code in the app's own (the access log above is the
    # test server's, which `billing-api serve` turns off for the app's path-only line).
    assert not [line for line in STORE.lines if "eyJ" in line or (
        line.startswith(("billing_api", "authlib")) and "code=" in line)]


def test_tampered_state_is_refused_and_audited(world: World, provider: Provider) -> None:
    provider.set_user("sub-clerk-2", **clerk_claims(world))
    with FormClient(world.base) as browser:
        back = callback_params(provider.authorize(start(browser), "sub-clerk-2"))
        tampered = {**back, "state": back["state"][:-2] + ("AA" if back["state"][-2:] != "AA"
                                                            else "BB")}
        assert_refused(browser.get("/portal/sso/callback", **tampered), browser)
        # The attempt is spent: the genuine state does not work after the tampered one.
        assert_refused(browser.get("/portal/sso/callback", **back), browser)
    with FormClient(world.base) as other_browser:  # a code and state carried elsewhere
        other_browser.get("/")
        assert_refused(other_browser.get("/portal/sso/callback", **back), other_browser)
    assert refusals(world) == [(None, "state_mismatch", 1), (None, "state_missing", 2)]


def test_a_replayed_code_is_refused_and_audited(world: World, provider: Provider) -> None:
    provider.set_user("sub-clerk-3", **clerk_claims(world))
    with FormClient(world.base) as browser:
        back = callback_params(provider.authorize(start(browser), "sub-clerk-3"))
        assert browser.get("/portal/sso/callback", **back).status_code == 303
    with FormClient(world.base) as browser:
        # A new attempt's state with the used code: the provider refuses to redeem it again.
        fresh = callback_params(provider.authorize(start(browser), "sub-clerk-3"))
        assert_refused(browser.get("/portal/sso/callback", state=fresh["state"],
                                   code=back["code"]), browser)
    assert refusals(world) == [(None, "code_rejected", 1)]


@pytest.mark.parametrize(("claims", "reason"), [
    ({"aud": "another-client"}, "id_token_aud"),
    ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "id_token_exp"),
    ({"iss": "https://impostor.example"}, "id_token_iss"),
    ({"nonce": "not-the-one-we-sent"}, "id_token_nonce"),
])
def test_an_id_token_that_fails_a_check_is_refused_and_audited(
        world: World, provider: Provider, claims: dict[str, object], reason: str) -> None:
    # The provider itself signs these tokens: only the claim is wrong.
    provider.set_user("sub-bad-token", **clerk_claims(world, **claims))
    with FormClient(world.base) as browser:
        assert_refused(sign_in(browser, provider, "sub-bad-token"), browser)
    assert refusals(world) == [(None, reason, 1)]
    with world.factory() as session:
        assert session.scalar(select(User.oidc_subject).where(User.email == world.clerk)) \
            is None


def test_unknown_users_other_companies_and_inactive_users_are_refused_and_audited(
        world: World, provider: Provider) -> None:
    provider.set_user("sub-stranger", email="stranger@acme.example", email_verified=True,
                      company_id=world.acme)
    provider.set_user("sub-unverified", **clerk_claims(world, email_verified=False))
    provider.set_user("sub-bravo-claim", **clerk_claims(world, company_id=world.bravo))
    provider.set_user("sub-no-company", email=world.clerk, email_verified=True)
    for sub in ("sub-stranger", "sub-unverified", "sub-bravo-claim", "sub-no-company"):
        with FormClient(world.base) as browser:
            assert_refused(sign_in(browser, provider, sub), browser)
    with transaction(world.factory) as session:
        acme = users.find_company(session, str(world.acme))
        permissions.deactivate_user(session, acme, users.find_user(session, acme, world.clerk))
    provider.set_user("sub-gone", **clerk_claims(world))
    with FormClient(world.base) as browser:
        assert_refused(sign_in(browser, provider, "sub-gone"), browser)
    assert refusals(world) == sorted([(world.acme, "unknown_identity", 1),
                                      (world.acme, "unknown_identity", 1),
                                      (world.acme, "company_mismatch", 1),
                                      (world.acme, "company_claim_missing", 1),
                                      (world.acme, "user_inactive", 1)], key=str)
    with world.factory() as session:
        assert session.scalars(select(User.oidc_subject)).all() == [None, None, None]
        assert session.scalars(select(UserSession)).all() == []


def test_the_provider_rotating_its_key_is_followed(world: World, provider: Provider) -> None:
    provider.set_user("sub-clerk-4", **clerk_claims(world))
    with FormClient(world.base) as browser:
        assert sign_in(browser, provider, "sub-clerk-4").status_code == 303
    before = provider.jwks()
    provider.rotate_key()
    assert provider.jwks() != before
    with FormClient(world.base) as browser:  # the cached keys no longer verify: fetched again
        assert sign_in(browser, provider, "sub-clerk-4").status_code == 303
        assert world.clerk in browser.get("/portal/profile").text
    assert refusals(world) == []


def test_logout_ends_the_session_and_the_providers(world: World, provider: Provider) -> None:
    provider.set_user("sub-clerk-5", **clerk_claims(world))
    with FormClient(world.base) as browser:
        assert sign_in(browser, provider, "sub-clerk-5").status_code == 303
        browser.get("/portal/profile")
        copied = browser.http.cookies.get("portal_session")
        answer = browser.post("/portal/logout")
        assert answer.status_code == 303
        target = urlsplit(answer.headers["location"])
        assert f"{target.scheme}://{target.netloc}" == provider.issuer
        assert target.path == "/oauth2/end_session"
        assert parse_qs(target.query)["client_id"] == [CLIENT_ID]
        assert parse_qs(target.query)["post_logout_redirect_uri"] == [world.base + "/"]
        assert httpx.get(answer.headers["location"], timeout=10).status_code == 200
    with world.factory() as session:
        assert session.scalars(select(UserSession)).all() == []
    with FormClient(world.base) as thief:  # a copy of the cookie is worth nothing now
        thief.http.cookies.set("portal_session", copied or "")
        assert thief.get("/portal/profile").headers.get("location") == "/"
    # A password login's logout stays at home.
    with FormClient(world.base) as browser:
        assert browser.log_in(world.clerk, PASSWORD).status_code == 303
        browser.get("/portal/profile")
        assert browser.post("/portal/logout").headers["location"] == "/"


def test_password_login_switched_off(factory: sessionmaker[Session], database_url: str,
                                     provider: Provider) -> None:
    acme, _ = build_world(factory)
    app = create_app(sso_settings(database_url, provider, local_login=False))
    provider.set_user("sub-clerk-6", email="clerk@acme.example", email_verified=True,
                      company_id=acme)
    with serve(app) as base, FormClient(base) as browser:
        page = browser.get("/")
        assert 'action="/portal/login"' not in page.text and "Password" not in page.text
        refused = browser.post("/portal/login", {"email": "clerk@acme.example",
                                                 "password": PASSWORD})
        assert refused.status_code == 403 and "Password login is switched off" in refused.text
        assert browser.get("/portal/profile").headers.get("location") == "/"
        assert sign_in(browser, provider, "sub-clerk-6").status_code == 303
        assert browser.get("/portal/profile").status_code == 200
        app.state.refusal_audit.flush()
    with factory() as session:
        assert session.execute(select(AuditEvent.reason, AuditEvent.detail).where(
            AuditEvent.event_type == "login_failed")).all() == [
                ("local_login_off", "clerk@acme.example")]


def test_without_a_provider_nothing_changes(factory: sessionmaker[Session],
                                            settings: Settings) -> None:
    build_world(factory)
    with serve(create_app(settings)) as base, FormClient(base) as browser:
        page = browser.get("/")
        assert "Sign in with" not in page.text and 'action="/portal/login"' in page.text
        assert "form-action 'self';" in page.headers["content-security-policy"]
        assert browser.post("/portal/sso/start").status_code == 404
        assert browser.get("/portal/sso/callback", state="x", code="y").status_code == 404
        assert browser.log_in("clerk@acme.example", PASSWORD).status_code == 303


def test_settings_refuse_password_login_off_without_a_provider(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="BILLING_API_LOCAL_LOGIN=false"):
        load_settings(database_url=settings.database_url, local_login=False)
    with pytest.raises(ConfigurationError, match="half configured"):
        load_settings(database_url=settings.database_url, oidc_issuer="https://id.example")
    with pytest.raises(ConfigurationError, match="https://"):
        load_settings(database_url=settings.database_url, oidc_issuer="http://id.example",
                      oidc_client_id="a", oidc_client_secret="b")
    # `billing-api serve` stops before anything starts, with one line.
    monkeypatch.setenv("BILLING_API_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BILLING_API_LOCAL_LOGIN", "false")
    context.settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_app, ["serve"])
    finally:
        context.settings.cache_clear()
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "BILLING_API_LOCAL_LOGIN=false" in lines[0], result.stderr


def test_operator_links_lists_and_unlinks_identities(
        world: World, provider: Provider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_API_DATABASE_URL", world.app.state.settings.database_url)
    monkeypatch.setenv("BILLING_API_SECRET_KEY", TEST_SECRET)
    context.settings.cache_clear()
    context.engine.cache_clear()
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli_app, ["users", *args])
        assert result.exit_code == code, (args, result.stdout, result.stderr)
        return result.stdout + result.stderr

    try:
        run("link-identity", "--company", "Acme Cloud BV", "--email", world.clerk,
            "--subject", "platform-7")
        run("link-identity", "--company", "Acme Cloud BV", "--email", "admin@acme.example",
            "--subject", "platform-7", code=1)  # taken
        listed = runner.invoke(cli_app, ["users", "identities"]).stdout.splitlines()
        assert [line.split("\t")[:3] + line.split("\t")[4:] for line in listed] == [
            ["Acme Cloud BV", world.clerk, "platform-7", "active"]]
        # The linked identity signs in whatever e-mail it shows.
        provider.set_user("platform-7", email="someone@else.example", email_verified=False,
                          company_id=world.acme)
        with FormClient(world.base) as browser:
            assert sign_in(browser, provider, "platform-7").status_code == 303
            assert "unlinked" in run("unlink-identity", "--company", "Acme Cloud BV",
                                     "--email", world.clerk)
            # Its session ended with the link.
            assert browser.get("/portal/profile").headers.get("location") == "/"
        assert runner.invoke(cli_app, ["users", "identities"]).stdout == ""
        with FormClient(world.base) as browser:
            assert_refused(sign_in(browser, provider, "platform-7"), browser)
    finally:
        context.engine().dispose()
        context.settings.cache_clear()
        context.engine.cache_clear()
    with world.factory() as session:
        events = session.scalars(select(AuditEvent.event_type).where(
            AuditEvent.event_type.in_(("sso_linked", "sso_unlinked"))).order_by(
            AuditEvent.id)).all()
    assert events == ["sso_linked", "sso_unlinked"]


def test_a_one_time_password_dies_at_single_sign_on(
        world: World, provider: Provider) -> None:
    with transaction(world.factory) as session:
        acme = users.find_company(session, str(world.acme))
        users.add_user(session, acme, "new@acme.example", "printed-once-0123",
                       must_change_password=True)
    provider.set_user("sub-new", email="new@acme.example", email_verified=True,
                      company_id=world.acme)
    with FormClient(world.base) as browser:
        assert sign_in(browser, provider, "sub-new").status_code == 303
        assert browser.get("/portal/profile").status_code == 200  # no forced password change
    with FormClient(world.base) as browser:
        answer = browser.log_in("new@acme.example", "printed-once-0123")
        assert answer.status_code == 400 and "Wrong e-mail or password" in answer.text


def test_the_attempt_cookie_is_refused_tampered_expired_or_in_another_browser(
        settings: Settings) -> None:
    attempt = Authorization(url="https://id.example/authorize", state="s" * 43,
                            nonce="n" * 43, code_verifier="v" * 64)
    written = Response()
    plain = Request({"type": "http", "headers": [], "scheme": "http", "server": ("t", 80),
                     "path": "/", "query_string": b"", "client": ("127.0.0.1", 1)})
    sso_state.write(written, plain, settings, "browser-a", attempt, now=1000.0)
    header = written.headers["set-cookie"]
    assert "Path=/portal/sso" in header and "HttpOnly" in header and "SameSite=lax" in header
    assert "Max-Age=600" in header
    value = header.split(";")[0].split("=", 1)[1]

    def read(cookie: str, sid: str = "browser-a", now: float = 1100.0) -> tuple[Any, str]:
        request = Request({"type": "http", "scheme": "http", "server": ("t", 80),
                           "path": "/portal/sso/callback", "query_string": b"",
                           "headers": [(b"cookie", f"portal_sso={cookie}".encode())]})
        return sso_state.read(request, settings, sid, now=now)

    found, why = read(value)
    assert why == "" and found == sso_state.Pending("s" * 43, "n" * 43, "v" * 64)
    body, signature = value.split(".")
    assert read(body[:-2] + "AA." + signature)[1] == "state_tampered"
    assert read(body)[1] == "state_tampered"
    assert read(value, now=1000.0 + 600)[1] == "state_expired"
    assert read(value, sid="browser-b")[1] == "other_browser"
    other = Settings(database_url=settings.database_url,
                     secret_key="another-secret-0123456789abcdefghij")
    request = Request({"type": "http", "scheme": "http", "server": ("t", 80), "path": "/",
                       "query_string": b"", "headers": [(b"cookie",
                                                         f"portal_sso={value}".encode())]})
    assert sso_state.read(request, other, "browser-a", now=1100.0)[1] == "state_tampered"
