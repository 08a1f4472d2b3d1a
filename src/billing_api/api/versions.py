"""The API versions as data: status, endpoints, and what each adds. Adding v5 is an entry here
plus what truly changes in ``export/documents.py``."""

from __future__ import annotations

from dataclasses import dataclass

INVOICE_ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")
ENDPOINTS = (*INVOICE_ENDPOINTS, "subscriptiondetails")


@dataclass(frozen=True, slots=True)
class ApiVersion:
    name: str
    status: str  # as the portal shows it
    served: bool
    endpoints: tuple[str, ...]
    # v4: rate periods, PO numbers, InvoiceRowHash, ChargeType, BillingFrequency, attributes.
    v4_fields: bool
    # RFC 9745 ``Deprecation`` value (an @-timestamp) when clients should move on.
    deprecated_since: str | None = None


VERSIONS: dict[str, ApiVersion] = {
    v.name: v
    for v in (
        ApiVersion("v1", "End of Life", served=False, endpoints=("invoices",), v4_fields=False),
        ApiVersion(
            "v2",
            "End of Maintenance",
            served=True,
            endpoints=ENDPOINTS,
            v4_fields=False,
            deprecated_since="@1735689600",
        ),  # 2025-01-01
        ApiVersion("v3", "Maintenance", served=True, endpoints=ENDPOINTS, v4_fields=False),
        ApiVersion("v4", "Current", served=True, endpoints=ENDPOINTS, v4_fields=True),
    )
}
CURRENT = "v4"
SERVED = tuple(name for name, v in VERSIONS.items() if v.served)
