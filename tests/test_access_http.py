"""The authentication dependency over real HTTP: uvicorn on loopback, requests with httpx.

Every refusal must answer the contract's status and code and leave an ``api_denied`` row."""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, links, permissions, users, whitelist
from billing_api.access.models import ApiKey
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests.access_helpers import Partner, denied_reasons, make_partner, test_app
from tests.http_server import ipv6_loopback_available, serve

WHOAMI = "/api/v4/whoami"


def get(base: str, path: str = WHOAMI, *, key: str | None = None,
        **headers: str) -> httpx.Response:
    if key is not None:
        headers["X-Api-Key"] = key
    headers.setdefault("Accept", "application/json")
    return httpx.get(base + path, headers=headers, timeout=10)


def assert_refused(response: httpx.Response, status: int, code: str,
                   factory: sessionmaker[Session]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code
    assert denied_reasons(factory)[-1] == code


@pytest.fixture
def partner(factory: sessionmaker[Session], settings: Settings) -> Partner:
    return make_partner(factory, settings)


@pytest.fixture
def base(settings: Settings, partner: Partner) -> object:
    with serve(test_app(settings)) as url:
        yield url


def test_valid_key_is_accepted_and_names_the_caller(base: str, partner: Partner,
                                                    factory: sessionmaker[Session]) -> None:
    response = get(base, key=partner.secret)
    assert response.status_code == 200, response.text
    assert response.json() == {"company_id": partner.company_id, "key_id": partner.key_id,
                               "environment": "production", "client_address": "127.0.0.1"}
    with factory() as session:
        assert session.get(ApiKey, partner.key_id).last_used_at is not None  # type: ignore[union-attr]
    assert denied_reasons(factory) == []


def test_parallel_first_uses_of_a_key_write_one_stamp(base: str, partner: Partner) -> None:
    """A key's requests in flight at a minute's turn all read a stale stamp; one writes it
    (the others would queue for the write lock: bench/load.py's p99)."""
    stamps: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lower().startswith("update api_keys set last_used_at"):
            stamps.append(statement)

    event.listen(Engine, "before_cursor_execute", note)
    try:
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda _: get(base, key=partner.secret), range(32)))
    finally:
        event.remove(Engine, "before_cursor_execute", note)
    assert [a.status_code for a in answers] == [200] * 32
    assert len(stamps) == 1


def test_no_key(base: str, factory: sessionmaker[Session]) -> None:
    assert_refused(get(base), 401, "missing_key", factory)


def test_malformed_key(base: str, partner: Partner, factory: sessionmaker[Session]) -> None:
    typo = partner.secret[:20] + ("A" if partner.secret[20] != "A" else "B") + partner.secret[21:]
    assert_refused(get(base, key=typo), 401, "malformed_key", factory)


def test_unknown_key(base: str, factory: sessionmaker[Session]) -> None:
    stranger = keys.generate_secret(Environment.PRODUCTION)
    assert_refused(get(base, key=stranger), 401, "unknown_key", factory)


def test_revoked_key(base: str, partner: Partner, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        keys.revoke_key(session, users.find_company(session, str(partner.company_id)),
                        partner.key_id)
    assert_refused(get(base, key=partner.secret), 401, "revoked_key", factory)


def test_expired_key(base: str, partner: Partner, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        session.execute(update(ApiKey).values(
            expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert_refused(get(base, key=partner.secret), 401, "expired_key", factory)


def test_api_disabled(base: str, partner: Partner, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        company = users.find_company(session, str(partner.company_id))
        permissions.set_api_enabled(session, company,
                                    users.find_user(session, company, partner.admin_email), False)
    assert_refused(get(base, key=partner.secret), 403, "api_disabled", factory)


def test_empty_whitelist(settings: Settings, factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings, networks=())
    with serve(test_app(settings)) as url:
        response = get(url, key=p.secret)
    assert_refused(response, 403, "ip_not_whitelisted", factory)
    assert response.json()["detail"] == (
        "no IP address is whitelisted for this account: add one under Your APIs")


def test_client_outside_whitelist(settings: Settings, factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings, networks=("192.0.2.0/24", "::1"))
    with serve(test_app(settings)) as url:
        assert_refused(get(url, key=p.secret), 403, "ip_not_whitelisted", factory)


def test_problem_is_xml_by_default(base: str) -> None:
    response = httpx.get(base + WHOAMI, timeout=10)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+xml")
    assert "<code>missing_key</code>" in response.text


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")


@needs_ipv6
def test_ipv6_client(settings: Settings, factory: sessionmaker[Session]) -> None:
    allowed = make_partner(factory, settings, name="Six BV", networks=("::1",))
    other = make_partner(factory, settings, name="Four BV", networks=("127.0.0.1",))
    with serve(test_app(settings), "::1") as url:
        ok = get(url, key=allowed.secret)
        refused = get(url, key=other.secret)
    assert ok.status_code == 200 and ok.json()["client_address"] == "::1"
    assert_refused(refused, 403, "ip_not_whitelisted", factory)


@needs_ipv6
def test_ipv4_mapped_client_matches_ipv4_entry(settings: Settings,
                                               factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings, networks=("127.0.0.1",))
    outsider = make_partner(factory, settings, name="Other BV", networks=("10.0.0.0/8",))
    # A dual-stack listener sees an IPv4 client as ::ffff:127.0.0.1.
    with serve(test_app(settings), "::", dual_stack=True) as url:
        v4 = url.replace("[::]", "127.0.0.1")
        ok = get(v4, key=p.secret)
        refused = get(v4, key=outsider.secret)
    assert ok.status_code == 200, ok.text
    assert ok.json()["client_address"] == "127.0.0.1"
    assert_refused(refused, 403, "ip_not_whitelisted", factory)


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored(
        settings: Settings, factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings, networks=("203.0.113.7",))
    with serve(test_app(settings)) as url:
        response = get(url, key=p.secret, **{"X-Forwarded-For": "203.0.113.7",
                                               "Forwarded": "for=203.0.113.7"})
    assert_refused(response, 403, "ip_not_whitelisted", factory)


def test_forwarded_for_from_trusted_proxy_is_honoured(
        settings: Settings, factory: sessionmaker[Session]) -> None:
    trusting = settings.model_copy(update={"trusted_proxies": "127.0.0.1/32, 10.0.0.0/8"})
    p = make_partner(factory, trusting, networks=("203.0.113.7",))
    with serve(test_app(trusting)) as url:
        # The left-most value is the client's own claim; the right-most untrusted hop counts.
        ok = get(url, key=p.secret, **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.1.1.1"})
        spoofed = get(url, key=p.secret, **{"X-Forwarded-For": "203.0.113.7, 198.51.100.1"})
    assert ok.status_code == 200 and ok.json()["client_address"] == "203.0.113.7"
    assert_refused(spoofed, 403, "ip_not_whitelisted", factory)


def test_sandbox_key_is_a_sandbox_caller(settings: Settings,
                                         factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings, environment=Environment.SANDBOX)
    with serve(test_app(settings)) as url:
        response = get(url, key=p.secret)
    assert response.json()["environment"] == "sandbox"
    assert p.secret.startswith("nwb_test_")


def _link(settings: Settings, p: Partner, params: list[tuple[str, str]], **kw: object) -> str:
    return links.signed_url(settings, keys.digest(settings, p.secret), WHOAMI, params,
                            **kw)  # type: ignore[arg-type]


def test_link_tokens(base: str, settings: Settings, partner: Partner,
                     factory: sessionmaker[Session]) -> None:
    params = [("format", "json"), ("startDate", "20260101")]
    url = _link(settings, partner, params)
    assert httpx.get(base + url, timeout=10).status_code == 200
    tampered = url.replace("20260101", "20250101")
    assert_refused(httpx.get(base + tampered, timeout=10), 401, "bad_token", factory)
    retargeted = url.replace(WHOAMI, "/api/v3/whoami")
    assert_refused(httpx.get(base + retargeted, timeout=10), 401, "bad_token", factory)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)
    expired = _link(settings, partner, params, now=past)
    assert_refused(httpx.get(base + expired, timeout=10), 401, "bad_token", factory)
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    assert_refused(httpx.get(base + forged, timeout=10), 401, "bad_token", factory)
    with transaction(factory) as session:
        keys.revoke_key(session, users.find_company(session, str(partner.company_id)),
                        partner.key_id)
    assert_refused(httpx.get(base + url, timeout=10), 401, "revoked_key", factory)


def test_link_obeys_whitelist(settings: Settings, factory: sessionmaker[Session]) -> None:
    p = make_partner(factory, settings, networks=("192.0.2.1",))
    with serve(test_app(settings)) as url:
        response = httpx.get(url + _link(settings, p, [("format", "json")]), timeout=10)
    assert_refused(response, 403, "ip_not_whitelisted", factory)


def test_rate_limit(settings: Settings, factory: sessionmaker[Session]) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 3})
    p = make_partner(factory, limited)
    with serve(test_app(limited)) as url:
        statuses = [get(url, key=p.secret).status_code for _ in range(3)]
        refused = get(url, key=p.secret)
        again = get(url, key=p.secret)
    assert statuses == [200, 200, 200]
    assert_refused(refused, 429, "rate_limited", factory)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert again.status_code == 429
    assert denied_reasons(factory) == ["rate_limited"]  # one audit row per key and minute


def test_whitelist_change_applies_at_once(base: str, partner: Partner,
                                          factory: sessionmaker[Session]) -> None:
    assert get(base, key=partner.secret).status_code == 200
    with transaction(factory) as session:
        company = users.find_company(session, str(partner.company_id))
        for entry in whitelist.list_entries(session, company):
            whitelist.remove_entry(session, company, entry.id)
    assert_refused(get(base, key=partner.secret), 403, "ip_not_whitelisted", factory)
