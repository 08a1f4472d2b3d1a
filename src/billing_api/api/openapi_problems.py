"""The error answers of the OpenAPI description: the ``Problem`` schema and, per status, what
``api/problems.py`` can send, with named examples in both formats.

Every status any API route can answer is here, whether a route raises it or the server does
around it (431 from the header-size guard in ``ops/context.py``, 500 for a bug): a client, and
schemathesis, can rely on the list. ``error_responses`` picks the statuses of one route.
"""

from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus
from typing import Any
from xml.sax.saxutils import escape

from billing_api.access.client_address import BOTH_HEADERS, UNKNOWN_HOP
from billing_api.api.versions import CURRENT

JsonSchema = dict[str, Any]
PROBLEM_XML_NAMESPACE = "urn:ietf:rfc:7807"
EXAMPLE_PATH = f"/api/{CURRENT}/invoices"

PROBLEM_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "RFC 9457 problem details. As XML: a `problem` element in the "
    f"`{PROBLEM_XML_NAMESPACE}` namespace holding the same fields as child elements. Text the "
    "client sent (the path, a parameter) is repeated without the characters XML 1.0 forbids.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "Always `about:blank`: the status says it all."},
        "title": {"type": "string", "description": "The HTTP reason phrase."},
        "status": {"type": "integer", "description": "The HTTP status code."},
        "detail": {"type": "string", "description": "What went wrong and what to do about it."},
        "code": {"type": "string", "description": "Stable machine-readable reason."},
        "instance": {"type": "string", "description": "The request path (never the query)."},
        "field": {"type": "string", "description": "The parameter or header at fault, if any."},
    },
    "additionalProperties": False,
    "xml": {"name": "problem", "namespace": PROBLEM_XML_NAMESPACE},
}

# Per status: (summary, [(code, detail, field), ...]) with the first example the typical one.
ERRORS: dict[int, tuple[str, list[tuple[str, str, str | None]]]] = {
    400: ("A parameter is malformed, impossible or unknown: `field` names it.", [
        ("invalid_input", "startDate='20261301' is not a real calendar date", "startDate"),
        ("invalid_input", "endDate 20260101 is before startDate 20261231: swap them or widen "
         "the range", "endDate"),
        ("invalid_input", "format='csv' is not supported: use format=xml or format=json",
         "format"),
        ("invalid_input", "subscriptionId is required: the id of one of your subscriptions",
         "subscriptionId"),
        ("invalid_input", "unknown parameter 'startdate': this endpoint takes endDate, format, "
         "startDate, token", "startdate"),
    ]),
    401: ("No key, or a key (or download-link token) that is unknown, revoked or expired.", [
        ("missing_key", "no API key: send it in the X-Api-Key header", None),
        ("unknown_key", "the API key is not known: check it or create a new one", None),
        ("revoked_key", "the API key has been revoked: create a new one under Your APIs", None),
        ("expired_key", "the API key has expired: create a new one under Your APIs", None),
    ]),
    403: ("The API is not enabled for the account, or the caller's IP address is not "
          "whitelisted (an empty whitelist refuses every call) or cannot be determined.", [
        ("ip_not_whitelisted",
         "no IP address is whitelisted for this account: add one under Your APIs", None),
        ("ip_not_whitelisted", "your IP address 203.0.113.9 is not whitelisted for this "
         "account: add it under Your APIs", None),
        ("api_disabled", "the Billing API is not enabled for this account: the Account "
         "Administrator can enable it under Your APIs", None),
        (BOTH_HEADERS, "your IP address could not be determined (the request came through a "
         "trusted proxy with both X-Forwarded-For and Forwarded headers, so the client address "
         "is ambiguous: the proxy must remove the one it does not write): no whitelist entry "
         "can match", None),
        (UNKNOWN_HOP, "your IP address could not be determined (a forwarding hop does not "
         "name an IP address): no whitelist entry can match", None),
    ]),
    404: ("Unknown version or endpoint, or a subscription that is not yours (or not in this "
          "key's environment).", [
        ("unknown_version", f"API version 'v9' does not exist: the current version is {CURRENT}",
         None),
        ("subscription_not_found",
         "subscription 42 was not found for this account and environment", None),
    ]),
    406: ("`Accept` allows neither XML nor JSON (and no `format` was given).", [
        ("not_acceptable", "Accept: 'text/html' allows neither XML nor JSON: send Accept: "
         "application/xml or application/json (or format=xml|json)", "Accept"),
    ]),
    410: ("The version has reached End of Life (v1).", [
        ("version_gone", "API version v1 has reached End of Life and is no longer served: "
         f"use {CURRENT}, e.g. {EXAMPLE_PATH}", None),
    ]),
    429: ("Too many requests for this key, or too many failed authentications from this "
          "address: wait `Retry-After` seconds.", [
        ("rate_limited", "too many requests for this API key: retry after 12 seconds", None),
        ("too_many_failures", "too many failed authentications from your address (30 a "
         "minute): retry in 41 s", None),
    ]),
    431: ("The request's headers are too large (the limit is far above what a real request "
          "needs).", [
        ("headers_too_large", "the request's headers exceed 32 KiB: an API key is 58 "
         "characters, check what your client sends", None),
    ]),
    500: ("A bug: it has been logged with the request's `X-Request-Id`.", [
        ("internal_error", "an internal error occurred: it has been logged", None),
    ]),
    503: ("The database is unavailable, or every connection is busy with downloads: retry "
          "after `Retry-After` seconds.", [
        ("database_unavailable", "the database is unavailable: retry later", None),
        ("server_busy", "the server is busy with other downloads: retry shortly", None),
    ]),
}
# What every route can answer whatever it does, besides its own errors.
ANY_ROUTE = (431, 500)
RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
    "example": 30,
}
WWW_AUTHENTICATE = {
    "description": 'How to authenticate: `ApiKey header="X-Api-Key"`.',
    "schema": {"type": "string"},
}


def problem_example(status: int, code: str, detail: str, field: str | None) -> dict[str, Any]:
    """The body the API sends, as a dict (keys as ``api.problems`` writes them)."""
    body: dict[str, Any] = {
        "type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
        "detail": detail, "code": code, "instance": EXAMPLE_PATH,
    }
    if field:
        body["field"] = field
    return body


def problem_xml(body: dict[str, Any]) -> str:
    inner = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in body.items())
    return (f'<?xml version="1.0" encoding="utf-8"?>\n'
            f'<problem xmlns="{PROBLEM_XML_NAMESPACE}">{inner}</problem>')


def error_responses(statuses: Iterable[int] | None = None) -> dict[int | str, dict[str, Any]]:
    """The error ``responses`` of a route: ``statuses`` (default: all) plus ``ANY_ROUTE``."""
    wanted = set(ERRORS if statuses is None else (*statuses, *ANY_ROUTE))
    responses: dict[int | str, dict[str, Any]] = {}
    for status, (summary, cases) in ERRORS.items():
        if status not in wanted:
            continue
        as_json: dict[str, Any] = {}
        as_xml: dict[str, Any] = {}
        for code, detail, field in cases:
            name = code if code not in as_json else f"{code}_{len(as_json)}"
            body = problem_example(status, code, detail, field)
            as_json[name] = {"summary": detail, "value": body}
            as_xml[name] = {"summary": detail, "value": problem_xml(body)}
        schema = {"$ref": "#/components/schemas/Problem"}
        response: dict[str, Any] = {
            "description": f"{summary} Problem details, negotiated like documents: XML unless "
            "`format=json` or `Accept` prefers JSON (by q-values; `application/problem+json` "
            "counts).",
            "content": {
                "application/problem+xml": {"schema": schema, "examples": as_xml},
                "application/problem+json": {"schema": schema, "examples": as_json},
            },
        }
        if status == 401:
            response["headers"] = {"WWW-Authenticate": WWW_AUTHENTICATE}
        if status in (429, 503):
            response["headers"] = {"Retry-After": RETRY_AFTER}
        responses[status] = response
    return responses
