"""``RedisLimiter``: the ``RateLimiter`` protocol on Redis, one count for every worker and host.

The same exact sliding window as ``SlidingWindowLimiter`` (a log, not a counter
approximation): one sorted set per bucket, key ``billing-api:rl:<bucket>``, holds the times of
the hits counted in the last window. One Lua script drops the expired ones (ZREMRANGEBYSCORE),
counts (ZCARD) and adds the new hit (ZADD, PEXPIRE) only when under the limit; Redis runs a
script atomically, so two workers can never both take the last slot. A counted hit's member
is its ``Decision.token``: ``release`` removes just that one (ZREM). Times come from the Redis
server's clock (TIME), so the workers' clocks need not agree. Memory: at most ``limit`` members
per active bucket, and a bucket's key expires one window after its last counted hit.

The API's requests count on the event loop through an asyncio client (``hit_async``,
``peek_async``): the same script, one client per event loop (an asyncio connection belongs to
the loop that opened it), and the same pause after an error.

Any Redis error is raised as ``LimiterUnavailable``; the caller decides what that means
(``ratelimit.FallbackLimiter`` for the API, fail closed for the login throttle). After an
error, calls fail at once for ``pause`` seconds instead of each waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from billing_api.access.ratelimit import Decision, LimiterUnavailable

KEY_PREFIX = "billing-api:rl:"

# KEYS[1] the bucket's sorted set; ARGV: limit, window (µs), "1" to count, member to add.
# Returns {allowed (1/0), µs until the oldest counted hit leaves the window}.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    if oldest[2] == nil then
        return {0, window}
    end
    return {0, tonumber(oldest[2]) + window - now}
end
if ARGV[3] == '1' then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
end
return {1, 0}
"""


class RedisLimiter:
    """Sliding-window counts in Redis under ``prefix``; raises ``LimiterUnavailable``."""

    def __init__(self, client: redis.Redis, *, prefix: str = KEY_PREFIX, pause: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 async_client: Callable[[], redis.asyncio.Redis] | None = None) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)
        self._pause, self._clock = pause, clock
        self._paused_until = -math.inf  # a float write: no lock needed
        self._new_async_client = async_client
        self._async_clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, Any]] = (
            weakref.WeakKeyDictionary())

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLimiter:
        """A limiter on a client for ``url`` (``redis://[:password@]host:port/db``).

        Short timeouts: a limiter that stalls stalls every request. One immediate retry
        replaces a pooled connection that a Redis restart has broken."""
        options: dict[str, Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5,
                                   "health_check_interval": 30}
        client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 1), **options)

        def async_client() -> redis.asyncio.Redis:
            return redis.asyncio.Redis.from_url(
                url, retry=redis.asyncio.retry.Retry(NoBackoff(), 1), **options)

        return cls(client, async_client=async_client, **kwargs)

    def hit(self, bucket: str, limit: int, window: float) -> Decision:
        return self._run(bucket, limit, window, count=True)

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        return self._run(bucket, limit, window, count=False)

    async def hit_async(self, bucket: str, limit: int, window: float) -> Decision:
        return await self._run_async(bucket, limit, window, count=True)

    async def peek_async(self, bucket: str, limit: int, window: float) -> Decision:
        return await self._run_async(bucket, limit, window, count=False)

    def release(self, bucket: str, token: str) -> None:
        if token:  # a member added by ``hit``; ZREM ignores one that is not there
            self._call(self.client.zrem, self.prefix + bucket, token)

    def reset(self, bucket: str) -> None:
        self._call(self.client.delete, self.prefix + bucket)

    def close(self) -> None:
        self.client.close()

    async def aclose(self) -> None:
        """Close this event loop's asyncio client (the app's shutdown)."""
        found = self._async_clients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()

    def _run(self, bucket: str, limit: int, window: float, *, count: bool) -> Decision:
        member, args = _script_args(limit, window, count)
        self._check_pause()
        try:
            answer = self._script(keys=[self.prefix + bucket], args=args)
        except redis.RedisError as exc:
            raise self._failed(exc) from exc
        return _decision(answer, member)

    async def _run_async(self, bucket: str, limit: int, window: float, *,
                         count: bool) -> Decision:
        member, args = _script_args(limit, window, count)
        self._check_pause()
        try:
            answer = await self._loop_script()(keys=[self.prefix + bucket], args=args)
        except redis.RedisError as exc:
            raise self._failed(exc) from exc
        return _decision(answer, member)

    def _loop_script(self) -> Callable[..., Awaitable[Any]]:
        """The script on this event loop's asyncio client, made at its first use."""
        loop = asyncio.get_running_loop()
        found = self._async_clients.get(loop)
        if found is None:
            if self._new_async_client is None:
                raise LimiterUnavailable("no asyncio client: make the limiter with from_url")
            client = self._new_async_client()
            found = client, client.register_script(_SLIDING_WINDOW)
            self._async_clients[loop] = found
        return found[1]  # type: ignore[no-any-return]

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self._check_pause()
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            raise self._failed(exc) from exc

    def _check_pause(self) -> None:
        if self._clock() < self._paused_until:
            raise LimiterUnavailable("Redis failed less than a few seconds ago")

    def _failed(self, exc: redis.RedisError) -> LimiterUnavailable:
        self._paused_until = self._clock() + self._pause
        return LimiterUnavailable(f"{type(exc).__name__}: {exc}")


def _script_args(limit: int, window: float, count: bool) -> tuple[str, list[Any]]:
    # A random member: two hits in the same microsecond must stay two members.
    member = secrets.token_hex(8) if count else ""
    return member, [limit, math.ceil(window * 1_000_000), "1" if count else "0", member]


def _decision(answer: Any, member: str) -> Decision:
    allowed, wait_us = answer
    if allowed:
        return Decision(True, 0, member)
    return Decision(False, max(1, math.ceil(int(wait_us) / 1_000_000)))
