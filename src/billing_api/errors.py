"""The domain error tree: services raise these, one handler per base class maps them out.

    BillingError
    ├── NotFound            a thing does not exist (or is not the caller's to see)
    ├── InvalidInput        input that can be corrected: says which field and what to fix
    ├── PermissionDenied    the actor may not do this
    └── Conflict            the state forbids it now (already billed, run in progress, duplicate)
"""

from __future__ import annotations


class BillingError(Exception):
    """Base of every error a service raises on purpose; ``code`` is stable for machines."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code


class NotFound(BillingError):
    code = "not_found"


class InvalidInput(BillingError):
    code = "invalid_input"


class PermissionDenied(BillingError):
    code = "permission_denied"


class Conflict(BillingError):
    code = "conflict"
