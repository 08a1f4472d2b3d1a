"""Rate limits: per API key, and a login throttle for the portal (per e-mail and per IP).

In memory by default: counts live in one process, so with N workers a key gets up to N times
its limit. That is the documented trade-off until ``BILLING_API_REDIS_URL`` is wired to a
Redis-backed limiter (TODO: the ``redis`` package is not a dependency yet; ``RateLimiter`` is
the seam it plugs into, see docs/access.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from billing_api.access.errors import RateLimited


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: int  # whole seconds until a request would be allowed again (0 if allowed)


class RateLimiter(Protocol):
    def hit(self, bucket: str, limit: int, window: float) -> Decision: ...


class SlidingWindowLimiter:
    """A sliding log per bucket: exact, memory ≤ ``limit`` timestamps per active bucket.

    Thread-safe: FastAPI runs sync dependencies in a thread pool."""

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
            return Decision(True, 0)

    def peek(self, bucket: str, limit: int, window: float) -> Decision:
        """Like ``hit`` without counting."""
        now = self._clock()
        with self._lock:
            hits = [t for t in self._hits.get(bucket, ()) if t > now - window]
            if len(hits) >= limit:
                return Decision(False, max(1, math.ceil(hits[0] + window - now)))
            return Decision(True, 0)

    def reset(self, bucket: str) -> None:
        with self._lock:
            self._hits.pop(bucket, None)

    def _prune(self, now: float, window: float) -> None:
        # Idle buckets would otherwise grow without bound under a flood of unknown keys.
        for name in [b for b, h in self._hits.items() if not h or h[-1] <= now - window]:
            del self._hits[name]


def check_api_rate(limiter: RateLimiter, key_id: int, per_minute: int) -> None:
    """Count one API call for ``key_id``; raises ``RateLimited`` past ``per_minute``."""
    decision = limiter.hit(f"key:{key_id}", per_minute, 60.0)
    if not decision.allowed:
        raise RateLimited(
            f"more than {per_minute} requests a minute with this key: retry in "
            f"{decision.retry_after} s", retry_after=decision.retry_after)


class LoginThrottle:
    """Failed portal logins: at most ``per_email`` per e-mail and ``per_ip`` per address in
    ``window`` seconds. The portal calls ``check`` before verifying a password, ``failed``
    after a wrong one and ``succeeded`` after a right one."""

    def __init__(self, limiter: SlidingWindowLimiter | None = None, *, per_email: int = 5,
                 per_ip: int = 20, window: float = 900.0) -> None:
        self._limiter = limiter or SlidingWindowLimiter()
        self.per_email, self.per_ip, self.window = per_email, per_ip, window

    def check(self, email: str, ip: str) -> None:
        """Raises ``RateLimited`` when either bucket is full."""
        for bucket, limit in ((f"login-email:{email.lower()}", self.per_email),
                              (f"login-ip:{ip}", self.per_ip)):
            decision = self._limiter.peek(bucket, limit, self.window)
            if not decision.allowed:
                raise RateLimited(
                    f"too many failed logins: try again in {decision.retry_after} s",
                    retry_after=decision.retry_after)

    def failed(self, email: str, ip: str) -> None:
        self._limiter.hit(f"login-email:{email.lower()}", self.per_email, self.window)
        self._limiter.hit(f"login-ip:{ip}", self.per_ip, self.window)

    def succeeded(self, email: str) -> None:
        self._limiter.reset(f"login-email:{email.lower()}")
