"""Official Python client of the partner Billing API (v4): see clients/python/README.md."""

from billing_api_client.client import (
    ApiError,
    BillingClient,
    EtagCache,
    SyncPage,
    atomic_write,
    retry_after,
)
from billing_api_client.models import (
    ConsolidatedPriceLine,
    ConsolidatedTotals,
    Customer,
    DocumentError,
    Header,
    Invoice,
    InvoiceEnd,
    LineItem,
    PriceLine,
    Receiver,
    Record,
    Sender,
    Subscription,
    SubscriptionDetail,
    SubscriptionDetails,
    Totals,
)
from billing_api_client.parsing import (
    file_chunks,
    iter_invoices,
    iter_records,
    parse_subscription_details,
)
from billing_api_client.sync import SyncError, SyncResult, sync_directory
from billing_api_client.webhooks import WebhookVerificationError, verify

__all__ = [
    "ApiError", "BillingClient", "ConsolidatedPriceLine", "ConsolidatedTotals", "Customer",
    "DocumentError", "EtagCache", "Header", "Invoice", "InvoiceEnd", "LineItem", "PriceLine",
    "Receiver", "Record", "Sender", "Subscription", "SubscriptionDetail",
    "SubscriptionDetails", "SyncError", "SyncPage", "SyncResult", "Totals",
    "WebhookVerificationError",
    "atomic_write", "file_chunks", "iter_invoices", "iter_records",
    "parse_subscription_details", "retry_after", "sync_directory", "verify",
]
