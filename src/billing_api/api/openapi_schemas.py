"""The JSON schemas of the four documents in the OpenAPI description, generated from
``export.documents`` so that they follow the writers: both versions' fields (v4-only ones
marked), the XML names, and examples.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from billing_api.api.openapi_problems import PROBLEM_SCHEMA
from billing_api.export import documents as d
from billing_api.export.documents import Field, Kind

JsonSchema = dict[str, Any]


def _ref(name: str) -> JsonSchema:
    return {"$ref": f"#/components/schemas/{name}"}


DOCUMENT_SCHEMAS = {
    "invoices": "PurchaseInvoices",
    "customerinvoices": "CustomerInvoices",
    "consolidatedinvoices": "ConsolidatedInvoices",
    "subscriptiondetails": "SubscriptionDetails",
}
V4_ONLY = "v4 only."
_SCALARS: dict[Kind, JsonSchema] = {
    Kind.TEXT: {"type": "string"},
    Kind.DATE: {"type": "string", "pattern": "^([0-9]{8})?$",
                "description": "YYYYMMDD (empty string when there is none)."},
    Kind.INT: {"type": ["integer", "null"]},
    # format "decimal" (OpenAPI format registry): generators then type money and quantities
    # as exact decimals, not floats (docs/openapi.md, "Money and generated clients").
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
