"""Key format, whitelist rules, client address, link tokens, rate limits, permissions."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import grants, keys, links, permissions, users, whitelist
from billing_api.access.client_address import client_address
from billing_api.access.errors import (
    BadToken,
    NoApiPermission,
    NotAccountAdministrator,
    RateLimited,
)
from billing_api.access.models import ApiKey
from billing_api.access.ratelimit import LoginThrottle, SlidingWindowLimiter
from billing_api.access.redaction import redact
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.errors import Conflict, InvalidInput
from billing_api.settings import Settings


def test_secret_format_and_checksum() -> None:
    live = keys.generate_secret(Environment.PRODUCTION)
    test = keys.generate_secret(Environment.SANDBOX)
    assert live.startswith("nwb_live_") and test.startswith("nwb_test_")
    assert len(live) == keys.SECRET_LEN == 58
    parsed = keys.parse_secret(live)
    assert parsed is not None and parsed.environment is Environment.PRODUCTION
    assert parsed.display_prefix == live[:15]
    for i in range(9, len(live)):  # every single-character typo is caught
        typo = live[:i] + ("x" if live[i] != "x" else "y") + live[i + 1:]
        assert keys.parse_secret(typo) is None
    assert keys.parse_secret(live.replace("nwb_live_", "nwb_test_")) is None
    assert keys.parse_secret(live[:-1]) is None


def test_digest_is_keyed(settings: Settings) -> None:
    secret = keys.generate_secret(Environment.PRODUCTION)
    other = Settings(database_url=settings.database_url,
                     secret_key="another-secret-key-0123456789abcdef")
    assert keys.digest(settings, secret) != keys.digest(other, secret)
    assert secret not in keys.digest(settings, secret)


def test_key_service(factory: sessionmaker[Session], settings: Settings) -> None:
    with transaction(factory) as session:
        company, admin = users.create_company(session, "Keys BV", "a@keys.example", "pw-123456")
        clerk = users.add_user(session, company, "c@keys.example", "pw-123456")
        with pytest.raises(NoApiPermission):
            keys.create_key(session, settings, company, environment=Environment.SANDBOX,
                            name="x", actor=clerk)
        permissions.set_api_permission(session, company, admin, clerk, True)
        key, secret = keys.create_key(session, settings, company,
                                      environment=Environment.SANDBOX, name="erp", actor=clerk,
                                      expires_on=dt.date.today() + dt.timedelta(days=3))
        session.flush()
        grant = grants.grant_for_secret(session, settings, secret)
        assert grant is not None and grant.key_id == key.id and grant.status() == "active"
        assert grant.networks == () and not grant.api_enabled
        # One character changed (a fixed "x" left a secret that ends in x unchanged: 1 in 62).
        wrong = secret[:-1] + ("y" if secret.endswith("x") else "x")
        assert grants.grant_for_secret(session, settings, wrong) is None
        stored = session.scalars(select(ApiKey)).one()
        assert secret not in (stored.digest, stored.display_prefix)
        with pytest.raises(InvalidInput):
            keys.create_key(session, settings, company, environment=Environment.SANDBOX,
                            name="old", expires_on=dt.date(2000, 1, 1))
        keys.revoke_key(session, company, key.id)
        assert keys.key_status(key) == "revoked"
        revoked = grants.grant_for_key_id(session, key.id)
        assert revoked is not None and revoked.status() == "revoked"
        with pytest.raises(Conflict):
            keys.revoke_key(session, company, key.id)


def test_last_used_written_at_most_once_a_minute() -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert keys.last_use_due(None, t0)  # never used: written
    assert not keys.last_use_due(t0, t0 + dt.timedelta(seconds=30))  # kept at t0
    assert keys.last_use_due(t0, t0 + dt.timedelta(seconds=61))


def test_one_stamp_per_key_and_minute_in_a_process() -> None:
    claims, t0 = keys.LastUseClaims(max_keys=2), dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert claims.claim(1, t0)  # the first request writes the stamp...
    assert not claims.claim(1, t0 + dt.timedelta(seconds=1))  # ...the ones in flight do not
    assert claims.claim(2, t0)  # another key has its own
    assert claims.claim(1, t0 + dt.timedelta(seconds=61))  # a minute on: the next stamp
    assert claims.claim(3, t0 + dt.timedelta(seconds=200))  # full: stale entries pruned
    assert not claims.claim(3, t0 + dt.timedelta(seconds=201))


@pytest.mark.parametrize(("text", "stored"), [
    ("192.0.2.7", "192.0.2.7/32"), ("192.0.2.0/24", "192.0.2.0/24"),
    ("2001:DB8::1", "2001:db8::1/128"), ("::ffff:192.0.2.7", "192.0.2.7/32"),
])
def test_whitelist_normalises(text: str, stored: str) -> None:
    assert str(whitelist.parse_network(text)) == stored


@pytest.mark.parametrize("text", ["192.0.2.7/24", "not-an-ip", "0.0.0.0/0", "::/0", "300.1.1.1"])
def test_whitelist_refuses(text: str) -> None:
    with pytest.raises(InvalidInput):
        whitelist.parse_network(text)


def test_whitelist_matching() -> None:
    mapped = ipaddress.ip_address("::ffff:127.0.0.1")
    assert whitelist.is_allowed(mapped, ["127.0.0.1/32"])
    assert whitelist.is_allowed(ipaddress.ip_address("::1"), ["::1/128"])
    assert not whitelist.is_allowed(ipaddress.ip_address("::1"), ["127.0.0.1/32"])
    assert not whitelist.is_allowed(ipaddress.ip_address("127.0.0.1"), [])
    assert not whitelist.is_allowed(None, ["0.0.0.0/0"])
    assert str(whitelist.parse_network("0.0.0.0/0", allow_any=True)) == "0.0.0.0/0"


def test_whitelist_duplicates_refused(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        company, _ = users.create_company(session, "Dup BV", "a@dup.example", "pw-123456")
        whitelist.add_entry(session, company, "192.0.2.7")
        with pytest.raises(Conflict):
            whitelist.add_entry(session, company, "192.0.2.7/32")


def test_client_address_rules() -> None:
    xff = [("x-forwarded-for", "1.1.1.1, 2.2.2.2, 10.0.0.2")]
    assert str(client_address("9.9.9.9", xff, "")) == "9.9.9.9"
    assert str(client_address("10.0.0.1", xff, "10.0.0.0/8")) == "2.2.2.2"
    assert str(client_address("10.0.0.1", [("x-forwarded-for", "10.0.0.3")], "10.0.0.0/8")) \
        == "10.0.0.3"
    fwd = [("forwarded", 'for="[2001:db8::7]:4711";proto=https, for=10.0.0.9')]
    assert str(client_address("10.0.0.1", fwd, "10.0.0.0/8")) == "2001:db8::7"
    assert client_address("10.0.0.1", [("x-forwarded-for", "unknown")], "10.0.0.0/8") is None
    assert str(client_address("::ffff:10.0.0.1", xff, "10.0.0.0/8")) == "2.2.2.2"


def test_link_token_binding(settings: Settings) -> None:
    params = [("b", "2"), ("a", "1")]
    digest = keys.digest(settings, keys.generate_secret(Environment.PRODUCTION))
    token = links.sign_link(settings, digest, "/api/v4/invoices", params)
    assert links.verify_link(settings, token, "/api/v4/invoices",
                             [("a", "1"), ("token", token), ("b", "2")]) == digest
    for path, query in (("/api/v4/invoices", [("a", "1")]),
                        ("/api/v4/customerinvoices", params),
                        ("/api/v4/invoices", [*params, ("c", "3")])):
        with pytest.raises(BadToken):
            links.verify_link(settings, token, path, query)
    # A different first character, whatever the token starts with ("A" + token[1:] left
    # one token in 64 unchanged, and the test failed then).
    changed = ("B" if token[0] == "A" else "A") + token[1:]
    with pytest.raises(BadToken):
        links.verify_link(settings, changed, "/api/v4/invoices", params)
    with pytest.raises(ValueError, match="15 minutes"):
        links.sign_link(settings, digest, "/x", [], lifetime=dt.timedelta(minutes=16))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)
    with pytest.raises(BadToken, match="expired"):
        links.verify_link(settings, token, "/api/v4/invoices", params, now=later)


def test_sliding_window_and_login_throttle() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(clock=lambda: now[0])
    assert [limiter.hit("k", 2, 60).allowed for _ in range(3)] == [True, True, False]
    assert limiter.hit("k", 2, 60).retry_after == 60
    now[0] = 60.5
    assert limiter.hit("k", 2, 60).allowed
    throttle = LoginThrottle(SlidingWindowLimiter(clock=lambda: now[0]), per_email=2, per_ip=3)
    throttle.attempt("A@x.example", "192.0.2.1")  # counted before any password is checked
    throttle.attempt("a@x.example", "192.0.2.1")
    with pytest.raises(RateLimited):
        throttle.attempt("a@x.example", "192.0.2.9")
    throttle.attempt("b@x.example", "192.0.2.1")
    with pytest.raises(RateLimited):
        throttle.attempt("c@x.example", "192.0.2.1")
    # The address refused c: c's e-mail count was given back, so c still has two.
    throttle.attempt("c@x.example", "192.0.2.2")
    throttle.attempt("c@x.example", "192.0.2.2")
    with pytest.raises(RateLimited):
        throttle.attempt("c@x.example", "192.0.2.2")
    # A right password gives the address's hit back and resets the e-mail's count.
    throttle.succeeded(throttle.attempt("d@x.example", "192.0.2.3"))
    for email in ("d@x.example", "d@x.example", "e@x.example"):
        throttle.attempt(email, "192.0.2.3")
    with pytest.raises(RateLimited):
        throttle.attempt("f@x.example", "192.0.2.3")


def test_release_gives_one_hit_back() -> None:
    limiter = SlidingWindowLimiter(clock=lambda: 1.0)  # every hit at the same instant
    first, second = limiter.hit("k", 2, 60), limiter.hit("k", 2, 60)
    assert not limiter.hit("k", 2, 60).allowed
    limiter.release("k", first.token)
    limiter.release("k", "local:not-a-float")  # ignored
    limiter.release("k", "9f3a0c")  # a Redis member: ignored
    assert limiter.hit("k", 2, 60).allowed
    assert not limiter.hit("k", 2, 60).allowed
    assert second.token and limiter.peek("k", 2, 60).allowed is False


def test_only_the_account_administrator_enables_the_api(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        company, admin = users.create_company(session, "Perm BV", "a@perm.example", "pw-123456")
        clerk = users.add_user(session, company, "c@perm.example", "pw-123456")
        permissions.set_api_permission(session, company, admin, clerk, True)
        for actor in (clerk, None):
            with pytest.raises(NotAccountAdministrator):
                permissions.set_api_enabled(session, company, actor, True)
        with pytest.raises(NotAccountAdministrator):
            permissions.set_api_permission(session, company, clerk, clerk, False)
        with pytest.raises(Conflict, match="last Account Administrator"):
            permissions.deactivate_user(session, company, admin)
        permissions.set_api_enabled(session, company, admin, True)
        assert company.api_enabled


def test_redaction() -> None:
    secret = keys.generate_secret(Environment.PRODUCTION)
    line = f'GET /api/v4/invoices?format=xml&token=1.2.abc_-X HTTP/1.1 key={secret}'
    cleaned = redact(line)
    assert secret not in cleaned and "abc_-X" not in cleaned and "format=xml" in cleaned
