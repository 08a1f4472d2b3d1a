"""Imports every model so that ``Base.metadata`` knows all tables (Alembic, tests)."""

from billing_api.access.models import ApiKey, AuditEvent, Company, User, WhitelistEntry
from billing_api.billing.models import (
    BillingRun,
    ContentRevision,
    Invoice,
    InvoiceSequence,
    PriceLine,
    SyncPosition,
    TaxZone,
)
from billing_api.catalog.models import (
    PlanCategory,
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)
from billing_api.customers.models import (
    Customer,
    Subscription,
    SubscriptionAttribute,
    SubscriptionChange,
    SubscriptionResource,
    UsageRecord,
)
from billing_api.db import Base
from billing_api.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage

__all__ = [
    "ApiKey",
    "AuditEvent",
    "Base",
    "BillingRun",
    "Company",
    "ContentRevision",
    "Customer",
    "Invoice",
    "InvoiceSequence",
    "PlanCategory",
    "PlanPeriod",
    "PriceLine",
    "RatePeriod",
    "Resource",
    "ResourceRate",
    "ServicePlan",
    "Subscription",
    "SubscriptionAttribute",
    "SubscriptionChange",
    "SubscriptionResource",
    "SyncPosition",
    "TaxZone",
    "UsageRecord",
    "User",
    "Vendor",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
    "WhitelistEntry",
]
