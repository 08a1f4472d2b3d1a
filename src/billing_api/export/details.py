"""The ``subscriptiondetails`` document: one subscription's plan, period, resources and rates.

Small and read by primary key, so it is built as a tree of ``(name, value)`` pairs and
serialised by two short recursive functions; the invoice writers' streaming is not needed.
A value is text, an int, a ``Decimal``, ``None`` (empty), a ``Node`` (an object) or a
``Repeated`` (a list of objects: a JSON array, an XML wrapper of repeated elements).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, bindparam, select

from billing_api.catalog.models import (
    PlanCategory,
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
)
from billing_api.compiled_query import CompiledQuery
from billing_api.customers.models import Subscription, SubscriptionResource
from billing_api.export.values import json_text, xml_text
from billing_api.export.writers import XML_DECLARATION, XML_NAMESPACES

Node = list[tuple[str, Any]]
# Ids are 32-bit integers on PostgreSQL: a larger one cannot exist, and comparing the column
# with it is a database error (a 500) rather than no row (a 404).
MAX_ID = 2**31 - 1


@dataclass(frozen=True)
class Repeated:
    item_name: str  # the XML element name of each item
    items: Sequence[Node]


def _translations(names: dict[str, str], fallback: str) -> Repeated:
    items = sorted(names.items()) or [("en", fallback)]
    return Repeated(
        "Translation", [[("Value", text), ("Name", language)] for language, text in items]
    )


def _date(value: Any) -> str:
    # No date is "" (an empty XML element, "" in JSON), as dates are in the invoice documents.
    return "" if value is None else value.strftime("%Y%m%d")


# Two statements built once (Core, not ORM): one row for the subscription with its plan,
# category and period, then its resources. Loading entities one by one took seven queries
# and most of a request's time (bench/load.py).
_SUBSCRIPTION = CompiledQuery(
    select(
        Subscription.id,
        Subscription.start_date,
        Subscription.expiration_date,
        PlanPeriod.id,
        PlanPeriod.period,
        PlanPeriod.period_type,
        PlanPeriod.billing_period,
        PlanPeriod.billing_period_type,
        PlanPeriod.setup_sku,
        PlanPeriod.subscription_sku,
        PlanPeriod.renewal_sku,
        PlanPeriod.transfer_sku,
        PlanPeriod.cancellation_sku,
        ServicePlan.id,
        ServicePlan.names,
        ServicePlan.name,
        PlanCategory.id,
        PlanCategory.name,
    )
    .join(ServicePlan, ServicePlan.id == Subscription.plan_id)
    .join(PlanCategory, PlanCategory.id == ServicePlan.category_id)
    .join(PlanPeriod, PlanPeriod.id == Subscription.plan_period_id)
    .where(
        Subscription.id == bindparam("subscription_id"),
        Subscription.partner_id == bindparam("partner_id"),
        Subscription.environment == bindparam("environment"),
    )
)
_RESOURCES = CompiledQuery(
    select(
        Resource.id,
        Resource.names,
        Resource.name,
        ResourceRate.included_value,
        SubscriptionResource.amount,
        Resource.manufacturer,
        Resource.manufacturer_name,
        Resource.mp_number,
        Resource.measure_units,
        Resource.measure_unit,
        ResourceRate.id,
        ResourceRate.setup_sku,
        ResourceRate.recurring_sku,
        ResourceRate.overuse_sku,
        ResourceRate.cancellation_sku,
        RatePeriod.id,
        RatePeriod.term,
        RatePeriod.term_type,
        RatePeriod.billing_period,
        RatePeriod.billing_period_type,
        RatePeriod.sku,
    )
    .select_from(SubscriptionResource)
    .join(ResourceRate, ResourceRate.id == SubscriptionResource.resource_rate_id)
    .join(Resource, Resource.id == ResourceRate.resource_id)
    .outerjoin(RatePeriod, RatePeriod.id == SubscriptionResource.rate_period_id)
    .where(SubscriptionResource.subscription_id == bindparam("subscription_id"))
    .order_by(SubscriptionResource.id)
)


def build_details(
    connection: Connection, partner_id: int, environment: str, subscription_id: int, v4: bool
) -> Node | None:
    """The document tree, or None when the subscription is not the caller's to see."""
    if subscription_id > MAX_ID:
        return None
    sub = _SUBSCRIPTION.first(
        connection,
        {"subscription_id": subscription_id, "partner_id": partner_id,
         "environment": environment},
    )
    if sub is None:
        return None
    (sub_id, start, expiration, period_id, period, period_type, billing_period,
     billing_period_type, setup_sku, subscription_sku, renewal_sku, transfer_sku,
     cancellation_sku, plan_id, plan_names, plan_name, category_id, category_name) = sub
    resources = []
    for row in _RESOURCES.all(connection, {"subscription_id": sub_id}):
        (resource_id, names, name, included, amount, manufacturer, manufacturer_name,
         mp_number, measure_units, measure_unit, rate_id, rate_setup, rate_recurring,
         rate_overuse, rate_cancellation, rp_id, term, term_type, rp_billing_period,
         rp_billing_period_type, rp_sku) = row
        node: Node = [
            ("ResourceId", resource_id),
            ("ResourceName", _translations(names, name)),
            ("IncludedValue", included),
            ("Amount", amount),
            ("Manufacturer", manufacturer),
            ("ManufacturerName", manufacturer_name),
            ("MPNumber", mp_number),
            ("MeasureUnit", _translations(measure_units, measure_unit)),
            (
                "ResourceRate",
                [
                    ("PlanRateId", rate_id),
                    ("SetupSKU", rate_setup),
                    ("RecurringSKU", rate_recurring),
                    ("OveruseSKU", rate_overuse),
                    ("CancellationSKU", rate_cancellation),
                ],
            ),
        ]
        if v4:
            node.append(
                (
                    "ResourceRatePeriod",
                    None
                    if rp_id is None
                    else [
                        ("RatePeriodId", rp_id),
                        ("Term", term),
                        ("TermType", term_type),
                        ("BillingPeriod", rp_billing_period),
                        ("BillingPeriodType", rp_billing_period_type),
                        ("SKU", rp_sku),
                    ],
                )
            )
        resources.append(node)
    return [
        (
            "Subscription",
            [
                ("SubscriptionId", sub_id),
                ("StartDate", _date(start)),
                ("ExpirationDate", _date(expiration)),
                ("Period", period),
                ("PeriodType", period_type),
                ("BillingPeriod", billing_period),
                ("BillingPeriodType", billing_period_type),
            ],
        ),
        (
            "ServicePlan",
            [
                ("PlanId", plan_id),
                ("PlanName", _translations(plan_names, plan_name)),
                ("PlanCategoryId", category_id),
                ("PlanCategoryName", category_name),
            ],
        ),
        (
            "ServicePlanPeriod",
            [
                ("PlanPeriodId", period_id),
                ("SetupSKU", setup_sku),
                ("SubscriptionSKU", subscription_sku),
                ("RenewalSKU", renewal_sku),
                ("TransferSKU", transfer_sku),
                ("CancellationSKU", cancellation_sku),
            ],
        ),
        ("Resources", Repeated("Resource", resources)),
    ]


def _scalar_xml(value: Any) -> str:
    if isinstance(value, Decimal):
        return _plain_decimal(value)
    return xml_text(str(value))


def _plain_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text


def to_xml(tree: Node) -> bytes:
    return (
        f"{XML_DECLARATION}<SubscriptionDetails {XML_NAMESPACES}>{_xml_node(tree)}"
        "</SubscriptionDetails>\n"
    ).encode()


def _xml_node(node: Node) -> str:
    parts = []
    for name, value in node:
        if value is None or value == "":
            parts.append(f"<{name} />")
        elif isinstance(value, Repeated):
            inner = "".join(
                f"<{value.item_name}>{_xml_node(item)}</{value.item_name}>" for item in value.items
            )
            parts.append(f"<{name}>{inner}</{name}>" if inner else f"<{name} />")
        elif isinstance(value, list):
            parts.append(f"<{name}>{_xml_node(value)}</{name}>")
        else:
            parts.append(f"<{name}>{_scalar_xml(value)}</{name}>")
    return "".join(parts)


def to_json(tree: Node) -> bytes:
    return (_json_node(tree) + "\n").encode()


def _json_node(node: Node) -> str:
    items = sorted(node, key=lambda kv: kv[0].lower())
    return "{" + ",".join(f"{json_text(name)}:{_json_value(value)}" for name, value in items) + "}"


def _json_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Repeated):
        return "[" + ",".join(_json_node(item) for item in value.items) + "]"
    if isinstance(value, list):
        return _json_node(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return _plain_decimal(value)
    return json_text(str(value))
