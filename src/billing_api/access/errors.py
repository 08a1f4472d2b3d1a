"""Access errors, each with a stable ``code``; ``api/problems.py`` maps them to HTTP.

    PermissionDenied
    ├── AuthenticationFailed (401)  missing_key, malformed_key, unknown_key, revoked_key,
    │                               expired_key, bad_token
    ├── AccessForbidden (403)       api_disabled, ip_not_whitelisted
    └── NotAccountAdministrator     not_account_admin, no_api_permission (CLI and portal)
    Conflict
    └── RateLimited (429)           rate_limited, with ``retry_after`` seconds
        └── TooManyFailures         too_many_failures (per client address, before any lookup)
"""

from __future__ import annotations

from billing_api.errors import Conflict, PermissionDenied


class AuthenticationFailed(PermissionDenied):
    """The request does not prove who it is (HTTP 401)."""

    code = "unauthenticated"


class MissingKey(AuthenticationFailed):
    code = "missing_key"


class MalformedKey(AuthenticationFailed):
    code = "malformed_key"


class UnknownKey(AuthenticationFailed):
    code = "unknown_key"


class RevokedKey(AuthenticationFailed):
    code = "revoked_key"


class ExpiredKey(AuthenticationFailed):
    code = "expired_key"


class BadToken(AuthenticationFailed):
    code = "bad_token"


class AccessForbidden(PermissionDenied):
    """The caller is known but may not use the API now (HTTP 403)."""

    code = "forbidden"


class ApiDisabled(AccessForbidden):
    code = "api_disabled"


class IpNotWhitelisted(AccessForbidden):
    code = "ip_not_whitelisted"


class NotAccountAdministrator(PermissionDenied):
    code = "not_account_admin"


class NoApiPermission(PermissionDenied):
    code = "no_api_permission"


class RateLimited(Conflict):
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = max(1, retry_after)


class TooManyFailures(RateLimited):
    """Too many failed API authentications from one client address (access/ratelimit.py)."""

    code = "too_many_failures"
