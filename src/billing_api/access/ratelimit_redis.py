"""``RedisLimiter``: the ``RateLimiter`` protocol on Redis, one count for every worker and host.

The same exact sliding window as ``SlidingWindowLimiter`` (a log, not a counter
approximation): one sorted set per bucket, key ``billing-api:rl:<bucket>``, holds the times of
the hits counted in the last window. One Lua script drops the expired ones (ZREMRANGEBYSCORE),
counts (ZCARD) and adds the new hit (ZADD, PEXPIRE) only when under the limit; Redis runs a
script atomically, so two workers can never both take the last slot. A counted hit's member
is its ``Decision.token``: ``release`` removes just that one (ZREM). Times come from the Redis
server's clock (TIME), so the workers' clocks need not agree. Memory: at most ``limit`` members
per active bucket, and a bucket's key expires one window after its last counted hit.

Any Redis error is raised as ``LimiterUnavailable``; the caller decides what that means
(``ratelimit.FallbackLimiter`` for the API, fail closed for the login throttle). After an
error, calls fail at once for ``pause`` seconds instead of each waiting for a timeout.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis
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
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)
        self._pause, self._clock = pause, clock
        self._paused_until = -math.inf  # a float write: no lock needed

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisLimiter:
        """A limiter on a client for ``url`` (``redis://[:password@]host:port/db``).

        Short timeouts: a limiter that stalls stalls every request. One immediate retry
        replaces a pooled connection that a Redis restart has broken."""
        client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5,
                                      health_check_interval=30, retry=Retry(NoBackoff(), 1))
        return cls(client, **kwargs)

    def hit(self, bucket: str, limit: int, window: float) -> Decision:
        return self._run(bucket, limit, window, count=True)

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        return self._run(bucket, limit, window, count=False)

    def release(self, bucket: str, token: str) -> None:
        if token:  # a member added by ``hit``; ZREM ignores one that is not there
            self._call(self.client.zrem, self.prefix + bucket, token)

    def reset(self, bucket: str) -> None:
        self._call(self.client.delete, self.prefix + bucket)

    def close(self) -> None:
        self.client.close()

    def _run(self, bucket: str, limit: int, window: float, *, count: bool) -> Decision:
        # A random member: two hits in the same microsecond must stay two members.
        member = secrets.token_hex(8) if count else ""
        args = [limit, math.ceil(window * 1_000_000), "1" if count else "0", member]
        allowed, wait_us = self._call(self._script, keys=[self.prefix + bucket], args=args)
        if allowed:
            return Decision(True, 0, member)
        return Decision(False, max(1, math.ceil(int(wait_us) / 1_000_000)))

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._clock() < self._paused_until:
            raise LimiterUnavailable("Redis failed less than a few seconds ago")
        try:
            return func(*args, **kwargs)
        except redis.RedisError as exc:
            self._paused_until = self._clock() + self._pause
            raise LimiterUnavailable(f"{type(exc).__name__}: {exc}") from exc
