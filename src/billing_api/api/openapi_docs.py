"""What the OpenAPI description at ``/api/openapi.json`` says, beyond what FastAPI infers.

A partner's developer should be able to integrate from the description alone: both media types
of every document (the JSON schemas are generated from ``export.documents``, so they follow the
writers), every error status with problem-details examples in both formats, the response
headers, and an introduction to keys, the whitelist, versions and the date rules.
``install_openapi`` wraps ``app.openapi`` to add the shared schemas and to drop what FastAPI
gets wrong for this API (a 422 it never sends, nullable query parameters).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from billing_api.api.openapi_problems import PROBLEM_SCHEMA, error_responses
from billing_api.api.versions import CURRENT, VERSIONS
from billing_api.export import documents as d
from billing_api.export.documents import Field, Kind

JsonSchema = dict[str, Any]


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


# --- documents ------------------------------------------------------------------------------

DOCUMENT_SCHEMAS = {
    "invoices": "PurchaseInvoices",
    "customerinvoices": "CustomerInvoices",
    "consolidatedinvoices": "ConsolidatedInvoices",
    "subscriptiondetails": "SubscriptionDetails",
}
DOCUMENT_HEADERS = {
    "Content-Disposition": {
        "description": "Always an attachment: "
        '`attachment; filename="<endpoint>_<version>_<startDate>_<endDate>.<xml|json>"`.',
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
V4_ONLY = "v4 only."
_SCALARS: dict[Kind, JsonSchema] = {
    Kind.TEXT: {"type": "string"},
    Kind.DATE: {"type": "string", "pattern": "^([0-9]{8})?$",
                "description": "YYYYMMDD (empty string when there is none)."},
    Kind.INT: {"type": ["integer", "null"]},
    # format "decimal" (OpenAPI format registry): generators then type money and quantities
    # as exact decimals, not floats (docs/openapi.md, "Money").
    Kind.MONEY: {"type": ["number", "null"], "format": "decimal",
                 "description": "Exact decimal, at least two fraction digits: read it as a "
                 "decimal, never a binary float."},
    Kind.PLAIN: {"type": ["number", "null"], "format": "decimal"},
    Kind.BOOL: {"type": "boolean"},
}
FIELD_EXAMPLES: dict[str, Any] = {
    "InvoiceID": "PI-2026-000123", "Date": "20261123", "ExpirationDate": "20261223",
    "Currency": "EUR", "CountryCode": "NL", "LanguageCode": "en", "SKU": "MS-365-BP-M",
    "UnitPrice": 10.5, "Quantity": 3, "ChargeType": "Cycle Fee", "StartDate": "20261101",
    "EndDate": "20261130", "TypeIdentifier": 1,
}


def _scalar(name: str, kind: Kind, v4_only: bool = False) -> JsonSchema:
    schema = dict(_SCALARS[kind])
    if name in FIELD_EXAMPLES:
        schema["examples"] = [FIELD_EXAMPLES[name]]
    if v4_only:
        schema["description"] = f"{schema.get('description', '')} {V4_ONLY}".strip()
    return schema


def _object(fields: Iterable[tuple[str, JsonSchema]], required: Iterable[str],
            xml_name: str | None = None, description: str | None = None) -> JsonSchema:
    schema: JsonSchema = {"type": "object", "properties": dict(fields),
                          "required": sorted(required), "additionalProperties": False}
    if xml_name:
        schema["xml"] = {"name": xml_name}
    if description:
        schema["description"] = description
    return schema


def _record(fields: tuple[Field, ...], v2_fields: tuple[Field, ...], xml_name: str,
            extra: Iterable[tuple[str, JsonSchema]] = (),
            extra_required: Iterable[str] = ()) -> JsonSchema:
    v2 = {f.name for f in v2_fields}
    properties = [(f.name, _scalar(f.name, f.kind, f.name not in v2)) for f in fields]
    return _object([*properties, *extra], [*v2, *extra_required], xml_name)


def _named(names: tuple[str, ...], xml_name: str) -> JsonSchema:
    return _object(((n, _scalar(n, Kind.INT if n in d.INTEGER_HEADER_FIELDS else Kind.TEXT))
                    for n in names), names, xml_name)


def _list(item: JsonSchema, wrapper: str | None, item_name: str) -> JsonSchema:
    items = {**item, "xml": {"name": item_name}} if "$ref" not in item else item
    schema: JsonSchema = {"type": "array", "items": items}
    schema["xml"] = {"name": wrapper, "wrapped": True} if wrapper else {"wrapped": False}
    return schema


def _invoice_schemas(endpoint: str, prefix: str) -> dict[str, JsonSchema]:
    v4, v2 = d.invoice_shape(endpoint, True), d.invoice_shape(endpoint, False)
    totals = _object(((n, _scalar(n, Kind.MONEY)) for n in d.TOTALS), d.TOTALS, "Totals")
    if v4.consolidated:
        totals = _object([("TotalPurchases", {**totals, "xml": {"name": "TotalPurchases"}}),
                          ("TotalSales", {**totals, "xml": {"name": "TotalSales"}})],
                         ["TotalPurchases", "TotalSales"], "Totals")
    detail = _object(((n, _scalar(n, Kind.BOOL if n == "noshow" else Kind.TEXT))
                      for n in d.DETAIL), d.DETAIL, "SubscriptionDetail",
                     "A configuration attribute of the subscription (e.g. vCPU, disk size); "
                     "`noshow` is true where the printed invoice leaves it out.")
    details_list = {**_list(_ref("SubscriptionDetail"), "SubscriptionDetails",
                            "SubscriptionDetail"), "description": V4_ONLY}
    line = _record(v4.line, v2.line, "PriceLine")
    subscription = _record(v4.subscription, v2.subscription, "Subscription", [
        ("SubscriptionDetails", details_list),
        ("PriceLines", _list(_ref(f"{prefix}PriceLine"), "PriceLines", "PriceLine")),
    ], ["PriceLines"])
    customer = _record(v4.customer, v2.customer, "Customer", [
        ("Subscriptions", _list(_ref(f"{prefix}Subscription"), "Subscriptions", "Subscription")),
    ], ["Subscriptions"])
    invoice = _object([
        ("Header", _ref("InvoiceHeader")),
        ("Sender", _ref("InvoiceSender")),
        ("Receiver", _ref("InvoiceReceiver")),
        ("Customers", _list(_ref(f"{prefix}Customer"), "Customers", "Customer")),
        ("Totals", totals),
    ], ["Header", "Sender", "Receiver", "Customers", "Totals"], "Invoice")
    document = _object(
        [("Invoices", _list(_ref(f"{prefix}Invoice"), v4.xml_invoices_wrapper, "Invoice"))],
        ["Invoices"], v4.xml_root,
        f"JSON: `{{\"Invoices\": [...]}}`, keys sorted ignoring case. XML: root "
        f"`{v4.xml_root}`; see also the XSD per version.")
    return {
        DOCUMENT_SCHEMAS[endpoint]: document, f"{prefix}Invoice": invoice,
        f"{prefix}Customer": customer, f"{prefix}Subscription": subscription,
        f"{prefix}PriceLine": line, "SubscriptionDetail": detail,
        "InvoiceHeader": _named(d.HEADER, "Header"),
        "InvoiceSender": _named(d.SENDER, "Sender"),
        "InvoiceReceiver": _named(d.RECEIVER, "Receiver"),
    }


def _details_schemas() -> dict[str, JsonSchema]:
    text, integer = {"type": "string"}, {"type": "integer"}
    number, date = {"type": "number", "format": "decimal"}, _SCALARS[Kind.DATE]
    translations = _list(_ref("Translation"), None, "Translation")
    translations["xml"] = {"wrapped": True}

    def obj(xml_name: str, **props: JsonSchema) -> JsonSchema:
        return _object(props.items(), props, xml_name)

    rate_period = obj("ResourceRatePeriod", RatePeriodId=integer, Term=integer, TermType=text,
                      BillingPeriod=integer, BillingPeriodType=text, SKU=text)
    rate_period = {**rate_period, "type": ["object", "null"],
                   "description": "v4 only; null where the plan does not price per rate "
                   "period. `RatePeriodId` equals `RatePeriodID` on invoice lines."}
    resource = obj(
        "Resource", ResourceId=integer, ResourceName=translations, IncludedValue=number,
        Amount=number, Manufacturer=text, ManufacturerName=text, MPNumber=text,
        MeasureUnit=translations,
        ResourceRate=obj("ResourceRate", PlanRateId=integer, SetupSKU=text, RecurringSKU=text,
                         OveruseSKU=text, CancellationSKU=text),
        ResourceRatePeriod=rate_period)
    resource["required"].remove("ResourceRatePeriod")
    document = obj(
        "SubscriptionDetails",
        Subscription=obj("Subscription", SubscriptionId=integer, StartDate=date,
                         ExpirationDate=date, Period=integer, PeriodType=text,
                         BillingPeriod=integer, BillingPeriodType=text),
        ServicePlan=obj("ServicePlan", PlanId=integer, PlanName=translations,
                        PlanCategoryId=integer, PlanCategoryName=text),
        ServicePlanPeriod=obj("ServicePlanPeriod", PlanPeriodId=integer, SetupSKU=text,
                              SubscriptionSKU=text, RenewalSKU=text, TransferSKU=text,
                              CancellationSKU=text),
        Resources=_list(_ref("Resource"), "Resources", "Resource"))
    document["description"] = ("JSON: this object itself, keys sorted ignoring case. XML: root "
                               "`SubscriptionDetails` with the same children.")
    return {
        "SubscriptionDetails": document, "Resource": resource,
        "Translation": obj("Translation", Value=text, Name=text),
    }


def component_schemas() -> dict[str, JsonSchema]:
    """Every schema the operations refer to, by name."""
    schemas: dict[str, JsonSchema] = {"Problem": PROBLEM_SCHEMA}
    for endpoint, prefix in (("invoices", "Purchase"), ("customerinvoices", "Customer"),
                             ("consolidatedinvoices", "Consolidated")):
        schemas.update(_invoice_schemas(endpoint, prefix))
    schemas.update(_details_schemas())
    return schemas


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
    responses.update(error_responses())
    return responses


# --- the description as a whole -------------------------------------------------------------

VERSION_NOTES = {
    "v1": "not served: every call answers 410 Gone",
    "v2": "all four documents; answers carry `Deprecation` and a `Link` to the current version",
    "v3": "same document shapes as v2",
    "v4": "adds `RatePeriodID`, `SubPONumber`, `ChargeType`, `BillingFrequency` and "
    "`InvoiceRowHash` on lines, `SubscriptionPONumber` and `SubscriptionDetails` on "
    "subscriptions, `ResourceRatePeriod` in subscriptiondetails",
}
INTRODUCTION = """\
Download your invoices as files, to automate your own invoicing and bookkeeping:
**purchase invoices** (what the distributor bills you, one per vendor), the matching **customer
invoices** (one per customer and vendor, at your sales prices), **consolidated invoices**
(purchase lines with their sales figures) and the **details of one subscription**.

## Access
1. The **Account Administrator** enables the Billing API under profile → *Your APIs*; nobody
   else can, and until then every call is refused (403).
2. **Whitelist at least one IP address** (IPv4 or IPv6, single address or CIDR range) under
   *Your APIs*. With an empty whitelist every call is refused, even with a valid key.
3. **Generate a key** there, for one environment: `production` (your real data) or `sandbox`
   (fictional example data of the same shape, for integration testing). A key only ever sees
   its own environment. The secret is shown once; keys can expire and can be revoked.
4. Send the key in the **`X-Api-Key` header** on every call (here: *Authorize*). Download links
   made by the portal's endpoint explorer carry a short-lived signed `token` instead; they obey
   the same rules.

Calls are limited to {rate} per minute per key; past that the answer is 429 with `Retry-After`.

## Versions
| version | status | |
| --- | --- | --- |
{versions}

A new version exists only for a breaking change; older versions keep their exact shape.

## Dates
`startDate` and `endDate` (`YYYYMMDD`; `YYYY-MM-DD` is accepted too) filter on the
**invoice date**, the day an invoice was issued, **inclusive at both ends**; not on the service
period its lines cover (October's usage is typically invoiced around 23 November). Both
missing: the three months up to today. Only `endDate`: from three months before it. Only
`startDate`: up to today. A malformed or impossible date, or an end before the start, is a 400
naming the parameter.

Every parameter is checked exactly as described here: an empty value, a date that is not a
real calendar date, a parameter the endpoint does not take (e.g. `startdate`) is a 400.

## Formats
**XML is the default** (no `Accept`, `*/*`, `application/xml` or `text/xml`); JSON with
`Accept: application/json`. `Accept` is read with its q-values (RFC 9110: the most specific
range decides, `application/json;q=0` refuses JSON). `format=xml|json` (lower case) in the
query wins over `Accept`; an `Accept` allowing neither is 406. XML is UTF-8 with a
declaration and writes empty values as empty elements; JSON keys are sorted ignoring case;
amounts are exact decimals; dates are `YYYYMMDD` text. Every document is one whole file
(`Content-Disposition: attachment`), and the same request over the same data returns the same
bytes.

## Errors
RFC 9457 problem details, negotiated exactly like documents (`application/problem+xml`, or
`application/problem+json` with `format=json` or an `Accept` preferring JSON;
`application/problem+json` and `application/problem+xml` may be named too): `status`, `title`,
a `detail` saying what to do, a stable `code` for programs, and `field` when one parameter is at
fault. When `Accept` allows neither format, or `format` is invalid, the problem is XML.
"""


def api_description(rate_limit_per_minute: int) -> str:
    versions = "\n".join(f"| `{v.name}` | {v.status} | {VERSION_NOTES.get(v.name, '')} |"
                         for v in VERSIONS.values())
    return INTRODUCTION.format(rate=rate_limit_per_minute, versions=versions)


TAGS = [{"name": "documents", "description": "The four documents, each as XML or JSON."}]
# Parameters the routes read themselves (to answer 400 with our own message): the description
# says what the contract requires rather than what FastAPI would enforce.
REQUIRED_QUERY = frozenset({"subscriptionId"})
# The alternative to the header (api/deps.py): declared so the description tells the whole truth.
DOWNLOAD_LINK_SCHEME = {
    "type": "apiKey",
    "in": "query",
    "name": "token",
    "description": "A short-lived signed token in a download link made by the portal's "
    "endpoint explorer, bound to one key and to that exact request (you do not build it).",
}


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
    components.setdefault("securitySchemes", {})["DownloadLink"] = DOWNLOAD_LINK_SCHEME
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
            app.openapi_schema = polish(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
