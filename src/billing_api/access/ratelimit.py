"""Rate limits: per API key, failed API authentications per client address, and a login
throttle for the portal (per e-mail and per IP).

Two backends behind one ``RateLimiter`` protocol: ``SlidingWindowLimiter`` counts in this
process (the default; with N workers a key gets up to N times its limit) and
``ratelimit_redis.RedisLimiter`` counts in Redis, shared by every worker, when
``BILLING_API_REDIS_URL`` is set. Both are exact sliding windows. When Redis cannot be reached
the two users differ on purpose (docs/access.md): the API limit counts in this process until
Redis answers again (``FallbackLimiter``); the login throttle refuses logins (fails closed).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from billing_api.access.errors import RateLimited, TooManyFailures
from billing_api.access.whitelist import IPAddress

log = logging.getLogger("billing_api.access")

# Retry-After of a login refused because the throttle's store is unreachable.
UNAVAILABLE_RETRY_AFTER = 30
# Bucket of the failed API authentications of one client (``client_bucket``).
_FAILED_AUTH = "auth-fail:"


class LimiterUnavailable(Exception):
    """The shared counter store could not be asked (Redis down, refusing or timing out)."""


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int  # whole seconds until a request would be allowed again (0 if allowed)
    # Names the hit a counted ``hit`` added, for ``release`` ("" when nothing was counted).
    token: str = ""


class RateLimiter(Protocol):
    """Counts per bucket name. Bucket names may become Redis keys: never put a secret or an
    e-mail address in one (key ids and IP addresses are fine)."""

    def hit(self, bucket: str, limit: int, window: float) -> Decision:
        """Count one request in ``bucket`` unless ``limit`` were counted in the last ``window``
        seconds; raises ``LimiterUnavailable`` when a shared store cannot be reached."""
        ...

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        """Like ``hit`` without counting."""
        ...

    async def hit_async(self, bucket: str, limit: int, window: float) -> Decision:
        """``hit`` for the event loop (the API's requests): waits for a shared store without
        blocking the loop."""
        ...

    async def peek_async(self, bucket: str, limit: int, window: float) -> Decision:
        """``peek`` for the event loop."""
        ...

    def release(self, bucket: str, token: str) -> None:
        """Un-count the one hit ``token`` names (a ``Decision.token`` of this limiter's);
        an unknown or foreign token is ignored."""
        ...

    def reset(self, bucket: str) -> None:
        """Forget ``bucket``'s hits."""
        ...


class _ErrorReport:
    """Logs a store failure at once, then at most once per ``every`` seconds: with Redis down,
    every request would otherwise add a line."""

    def __init__(self, what: str, clock: Callable[[], float], every: float = 60.0) -> None:
        self._what, self._clock, self._every = what, clock, every
        self._next = -math.inf
        self._lock = threading.Lock()

    def __call__(self, exc: Exception) -> None:
        now = self._clock()
        with self._lock:
            if now < self._next:
                return
            self._next = now + self._every
        log.error("rate-limit store unreachable, %s: %s", self._what, exc)


_LOCAL_HIT = "local:"  # prefix of this limiter's hit tokens


class SlidingWindowLimiter:
    """A sliding log per bucket: exact, memory ≤ ``limit`` timestamps per active bucket.

    Thread-safe: the portal's sync routes run in FastAPI's thread pool."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000):
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._max_buckets = max_buckets

    def hit(self, bucket: str, limit: int, window: float) -> Decision:
        """Count one request in ``bucket`` unless ``limit`` were made in the last ``window`` s."""
        now = self._clock()
        with self._lock:
            hits = self._hits.setdefault(bucket, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                return Decision(False, max(1, math.ceil(hits[0] + window - now)))
            hits.append(now)
            if len(self._hits) > self._max_buckets:
                self._prune(now, window)
            return Decision(True, 0, _LOCAL_HIT + now.hex())

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        """Like ``hit`` without counting."""
        now = self._clock()
        with self._lock:
            hits = [t for t in self._hits.get(bucket, ()) if t > now - window]
            if len(hits) >= limit:
                return Decision(False, max(1, math.ceil(hits[0] + window - now)))
            return Decision(True, 0)

    # In memory, no I/O: the lock is held for microseconds, so the loop may take it.
    async def hit_async(self, bucket: str, limit: int, window: float) -> Decision:
        return self.hit(bucket, limit, window)

    async def peek_async(self, bucket: str, limit: int, window: float) -> Decision:
        return self.peek(bucket, limit, window)

    def release(self, bucket: str, token: str) -> None:
        if not token.startswith(_LOCAL_HIT):
            return
        try:
            when = float.fromhex(token.removeprefix(_LOCAL_HIT))
        except ValueError:
            return
        with self._lock:
            hits = self._hits.get(bucket)
            # Two hits made at the same clock reading are interchangeable: drop either.
            if hits is not None and when in hits:
                hits.remove(when)

    def reset(self, bucket: str) -> None:
        with self._lock:
            self._hits.pop(bucket, None)

    def _prune(self, now: float, window: float) -> None:
        # Idle buckets would otherwise grow without bound under a flood of unknown keys.
        for name in [b for b, h in self._hits.items() if not h or h[-1] <= now - window]:
            del self._hits[name]


class FallbackLimiter:
    """``primary`` while it answers, ``fallback`` while it raises ``LimiterUnavailable``: for a
    limit that should rather count per process than stop counting (or stop the service) when
    the shared store is down. Logs an error at the first failure, then once a minute."""

    def __init__(self, primary: RateLimiter, fallback: RateLimiter, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.primary, self.fallback = primary, fallback
        self._report = _ErrorReport("counting in this process meanwhile", clock)

    def hit(self, bucket: str, limit: int, window: float) -> Decision:
        try:
            return self.primary.hit(bucket, limit, window)
        except LimiterUnavailable as exc:
            self._report(exc)
            return self.fallback.hit(bucket, limit, window)

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        try:
            return self.primary.peek(bucket, limit, window)
        except LimiterUnavailable as exc:
            self._report(exc)
            return self.fallback.peek(bucket, limit, window)

    async def hit_async(self, bucket: str, limit: int, window: float) -> Decision:
        try:
            return await self.primary.hit_async(bucket, limit, window)
        except LimiterUnavailable as exc:
            self._report(exc)
            return await self.fallback.hit_async(bucket, limit, window)

    async def peek_async(self, bucket: str, limit: int, window: float) -> Decision:
        try:
            return await self.primary.peek_async(bucket, limit, window)
        except LimiterUnavailable as exc:
            self._report(exc)
            return await self.fallback.peek_async(bucket, limit, window)

    def release(self, bucket: str, token: str) -> None:
        # The hit may have been counted by either; each ignores the other's tokens.
        self.fallback.release(bucket, token)
        try:
            self.primary.release(bucket, token)
        except LimiterUnavailable as exc:
            self._report(exc)

    async def aclose(self) -> None:
        """Close the shared store's asyncio client of this event loop, if it has one."""
        close = getattr(self.primary, "aclose", None)
        if close is not None:
            await close()

    def reset(self, bucket: str) -> None:
        self.fallback.reset(bucket)
        try:
            self.primary.reset(bucket)
        except LimiterUnavailable as exc:
            self._report(exc)


def api_limiter(redis_url: str | None) -> RateLimiter:
    """The per-key API limiter: in this process without ``redis_url``; with it, Redis, counting
    in this process while Redis is unreachable (auth and whitelist still apply meanwhile)."""
    if not redis_url:
        return SlidingWindowLimiter()
    from billing_api.access.ratelimit_redis import RedisLimiter  # imports this module

    return FallbackLimiter(RedisLimiter.from_url(redis_url), SlidingWindowLimiter())


def login_throttle(redis_url: str | None) -> LoginThrottle:
    """The portal's ``LoginThrottle``: in this process without ``redis_url``; with it, on Redis,
    refusing logins while Redis is unreachable."""
    if not redis_url:
        return LoginThrottle()
    from billing_api.access.ratelimit_redis import RedisLimiter

    return LoginThrottle(RedisLimiter.from_url(redis_url))


async def check_api_rate(limiter: RateLimiter, key_id: int, per_minute: int) -> None:
    """Count one API call for ``key_id``; raises ``RateLimited`` past ``per_minute``."""
    decision = await limiter.hit_async(f"key:{key_id}", per_minute, 60.0)
    if not decision.allowed:
        raise RateLimited(
            f"more than {per_minute} requests a minute with this key: retry in "
            f"{decision.retry_after} s", retry_after=decision.retry_after)


def client_bucket(address: IPAddress | None) -> str:
    """Who the failed-authentication limit counts: an IPv4 address, or an IPv6 address's /64
    (the smallest network an IPv6 client is given: counting single addresses would let it
    take a fresh one per request); "unknown" when the address cannot be known."""
    if address is None:
        return "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


async def check_failed_auth(limiter: RateLimiter, address: IPAddress | None,
                            per_minute: int) -> None:
    """Raises ``TooManyFailures`` when ``address`` failed authentication ``per_minute`` times
    in the last minute. Called before the key lookup, so a refused flood costs no query."""
    decision = await limiter.peek_async(_FAILED_AUTH + client_bucket(address), per_minute, 60.0)
    if not decision.allowed:
        raise TooManyFailures(
            f"too many failed authentications from your address ({per_minute} a minute): "
            f"retry in {decision.retry_after} s", retry_after=decision.retry_after)


async def count_failed_auth(limiter: RateLimiter, address: IPAddress | None,
                            per_minute: int) -> None:
    """Count one failed authentication from ``address`` (after the refusal is known)."""
    await limiter.hit_async(_FAILED_AUTH + client_bucket(address), per_minute, 60.0)


@dataclass(frozen=True)
class LoginAttempt:
    """One login counted by ``LoginThrottle.attempt``: what ``succeeded`` gives back."""

    email_bucket: str
    ip_bucket: str
    ip_token: str


class LoginThrottle:
    """Portal logins: at most ``per_email`` per e-mail and ``per_ip`` per address in ``window``
    seconds, not counting successful ones. The portal calls ``attempt`` BEFORE verifying a
    password, and ``succeeded`` after a right one.

    ``attempt`` counts in both buckets first (each count is atomic, on Redis as in process),
    so N parallel guesses get at most the limit of password checks: the rest are refused
    before any is verified. ``succeeded`` resets the e-mail's count and gives the address's
    hit back, so only failed (and in-flight) logins use up an address's allowance.

    Fails closed: while the limiter's store is unreachable ``attempt`` refuses every login (a
    guessing script must not get unthrottled attempts out of a Redis outage); ``succeeded``
    only logs then."""

    def __init__(self, limiter: RateLimiter | None = None, *, per_email: int = 5,
                 per_ip: int = 20, window: float = 900.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = limiter or SlidingWindowLimiter()
        self.per_email, self.per_ip, self.window = per_email, per_ip, window
        self._report = _ErrorReport("logins are refused meanwhile", clock)

    def attempt(self, email: str, ip: str) -> LoginAttempt:
        """Count one login for ``email`` and ``ip``; raises ``RateLimited`` (counting nothing)
        when either bucket is full or the store is unreachable."""
        email_bucket, ip_bucket = _email_bucket(email), f"login-ip:{ip}"
        try:
            by_email = self._limiter.hit(email_bucket, self.per_email, self.window)
            if not by_email.allowed:
                raise _too_many(by_email)
            by_ip = self._limiter.hit(ip_bucket, self.per_ip, self.window)
            if not by_ip.allowed:
                self._limiter.release(email_bucket, by_email.token)
                raise _too_many(by_ip)
        except LimiterUnavailable as exc:
            self._report(exc)
            raise RateLimited(
                f"logging in is not possible right now: try again in "
                f"{UNAVAILABLE_RETRY_AFTER} s", retry_after=UNAVAILABLE_RETRY_AFTER) from None
        return LoginAttempt(email_bucket, ip_bucket, by_ip.token)

    def succeeded(self, attempt: LoginAttempt) -> None:
        try:
            self._limiter.reset(attempt.email_bucket)
            self._limiter.release(attempt.ip_bucket, attempt.ip_token)
        except LimiterUnavailable as exc:
            self._report(exc)


def _too_many(decision: Decision) -> RateLimited:
    return RateLimited(f"too many failed logins: try again in {decision.retry_after} s",
                       retry_after=decision.retry_after)


def _email_bucket(email: str) -> str:
    # Bucket names can be Redis keys, listed by anyone with access to Redis: an e-mail address
    # is personal data and need not be readable there.
    return "login-email:" + hashlib.sha256(email.lower().encode()).hexdigest()
