"""The shape of each document per API version: which fields, in which order, of what kind.

A version is data: v2 and v3 share one shape, v4 adds fields. The writers turn these lists into
XML (contract order) and JSON (keys sorted ignoring case) without knowing any field by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from billing_api.export import source as s


class Kind(Enum):
    TEXT = "text"
    INT = "int"  # integer, or empty when NULL
    MONEY = "money"  # integer 1/10,000 units, at least two decimals
    PLAIN = "plain"  # integer 1/10,000 units, no trailing zeros
    DATE = "date"  # YYYYMMDD text
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    index: int
    kind: Kind


T, N, M, P, D = Kind.TEXT, Kind.INT, Kind.MONEY, Kind.PLAIN, Kind.DATE


def _fields(*spec: tuple[str, int, Kind]) -> tuple[Field, ...]:
    return tuple(Field(name, index, kind) for name, index, kind in spec)


SUBSCRIPTION_V2 = _fields(
    ("SubscriptionID", s.SUBSCRIPTION_ID, N),
    ("SubscriptionName", s.SUBSCRIPTION_NAME, T),
    ("BillingModel", s.BILLING_MODEL, N),
    ("PlanID", s.PLAN_ID, N),
    ("PlanName", s.PLAN_NAME, T),
    ("PlanCategoryName", s.PLAN_CATEGORY, T),
    ("StartDate", s.SUBSCRIPTION_START, D),
)
SUBSCRIPTION_V4 = (*SUBSCRIPTION_V2, Field("SubscriptionPONumber", s.SUBSCRIPTION_PO, T))

_LINE_HEAD = _fields(
    ("LineId", s.LINE_ID, N),
    ("UID", s.UID, T),
    ("Description", s.DESCRIPTION, T),
    ("SKU", s.SKU, T),
    ("Quantity", s.QUANTITY, P),
    ("QuantityType", s.QUANTITY_TYPE, T),
)
_LINE_PRICES = _fields(
    ("UnitPrice", s.UNIT_PRICE, M),
    ("Discount", s.DISCOUNT, M),
    ("ExtendedPrice", s.EXTENDED_PRICE, M),
)
_CONSOLIDATED_PRICES = _fields(
    ("PurchasePrice", s.UNIT_PRICE, M),
    ("PurchaseDiscount", s.DISCOUNT, M),
    ("PurchaseExtendedPrice", s.EXTENDED_PRICE, M),
    ("SalesPrice", s.SALES_PRICE, M),
    ("SalesDiscount", s.SALES_DISCOUNT, M),
    ("SalesExtendedPrice", s.SALES_EXTENDED, M),
)
_LINE_TAIL = _fields(
    ("VAT", s.VAT, M),
    ("TaxZoneID", s.TAX_ZONE_ID, N),
    ("TaxPercentage", s.TAX_PERCENTAGE, P),
    ("StartDate", s.START_DATE, D),
    ("EndDate", s.END_DATE, D),
    ("Duration", s.DURATION, P),
    ("DurationType", s.DURATION_TYPE, T),
    ("ConsumerCompanyName", s.CONSUMER_NAME, T),
    ("ConsumerCompanyNumber", s.CONSUMER_NUMBER, T),
)
_LINE_V4 = _fields(
    ("RatePeriodID", s.RATE_PERIOD_ID, N),
    ("SubPONumber", s.SUB_PO_NUMBER, T),
    ("ChargeType", s.CHARGE_TYPE, T),
    ("BillingFrequency", s.BILLING_FREQUENCY, T),
    ("InvoiceRowHash", s.ROW_HASH, T),
)

HEADER = (
    "InvoiceID",
    "Description",
    "Date",
    "ExpirationDate",
    "Currency",
    "TermsOfPaymentDays",
    "Type",
    "TypeIdentifier",
    "LanguageCode",
    "Language",
)
SENDER = (
    "AccountID",
    "CompanyName",
    "Address",
    "PostalCode",
    "City",
    "CountryCode",
    "Country",
    "Telephone",
    "Fax",
    "ChamberOfCommerce",
    "BankAccount",
    "IBAN",
    "BIC",
    "VATNumber",
    "Website",
    "Logo",
)
RECEIVER = (
    "AccountID",
    "CustomerNumber",
    "CompanyName",
    "VATNumber",
    "ContactFirstName",
    "ContactMiddleName",
    "ContactLastName",
    "Address",
    "Zip",
    "City",
    "CountryCode",
    "Country",
    "Telephone",
    "Fax",
    "Email",
    "Type",
)
TOTALS = ("TotalExcludingVAT", "TotalVAT", "TotalIncludingVAT")
DETAIL = ("Attribute", "AttributeValue", "AttributeDescription", "noshow")
# Header and party fields that are numbers (the rest are text).
INTEGER_HEADER_FIELDS = frozenset({"TermsOfPaymentDays", "TypeIdentifier", "AccountID"})


def _positional(
    names: tuple[str, ...], kinds: dict[str, Kind] | None = None, default: Kind = T
) -> tuple[Field, ...]:
    """Fields over a tuple of values given in ``names`` order (header, parties, totals)."""
    kinds = kinds or {}
    return tuple(
        Field(name, i, kinds.get(name, N if name in INTEGER_HEADER_FIELDS else default))
        for i, name in enumerate(names)
    )


HEADER_FIELDS = _positional(HEADER, {"Date": D, "ExpirationDate": D})
SENDER_FIELDS = _positional(SENDER)
RECEIVER_FIELDS = _positional(RECEIVER)
TOTAL_FIELDS = _positional(TOTALS, default=M)
DETAIL_FIELDS = _positional(DETAIL, {"noshow": Kind.BOOL})


# Compared and hashed by identity: ``invoice_shape`` hands out one object per document and
# version, and hashing every field list on each request's cache look-ups cost 36 µs.
@dataclass(frozen=True, slots=True, eq=False)
class DocumentShape:
    """Everything a writer needs to know about one document of one version."""

    endpoint: str
    kind: str  # which invoices: purchase or customer
    xml_root: str
    xml_invoices_wrapper: str | None  # consolidated wraps invoices in <Invoices>
    customer: tuple[Field, ...]
    subscription: tuple[Field, ...]
    subscription_details: bool
    line: tuple[Field, ...]
    consolidated: bool


def _customer(cost_center_name: str) -> tuple[Field, ...]:
    return _fields(
        ("AccountID", s.CUSTOMER_ID, N),
        ("CustomerNumber", s.CUSTOMER_NUMBER, T),
        ("CompanyName", s.CUSTOMER_NAME, T),
        (cost_center_name, s.COST_CENTER, T),
    )


@lru_cache(maxsize=16)
def invoice_shape(endpoint: str, v4: bool) -> DocumentShape:
    """The shape of ``invoices``, ``customerinvoices`` or ``consolidatedinvoices``."""
    consolidated = endpoint == "consolidatedinvoices"
    prices = _CONSOLIDATED_PRICES if consolidated else _LINE_PRICES
    return DocumentShape(
        endpoint=endpoint,
        kind="customer" if endpoint == "customerinvoices" else "purchase",
        xml_root="ConsolidatedInvoice" if consolidated else "InvoiceResponse",
        xml_invoices_wrapper="Invoices" if consolidated else None,
        customer=_customer("CustomerCostCenter" if consolidated else "CostCenter"),
        subscription=SUBSCRIPTION_V4 if v4 else SUBSCRIPTION_V2,
        subscription_details=v4,
        line=(*_LINE_HEAD, *prices, *_LINE_TAIL, *(_LINE_V4 if v4 else ())),
        consolidated=consolidated,
    )
