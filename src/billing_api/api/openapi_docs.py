"""What the OpenAPI description says about each document endpoint's answers.

Both media types of every document, and every error status with a problem-details example,
so a partner's developer can integrate from ``/api/openapi.json`` alone.
"""

from __future__ import annotations

from typing import Any

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string"},
    },
}
ERRORS = {
    400: ("invalid_input", "startDate='2026-13-01' is not a real calendar date"),
    401: ("unknown_key", "the API key is not known: check it or create a new one"),
    403: (
        "ip_not_whitelisted",
        "no IP address is whitelisted for this account: add one under Your APIs",
    ),
    404: ("unknown_version", "API version 'v9' does not exist: the current version is v4"),
    406: ("not_acceptable", "Accept: 'text/html' allows neither XML nor JSON"),
    410: ("version_gone", "API version v1 has reached End of Life and is no longer served: use v4"),
    429: ("rate_limited", "too many requests for this key: retry after 12 seconds"),
    503: ("database_unavailable", "the database is unavailable: retry later"),
}
XML_EXAMPLES = {
    "invoices": "<InvoiceResponse><Invoice><Header>…</Header>…</Invoice></InvoiceResponse>",
    "customerinvoices": "<InvoiceResponse><Invoice>…</Invoice></InvoiceResponse>",
    "consolidatedinvoices": "<ConsolidatedInvoice><Invoices><Invoice>…</Invoice></Invoices>"
    "</ConsolidatedInvoice>",
    "subscriptiondetails": "<SubscriptionDetails><Subscription>…</Subscription>"
    "</SubscriptionDetails>",
}


def _document_schema(endpoint: str) -> dict[str, Any]:
    if endpoint == "subscriptiondetails":
        keys = ["Resources", "ServicePlan", "ServicePlanPeriod", "Subscription"]
        return {"type": "object", "properties": {k: {"type": ["object", "array"]} for k in keys}}
    return {
        "type": "object",
        "required": ["Invoices"],
        "properties": {"Invoices": {"type": "array", "items": {"type": "object"}}},
    }


def document_responses(endpoint: str) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The document, as a file (Content-Disposition: attachment). XML "
            "unless format=json or Accept: application/json.",
            "content": {
                "application/xml": {
                    "schema": {"type": "string"},
                    "example": XML_EXAMPLES[endpoint],
                },
                "application/json": {"schema": _document_schema(endpoint)},
            },
        },
    }
    for status, (code, detail) in ERRORS.items():
        example = {"type": "about:blank", "status": status, "code": code, "detail": detail}
        responses[status] = {
            "description": detail,
            "content": {
                "application/problem+json": {"schema": PROBLEM_SCHEMA, "example": example},
                "application/problem+xml": {"schema": {"type": "string"}},
            },
        }
    return responses
