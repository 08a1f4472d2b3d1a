"""Errors of the API layer itself (content negotiation, versions); mapped in ``problems``."""

from __future__ import annotations

from billing_api.errors import BillingError, InvalidInput


class NotAcceptable(InvalidInput):
    """``Accept`` allows neither XML nor JSON (answered 406)."""

    code = "not_acceptable"


class VersionGone(BillingError):
    """A version past its End of Life (answered 410)."""

    code = "version_gone"
