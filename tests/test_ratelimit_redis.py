"""The Redis rate limiter: exact sliding window, one count for every worker, Redis down.

Needs redis-server on 127.0.0.1:6379 (``scripts/install-system-deps`` starts one); without
it these tests skip, or fail under ``BILLING_API_REQUIRE_ALL_BACKENDS=1``. The Redis-down tests
need no server. Each test run claims one of the databases 1–15 (a lock key in it), so
parallel runs never share counts, and deletes its ``billing-api:rl:*`` keys after each test.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import audit, users
from billing_api.access.errors import RateLimited
from billing_api.access.models import AuditEvent
from billing_api.access.ratelimit import (
    UNAVAILABLE_RETRY_AFTER,
    Decision,
    FallbackLimiter,
    LimiterUnavailable,
    LoginAttempt,
    LoginThrottle,
    SlidingWindowLimiter,
)
from billing_api.access.ratelimit_redis import KEY_PREFIX, RedisLimiter
from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.settings import Settings
from tests.access_helpers import denied_reasons, make_partner, test_app
from tests.browser import FormClient
from tests.conftest import skip_or_fail
from tests.http_server import serve
from tests.test_refusal_flood import parallel_logins

SERVER = "redis://127.0.0.1:6379"
RUN_LOCK = "billing-api:test-run"
WHOAMI = "/api/v4/whoami"


def _delete_our_keys(client: redis.Redis) -> None:
    for key in client.scan_iter(match=KEY_PREFIX + "*", count=500):
        client.delete(key)


@pytest.fixture(scope="session")
def redis_db() -> Iterator[str]:
    """The URL of a Redis database no other test run uses while this one runs."""
    probe = redis.Redis.from_url(f"{SERVER}/0", socket_connect_timeout=1)
    try:
        probe.ping()
    except redis.RedisError:
        skip_or_fail("redis-server does not answer on 127.0.0.1:6379 "
                     "(scripts/install-system-deps starts one)")
    finally:
        probe.close()
    run = secrets.token_hex(8)
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{SERVER}/{db}")
        if client.set(RUN_LOCK, run, nx=True, ex=3600):
            break
        client.close()
    else:
        pytest.fail("Redis databases 1–15 are all claimed by other test runs")
    _delete_our_keys(client)  # left by a run that crashed
    try:
        yield f"{SERVER}/{db}"
    finally:
        _delete_our_keys(client)
        if client.get(RUN_LOCK) == run.encode():
            client.delete(RUN_LOCK)
        client.close()


@pytest.fixture
def redis_url(redis_db: str) -> Iterator[str]:
    yield redis_db
    with redis.Redis.from_url(redis_db) as client:
        _delete_our_keys(client)


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
def limiter(redis_url: str) -> Iterator[RedisLimiter]:
    limiter = RedisLimiter.from_url(redis_url)
    yield limiter
    limiter.close()


def dead_redis_url() -> str:
    """A loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def get(base: str, secret: str) -> httpx.Response:
    return httpx.get(base + WHOAMI, headers={"X-Api-Key": secret, "Accept": "application/json"},
                     timeout=10)


def close_redis(app: FastAPI) -> None:
    limiter = app.state.api_rate_limiter
    if isinstance(limiter, FallbackLimiter) and isinstance(limiter.primary, RedisLimiter):
        limiter.primary.close()
    throttle_limiter = getattr(app.state.portal_login_throttle, "_limiter", None)
    if isinstance(throttle_limiter, RedisLimiter):
        throttle_limiter.close()


def test_exactly_limit_hits_per_window_and_retry_after(limiter: RedisLimiter,
                                                       raw: redis.Redis) -> None:
    assert [limiter.hit("key:1", 3, 1.0).allowed for _ in range(5)] == [
        True, True, True, False, False]
    assert limiter.hit("key:1", 3, 1.0) == Decision(False, 1)
    assert raw.zcard(KEY_PREFIX + "key:1") == 3  # refused hits are not counted
    assert 0 < raw.pttl(KEY_PREFIX + "key:1") <= 1000
    assert limiter.peek("key:1", 3, 1.0).allowed is False
    limiter.hit("key:2", 1, 60.0)
    assert 59 <= limiter.hit("key:2", 1, 60.0).retry_after <= 60
    time.sleep(1.05)
    assert limiter.peek("key:1", 3, 1.0).allowed
    assert [limiter.hit("key:1", 3, 1.0).allowed for _ in range(4)] == [True, True, True, False]
    limiter.reset("key:1")
    assert not raw.exists(KEY_PREFIX + "key:1")
    assert limiter.hit("key:1", 3, 1.0).allowed


def test_the_window_slides(limiter: RedisLimiter) -> None:
    """A hit leaves the count one window after it was made, not at a fixed boundary."""
    assert limiter.hit("slide", 3, 1.0).allowed and limiter.hit("slide", 3, 1.0).allowed
    time.sleep(0.6)
    assert limiter.hit("slide", 3, 1.0).allowed
    assert not limiter.hit("slide", 3, 1.0).allowed
    time.sleep(0.5)  # the first two have left the window, the third has not
    assert [limiter.hit("slide", 3, 1.0).allowed for _ in range(3)] == [True, True, False]


def test_two_workers_share_one_count(redis_url: str) -> None:
    workers = [RedisLimiter.from_url(redis_url), RedisLimiter.from_url(redis_url)]
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer(limiter: RedisLimiter) -> None:
        for _ in range(10):
            decision = limiter.hit("key:7", 25, 60.0)
            with lock:
                allowed.append(decision.allowed)

    threads = [threading.Thread(target=hammer, args=(workers[i % 2],)) for i in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert allowed.count(True) == 25 and len(allowed) == 80
        assert not workers[0].peek("key:7", 25, 60.0).allowed
        assert not workers[1].peek("key:7", 25, 60.0).allowed
    finally:
        for worker in workers:
            worker.close()


def test_login_throttle_on_redis_keeps_no_address_in_clear(redis_url: str,
                                                           raw: redis.Redis) -> None:
    one, two = RedisLimiter.from_url(redis_url), RedisLimiter.from_url(redis_url)
    try:
        first = LoginThrottle(one, per_email=2, per_ip=3)
        second = LoginThrottle(two, per_email=2, per_ip=3)  # another worker
        first.attempt("Ada@Acme.example", "192.0.2.1")
        second.attempt("ada@acme.example", "192.0.2.1")
        with pytest.raises(RateLimited, match="too many failed logins"):
            first.attempt("ada@acme.example", "192.0.2.9")
        with pytest.raises(RateLimited):
            second.attempt("ADA@acme.example", "192.0.2.9")
        stored = sorted(raw.scan_iter(match=KEY_PREFIX + "*"))
        digest = hashlib.sha256(b"ada@acme.example").hexdigest()
        assert stored == [f"{KEY_PREFIX}login-email:{digest}", f"{KEY_PREFIX}login-ip:192.0.2.1"]
        assert raw.zcard(f"{KEY_PREFIX}login-ip:192.0.2.1") == 2
        # A right password: the e-mail's count goes, and the address gets its hit back.
        second.succeeded(second.attempt("bob@acme.example", "192.0.2.1"))
        assert raw.zcard(f"{KEY_PREFIX}login-ip:192.0.2.1") == 2
        second.succeeded(first.attempt("carol@acme.example", "192.0.2.7"))
        assert not raw.exists(f"{KEY_PREFIX}login-ip:192.0.2.7")
    finally:
        one.close()
        two.close()


def test_create_app_picks_the_backend(settings: Settings, redis_url: str) -> None:
    plain = create_app(settings)
    assert isinstance(plain.state.api_rate_limiter, SlidingWindowLimiter)
    shared = create_app(settings.model_copy(update={"redis_url": redis_url}))
    try:
        limiter = shared.state.api_rate_limiter
        assert isinstance(limiter, FallbackLimiter)
        assert isinstance(limiter.primary, RedisLimiter)
        assert isinstance(limiter.fallback, SlidingWindowLimiter)
    finally:
        close_redis(shared)
        plain.state.engine.dispose()
        shared.state.engine.dispose()


def test_rate_limit_over_http_is_shared_by_two_workers(
        settings: Settings, factory: sessionmaker[Session], redis_url: str) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 3, "redis_url": redis_url})
    p = make_partner(factory, limited)
    one, two = test_app(limited), test_app(limited)
    try:
        with serve(one) as first, serve(two) as second:
            statuses = [get(base, p.secret).status_code for base in (first, second, first)]
            refused = get(second, p.secret)
            again = get(first, p.secret)
    finally:
        close_redis(one)
        close_redis(two)
    assert statuses == [200, 200, 200]
    assert refused.status_code == 429, refused.text
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert again.status_code == 429
    # One audit row per key and minute, across both workers.
    assert denied_reasons(factory) == ["rate_limited"]


def test_redis_down_the_api_counts_in_process(settings: Settings,
                                              factory: sessionmaker[Session],
                                              caplog: pytest.LogCaptureFixture) -> None:
    limited = settings.model_copy(update={"rate_limit_per_minute": 2,
                                          "redis_url": dead_redis_url()})
    p = make_partner(factory, limited)
    app = test_app(limited)
    with caplog.at_level(logging.ERROR, logger="billing_api.access"):
        try:
            with serve(app) as base:
                statuses = [get(base, p.secret).status_code for _ in range(4)]
        finally:
            close_redis(app)
    assert statuses == [200, 200, 429, 429]
    assert denied_reasons(factory) == ["rate_limited"]
    errors = [r.getMessage() for r in caplog.records if r.name == "billing_api.access"]
    assert len(errors) == 1  # not one line per request
    assert "rate-limit store unreachable, counting in this process" in errors[0]


def test_redis_down_logins_are_refused(settings: Settings,
                                       factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        users.create_company(session, "Acme Cloud BV", "admin@acme.example", "correct horse 1")
    app = create_app(settings.model_copy(update={"redis_url": dead_redis_url()}))
    try:
        with serve(app) as base, FormClient(base) as client:
            refused = client.log_in("admin@acme.example", "correct horse 1")
    finally:
        close_redis(app)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == str(UNAVAILABLE_RETRY_AFTER)
    assert "logging in is not possible right now" in refused.text
    audit.flush_pending()
    with factory() as session:
        reasons = session.scalars(select(AuditEvent.reason).where(
            AuditEvent.event_type == "login_failed")).all()
    assert reasons == ["throttled"]


def test_login_throttle_succeeded_survives_redis_down() -> None:
    limiter = RedisLimiter.from_url(dead_redis_url())
    throttle = LoginThrottle(limiter)
    try:
        throttle.succeeded(LoginAttempt("login-email:x", "login-ip:192.0.2.1", "member"))
        with pytest.raises(RateLimited):
            throttle.attempt("a@x.example", "192.0.2.1")
    finally:
        limiter.close()


def test_after_an_error_redis_is_left_alone_for_a_pause() -> None:
    now = [0.0]
    limiter = RedisLimiter.from_url(dead_redis_url(), pause=5.0, clock=lambda: now[0])
    try:
        with pytest.raises(LimiterUnavailable, match="ConnectionError"):
            limiter.hit("k", 1, 60.0)
        now[0] = 4.9
        with pytest.raises(LimiterUnavailable, match="less than"):
            limiter.hit("k", 1, 60.0)
        now[0] = 5.1
        with pytest.raises(LimiterUnavailable, match="ConnectionError"):
            limiter.peek("k", 1, 60.0)
    finally:
        limiter.close()


class _Flaky:
    def __init__(self) -> None:
        self.down = True
        self.inner = SlidingWindowLimiter()

    def hit(self, bucket: str, limit: int, window: float) -> Decision:
        if self.down:
            raise LimiterUnavailable("down")
        return self.inner.hit(bucket, limit, window)

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        if self.down:
            raise LimiterUnavailable("down")
        return self.inner.peek(bucket, limit, window)

    def release(self, bucket: str, token: str) -> None:
        if self.down:
            raise LimiterUnavailable("down")
        self.inner.release(bucket, token)

    def reset(self, bucket: str) -> None:
        if self.down:
            raise LimiterUnavailable("down")
        self.inner.reset(bucket)


def test_fallback_returns_to_the_shared_store(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    primary, fallback = _Flaky(), SlidingWindowLimiter()
    limiter = FallbackLimiter(primary, fallback, clock=lambda: now[0])
    with caplog.at_level(logging.ERROR, logger="billing_api.access"):
        assert [limiter.hit("k", 1, 60.0).allowed for _ in range(2)] == [True, False]
        now[0] = 61.0
        limiter.reset("k")
        primary.down = False
        assert limiter.hit("k", 1, 60.0).allowed  # the shared store's own count
        assert not primary.peek("k", 1, 60.0).allowed
    assert len([r for r in caplog.records if r.name == "billing_api.access"]) == 2


def test_failed_auth_limit_over_http_is_shared_by_two_workers(
        settings: Settings, factory: sessionmaker[Session], redis_url: str,
        raw: redis.Redis) -> None:
    """Garbage keys from one address, spread over two workers: one count on Redis, 429
    ``too_many_failures`` on both past it, the audit rows of both workers summed."""
    limited = settings.model_copy(update={"failed_auth_per_minute": 6, "redis_url": redis_url})
    p = make_partner(factory, limited)
    one, two = test_app(limited), test_app(limited)
    attacker = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                            timeout=10)
    try:
        with serve(one) as first, serve(two) as second, attacker:
            statuses, codes = [], []
            for i in range(20):
                answer = attacker.get((first, second)[i % 2] + WHOAMI, headers={
                    "X-Api-Key": f"garbage-{i}", "Accept": "application/json"})
                statuses.append(answer.status_code)
                codes.append(answer.json()["code"])
            retry_after = int(answer.headers["Retry-After"])
            counted = raw.zcard(f"{KEY_PREFIX}auth-fail:127.0.0.2")
            valid = [get(base, p.secret).status_code for base in (first, second)]
    finally:
        close_redis(one)
        close_redis(two)
    assert statuses == [401] * 6 + [429] * 14
    assert set(codes[:6]) == {"malformed_key"} and set(codes[6:]) == {"too_many_failures"}
    assert 1 <= retry_after <= 60 and counted == 6
    assert valid == [200, 200]  # another address
    audit.flush_pending()
    with factory() as session:
        rows = session.execute(select(AuditEvent.reason, AuditEvent.count).where(
            AuditEvent.event_type == "api_denied")).all()
    sums: dict[str, int] = {}
    for reason, count in rows:
        sums[reason] = sums.get(reason, 0) + count
    assert sums == {"malformed_key": 6, "too_many_failures": 14}
    assert len(rows) <= 4  # one per reason and minute, whichever worker wrote first


def test_parallel_login_guesses_on_two_workers_get_at_most_the_limit(
        settings: Settings, factory: sessionmaker[Session], redis_url: str) -> None:
    with transaction(factory) as session:
        users.create_company(session, "Acme Cloud BV", "admin@acme.example", "correct horse 1")
    shared = settings.model_copy(update={"redis_url": redis_url})
    one, two = create_app(shared), create_app(shared)
    try:
        with serve(one) as first, serve(two) as second:
            statuses = parallel_logins([first, second],
                                       [("admin@acme.example", f"guess {i}") for i in range(20)])
    finally:
        close_redis(one)
        close_redis(two)
    assert sorted(statuses) == [400] * 5 + [429] * 15  # 5 a quarter-hour per e-mail
    audit.flush_pending()
    with factory() as session:
        counted = session.execute(select(AuditEvent.reason, func.sum(AuditEvent.count)).where(
            AuditEvent.event_type == "login_failed").group_by(AuditEvent.reason)).all()
    assert dict((r, int(n)) for r, n in counted) == {"bad_credentials": 5, "throttled": 15}
