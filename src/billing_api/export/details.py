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

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing_api.catalog.models import (
    PlanCategory,
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
)
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


def build_details(
    session: Session, partner_id: int, environment: str, subscription_id: int, v4: bool
) -> Node | None:
    """The document tree, or None when the subscription is not the caller's to see."""
    if subscription_id > MAX_ID:
        return None
    sub = session.scalar(
        select(Subscription).where(
            Subscription.id == subscription_id,
            Subscription.partner_id == partner_id,
            Subscription.environment == environment,
        )
    )
    if sub is None:
        return None
    plan = session.get_one(ServicePlan, sub.plan_id)
    category = session.get_one(PlanCategory, plan.category_id)
    period = session.get_one(PlanPeriod, sub.plan_period_id)
    rows = session.execute(
        select(SubscriptionResource, ResourceRate, Resource)
        .join(ResourceRate, ResourceRate.id == SubscriptionResource.resource_rate_id)
        .join(Resource, Resource.id == ResourceRate.resource_id)
        .where(SubscriptionResource.subscription_id == sub.id)
        .order_by(SubscriptionResource.id)
    ).all()
    resources = []
    for sr, rate, resource in rows:
        node: Node = [
            ("ResourceId", resource.id),
            ("ResourceName", _translations(resource.names, resource.name)),
            ("IncludedValue", rate.included_value),
            ("Amount", sr.amount),
            ("Manufacturer", resource.manufacturer),
            ("ManufacturerName", resource.manufacturer_name),
            ("MPNumber", resource.mp_number),
            ("MeasureUnit", _translations(resource.measure_units, resource.measure_unit)),
            (
                "ResourceRate",
                [
                    ("PlanRateId", rate.id),
                    ("SetupSKU", rate.setup_sku),
                    ("RecurringSKU", rate.recurring_sku),
                    ("OveruseSKU", rate.overuse_sku),
                    ("CancellationSKU", rate.cancellation_sku),
                ],
            ),
        ]
        if v4:
            rp = session.get(RatePeriod, sr.rate_period_id) if sr.rate_period_id else None
            node.append(
                (
                    "ResourceRatePeriod",
                    None
                    if rp is None
                    else [
                        ("RatePeriodId", rp.id),
                        ("Term", rp.term),
                        ("TermType", rp.term_type),
                        ("BillingPeriod", rp.billing_period),
                        ("BillingPeriodType", rp.billing_period_type),
                        ("SKU", rp.sku),
                    ],
                )
            )
        resources.append(node)
    return [
        (
            "Subscription",
            [
                ("SubscriptionId", sub.id),
                ("StartDate", _date(sub.start_date)),
                ("ExpirationDate", _date(sub.expiration_date)),
                ("Period", period.period),
                ("PeriodType", period.period_type),
                ("BillingPeriod", period.billing_period),
                ("BillingPeriodType", period.billing_period_type),
            ],
        ),
        (
            "ServicePlan",
            [
                ("PlanId", plan.id),
                ("PlanName", _translations(plan.names, plan.name)),
                ("PlanCategoryId", category.id),
                ("PlanCategoryName", category.name),
            ],
        ),
        (
            "ServicePlanPeriod",
            [
                ("PlanPeriodId", period.id),
                ("SetupSKU", period.setup_sku),
                ("SubscriptionSKU", period.subscription_sku),
                ("RenewalSKU", period.renewal_sku),
                ("TransferSKU", period.transfer_sku),
                ("CancellationSKU", period.cancellation_sku),
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
