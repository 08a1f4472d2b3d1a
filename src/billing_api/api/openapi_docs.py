"""What the OpenAPI description at ``/api/openapi.json`` says, beyond what FastAPI infers.

A partner's developer should be able to integrate from the description alone: both media types
of every document (the JSON schemas are generated from ``export.documents``, so they follow the
writers: ``openapi_schemas``), every error status with problem-details examples in both formats
(``openapi_problems``), the response headers, and an introduction to keys, the whitelist,
versions and the date rules (``openapi_intro``). This module gives the document routes their
responses and their query parameters (``described``: declared for the description only), and
``install_openapi`` wraps ``app.openapi`` to add the shared schemas and to drop
what FastAPI gets wrong for this API (a 422 it never sends, nullable query parameters).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic.fields import FieldInfo

from billing_api.api.openapi_intro import api_description
from billing_api.api.openapi_problems import error_responses
from billing_api.api.openapi_schemas import DOCUMENT_SCHEMAS, _ref, component_schemas
from billing_api.api.versions import CURRENT

DOCUMENT_HEADERS = {
    "Content-Disposition": {
        "description": "Always an attachment: "
        '`attachment; filename="<endpoint>_<version>_<startDate>_<endDate>.<xml|json>"`; '
        "subscriptiondetails names the subscription too: "
        "`subscriptiondetails_<version>_<subscriptionId>_<startDate>_<endDate>.<xml|json>`.",
        "schema": {"type": "string"},
        "example": 'attachment; filename="invoices_v4_20260801_20261031.xml"',
    },
    "X-Api-Version": {"description": "The version that answered.",
                      "schema": {"type": "string"}, "example": CURRENT},
    "Vary": {"description": "`Accept`: the format depends on it.",
             "schema": {"type": "string"}, "example": "Accept"},
    "Deprecation": {
        "description": "On deprecated versions (v2) only: since when (RFC 9745, `@` + Unix time).",
        "schema": {"type": "string"}, "example": "@1735689600",
    },
    "Link": {
        "description": "On deprecated versions only: the same document in the current version.",
        "schema": {"type": "string"},
        "example": f'</api/{CURRENT}/invoices>; rel="successor-version"',
    },
}
VALIDATOR_HEADERS = {
    "ETag": {
        "description": "A strong entity tag of this answer's bytes: send it back in "
        "`If-None-Match` to get `304 Not Modified` while nothing changed (docs/sync.md).",
        "schema": {"type": "string"}, "example": '"5d41402abc4b2a76b9719d911017c592"',
    },
    "Last-Modified": {
        "description": "When the data in this answer last changed (the latest billing run in "
        "scope, import or undo); `If-Modified-Since` with it answers 304.",
        "schema": {"type": "string"}, "example": "Mon, 23 Nov 2026 02:00:00 GMT",
    },
    "Cache-Control": {
        "description": "`private, no-cache`: a client may keep a copy, and revalidates it.",
        "schema": {"type": "string"}, "example": "private, no-cache",
    },
}
CURSOR_HEADER = {
    "X-Next-Cursor": {
        "description": "v4 collections: the position of the newest billing run this answer "
        "covers; send it as `since` next time to get only what was billed after "
        "(docs/sync.md). Opaque.",
        "schema": {"type": "string"}, "example": "c1AAAAAAAAAAAgAAAAAAAAAAA3q2mPU",
    },
}
DOCUMENT_HEADERS |= VALIDATOR_HEADERS
# From an invoice document to the details of a subscription on it (a JSON pointer, so it
# resolves in JSON answers; any SubscriptionID of the document works the same way).
SUBSCRIPTION_LINKS: dict[str, Any] = {
    "SubscriptionDetails": {
        "operationId": "subscriptiondetails",
        "parameters": {
            "version": "$request.path.version",
            "subscriptionId":
                "$response.body#/Invoices/0/Customers/0/Subscriptions/0/SubscriptionID",
        },
        "description": "The details of a subscription on the document (here the first "
        "one's SubscriptionID): `subscriptiondetails?subscriptionId=…`.",
    },
}


def document_responses(endpoint: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of one document route: the document in both formats, and errors."""
    schema = _ref(DOCUMENT_SCHEMAS[endpoint])
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The whole document, as a file. XML unless `format=json` or "
            "`Accept: application/json`.",
            "headers": DOCUMENT_HEADERS,
            "content": {
                "application/xml": {"schema": schema},
                "application/json": {"schema": schema},
            },
        },
    }
    if endpoint != "subscriptiondetails":
        responses[200]["links"] = SUBSCRIPTION_LINKS
        responses[200]["headers"] = DOCUMENT_HEADERS | CURSOR_HEADER
    responses[304] = not_modified_response(endpoint != "subscriptiondetails")
    responses.update(error_responses())
    return responses


def not_modified_response(cursor: bool) -> dict[str, Any]:
    """The 304 a conditional request gets while its tag (or date) still matches."""
    headers = VALIDATOR_HEADERS | {"Vary": DOCUMENT_HEADERS["Vary"]}
    return {
        "description": "Not Modified: `If-None-Match` names this answer's ETag (or, without "
        "it, `If-Modified-Since` is not before its Last-Modified). No body: the copy the "
        "client holds is current.",
        "headers": headers | (CURSOR_HEADER if cursor else {}),
    }


TAGS = [{"name": "documents", "description": "The four documents, each as XML or JSON."}]
# Parameters the routes read themselves (to answer 400 with our own message): the description
# says what the contract requires rather than what FastAPI would enforce.
REQUIRED_QUERY = frozenset({"subscriptionId"})
# The key header, which ``api.deps.authenticate_request`` reads on every API route.
API_KEY_SCHEME = {
    "type": "apiKey",
    "in": "header",
    "name": "X-Api-Key",
    "description": "The API key generated under Your APIs (profile), for one environment "
    "(production or sandbox). Works only from a whitelisted IP address.",
}
# The alternative to the header (api/deps.py): declared so the description tells the whole truth.
DOWNLOAD_LINK_SCHEME = {
    "type": "apiKey",
    "in": "query",
    "name": "token",
    "description": "A short-lived signed token in a download link made by the portal's "
    "endpoint explorer, bound to one key and to that exact request (you do not build it).",
}


def described(*queries: FieldInfo) -> dict[str, Any]:
    """An API route's ``openapi_extra``: its query parameters (``Query(...)`` declarations,
    named by their alias) and the key it requires, for the description only.

    The routes read both themselves: ``negotiation`` refuses an unknown parameter and says
    what to fix in a bad value, ``authenticate_request`` reads the key. In a route's signature
    FastAPI parsed them again on every request for nothing, ~55 µs of a ~480 µs one-invoice
    answer in process (10 % of a small request under load, bench/load.py)."""
    return {"parameters": [_query_parameter(query) for query in queries],
            "security": [{"ApiKey": []}]}


def _query_parameter(query: FieldInfo) -> dict[str, Any]:
    # As FastAPI writes an optional string query parameter (then ``_tidy_parameter``).
    schema: dict[str, Any] = {"type": "string", "description": query.description}
    if query.examples:
        schema["examples"] = list(query.examples)
    if isinstance(query.json_schema_extra, dict):
        schema.update(query.json_schema_extra)
    return {"name": query.alias, "in": "query", "required": False, "schema": schema,
            "description": query.description}


def _tidy_parameter(parameter: dict[str, Any]) -> None:
    schema = parameter.get("schema", {})
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:  # ``str | None`` on an optional parameter: null is never sent
        del schema["anyOf"]
        schema.update(branches[0])
    schema.pop("title", None)
    if "example" not in parameter and schema.get("examples"):
        parameter["example"] = schema["examples"][0]  # what Swagger UI offers in "Try it out"
    if parameter["name"] in REQUIRED_QUERY:
        parameter["required"] = True


def polish(schema: dict[str, Any]) -> dict[str, Any]:
    """Fix up FastAPI's description in place (and return it)."""
    schema["servers"] = [{"url": "/"}]
    named = {tag["name"] for tag in schema.get("tags", [])}
    schema["tags"] = [*schema.get("tags", []), *(t for t in TAGS if t["name"] not in named)]
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(component_schemas())
    schemes = components.setdefault("securitySchemes", {})
    schemes["ApiKey"], schemes["DownloadLink"] = API_KEY_SCHEME, DOWNLOAD_LINK_SCHEME
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if {"ApiKey": []} in operation.get("security", []):
                operation["security"].append({"DownloadLink": []})
            # Validation errors are answered 400 with problem details (api/problems.py).
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", []):
                _tidy_parameter(parameter)
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    return schema


def install_openapi(app: FastAPI, rate_limit_per_minute: int) -> None:
    """Give ``app`` its introduction and the polished description (built once, on first use)."""
    app.description = api_description(rate_limit_per_minute)
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # A copy: FastAPI's description holds the routes' own ``openapi_extra`` objects,
            # which every app made from these routers shares; polish changes it in place.
            app.openapi_schema = polish(copy.deepcopy(generate()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
