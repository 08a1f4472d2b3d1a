"""Typed models of the v4 documents (docs/documents.md; XSDs at /api/schemas/v4/*.xsd).

Money and quantities are ``Decimal``, dates ``datetime.date``, ids ``int``; a field the XSD
lets be empty is ``… | None``. Attribute names are the document's in snake case; each
field's ``metadata["doc"]`` is its name in the document. ``build`` makes a model from the
raw values of one record, as XML text or as the JSON values ijson yields (``Decimal``, never
float).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, TypeVar


class DocumentError(ValueError):
    """A document that does not have the documented shape."""


def doc(name: str) -> Any:
    """A dataclass field named ``name`` in the document."""
    return field(metadata={"doc": name})


# --- the records of invoices, customerinvoices and consolidatedinvoices ---------------------


@dataclass(frozen=True, slots=True)
class Header:
    invoice_id: str = doc("InvoiceID")
    description: str = doc("Description")
    date: dt.date = doc("Date")
    expiration_date: dt.date = doc("ExpirationDate")
    currency: str = doc("Currency")
    terms_of_payment_days: int = doc("TermsOfPaymentDays")
    type: str = doc("Type")  # Invoice or Credit
    type_identifier: int = doc("TypeIdentifier")  # 1 Invoice, 2 Credit
    language_code: str = doc("LanguageCode")
    language: str = doc("Language")


@dataclass(frozen=True, slots=True)
class Sender:
    account_id: int = doc("AccountID")
    company_name: str = doc("CompanyName")
    address: str = doc("Address")
    postal_code: str = doc("PostalCode")
    city: str = doc("City")
    country_code: str = doc("CountryCode")
    country: str = doc("Country")
    telephone: str = doc("Telephone")
    fax: str = doc("Fax")
    chamber_of_commerce: str = doc("ChamberOfCommerce")
    bank_account: str = doc("BankAccount")
    iban: str = doc("IBAN")
    bic: str = doc("BIC")
    vat_number: str = doc("VATNumber")
    website: str = doc("Website")
    logo: str = doc("Logo")


@dataclass(frozen=True, slots=True)
class Receiver:
    account_id: int = doc("AccountID")
    customer_number: str = doc("CustomerNumber")
    company_name: str = doc("CompanyName")
    vat_number: str = doc("VATNumber")
    contact_first_name: str = doc("ContactFirstName")
    contact_middle_name: str = doc("ContactMiddleName")
    contact_last_name: str = doc("ContactLastName")
    address: str = doc("Address")
    zip: str = doc("Zip")
    city: str = doc("City")
    country_code: str = doc("CountryCode")
    country: str = doc("Country")
    telephone: str = doc("Telephone")
    fax: str = doc("Fax")
    email: str = doc("Email")
    type: str = doc("Type")  # Reseller or Customer


@dataclass(frozen=True, slots=True)
class Totals:
    total_excluding_vat: Decimal = doc("TotalExcludingVAT")
    total_vat: Decimal = doc("TotalVAT")
    total_including_vat: Decimal = doc("TotalIncludingVAT")


@dataclass(frozen=True, slots=True)
class ConsolidatedTotals:
    purchases: Totals = doc("TotalPurchases")
    sales: Totals = doc("TotalSales")


@dataclass(frozen=True, slots=True)
class SubscriptionDetail:
    attribute: str = doc("Attribute")
    attribute_value: str = doc("AttributeValue")
    attribute_description: str = doc("AttributeDescription")
    noshow: bool = doc("noshow")


@dataclass(frozen=True, slots=True)
class _LineFields:
    line_id: int = doc("LineId")
    uid: str = doc("UID")
    description: str = doc("Description")
    sku: str = doc("SKU")
    quantity: Decimal = doc("Quantity")
    quantity_type: str = doc("QuantityType")
    vat: Decimal = doc("VAT")
    tax_zone_id: int = doc("TaxZoneID")
    tax_percentage: Decimal = doc("TaxPercentage")
    start_date: dt.date = doc("StartDate")
    end_date: dt.date = doc("EndDate")
    duration: Decimal = doc("Duration")
    duration_type: str = doc("DurationType")
    consumer_company_name: str = doc("ConsumerCompanyName")
    consumer_company_number: str = doc("ConsumerCompanyNumber")
    rate_period_id: int | None = doc("RatePeriodID")
    sub_po_number: str = doc("SubPONumber")
    charge_type: str = doc("ChargeType")
    billing_frequency: str = doc("BillingFrequency")
    invoice_row_hash: str = doc("InvoiceRowHash")


@dataclass(frozen=True, slots=True)
class PriceLine(_LineFields):
    """A line of ``invoices`` or ``customerinvoices``."""

    unit_price: Decimal = doc("UnitPrice")
    discount: Decimal = doc("Discount")
    extended_price: Decimal = doc("ExtendedPrice")


@dataclass(frozen=True, slots=True)
class ConsolidatedPriceLine(_LineFields):
    """A line of ``consolidatedinvoices``: the purchase line with its customer line's sales
    figures (None for the partner's own use, which has no customer line)."""

    purchase_price: Decimal = doc("PurchasePrice")
    purchase_discount: Decimal = doc("PurchaseDiscount")
    purchase_extended_price: Decimal = doc("PurchaseExtendedPrice")
    sales_price: Decimal | None = doc("SalesPrice")
    sales_discount: Decimal | None = doc("SalesDiscount")
    sales_extended_price: Decimal | None = doc("SalesExtendedPrice")


Line = PriceLine | ConsolidatedPriceLine


@dataclass(frozen=True, slots=True)
class Subscription:
    """A subscription on an invoice. ``lines`` is filled by ``iter_invoices`` only; the
    streaming ``iter_records`` leaves it empty and hands out each line on its own."""

    subscription_id: int = doc("SubscriptionID")
    subscription_name: str = doc("SubscriptionName")
    billing_model: int = doc("BillingModel")
    plan_id: int = doc("PlanID")
    plan_name: str = doc("PlanName")
    plan_category_name: str = doc("PlanCategoryName")
    start_date: dt.date = doc("StartDate")
    subscription_po_number: str = doc("SubscriptionPONumber")
    details: list[SubscriptionDetail] = doc("SubscriptionDetails")
    lines: list[Line] = field(default_factory=list, metadata={"doc": "PriceLines"})


@dataclass(frozen=True, slots=True)
class Customer:
    """A customer on an invoice (``CustomerCostCenter`` on consolidated invoices is
    ``cost_center`` too). ``subscriptions``: as ``Subscription.lines``."""

    account_id: int = doc("AccountID")
    customer_number: str = doc("CustomerNumber")
    company_name: str = doc("CompanyName")
    cost_center: str = doc("CostCenter")
    subscriptions: list[Subscription] = field(default_factory=list,
                                              metadata={"doc": "Subscriptions"})


@dataclass(frozen=True, slots=True)
class Invoice:
    header: Header
    sender: Sender
    receiver: Receiver
    customers: list[Customer]
    totals: Totals | ConsolidatedTotals

    def lines(self) -> list[Line]:
        return [line for c in self.customers for s in c.subscriptions for line in s.lines]


@dataclass(frozen=True, slots=True)
class LineItem:
    """One price line as the document streams it, with its customer and subscription (whose
    lists stay empty). ``invoice`` counts the invoices of the document from 0."""

    invoice: int
    customer: Customer
    subscription: Subscription
    line: Line


@dataclass(frozen=True, slots=True)
class InvoiceEnd:
    """Comes after the last ``LineItem`` of an invoice: its header, parties and totals (JSON
    sorts them after the customers, so a stream knows them only at the end)."""

    invoice: int
    header: Header
    sender: Sender
    receiver: Receiver
    totals: Totals | ConsolidatedTotals


Record = LineItem | InvoiceEnd


# --- subscriptiondetails ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Translation:
    value: str = doc("Value")
    name: str = doc("Name")  # language code


@dataclass(frozen=True, slots=True)
class DetailsSubscription:
    subscription_id: int = doc("SubscriptionId")
    start_date: dt.date = doc("StartDate")
    expiration_date: dt.date | None = doc("ExpirationDate")
    period: int = doc("Period")
    period_type: str = doc("PeriodType")
    billing_period: int = doc("BillingPeriod")
    billing_period_type: str = doc("BillingPeriodType")


@dataclass(frozen=True, slots=True)
class ServicePlan:
    plan_id: int = doc("PlanId")
    plan_name: list[Translation] = doc("PlanName")
    plan_category_id: int = doc("PlanCategoryId")
    plan_category_name: str = doc("PlanCategoryName")


@dataclass(frozen=True, slots=True)
class ServicePlanPeriod:
    plan_period_id: int = doc("PlanPeriodId")
    setup_sku: str = doc("SetupSKU")
    subscription_sku: str = doc("SubscriptionSKU")
    renewal_sku: str = doc("RenewalSKU")
    transfer_sku: str = doc("TransferSKU")
    cancellation_sku: str = doc("CancellationSKU")


@dataclass(frozen=True, slots=True)
class ResourceRate:
    plan_rate_id: int = doc("PlanRateId")
    setup_sku: str = doc("SetupSKU")
    recurring_sku: str = doc("RecurringSKU")
    overuse_sku: str = doc("OveruseSKU")
    cancellation_sku: str = doc("CancellationSKU")


@dataclass(frozen=True, slots=True)
class ResourceRatePeriod:
    rate_period_id: int = doc("RatePeriodId")
    term: int = doc("Term")
    term_type: str = doc("TermType")
    billing_period: int = doc("BillingPeriod")
    billing_period_type: str = doc("BillingPeriodType")
    sku: str = doc("SKU")


@dataclass(frozen=True, slots=True)
class Resource:
    resource_id: int = doc("ResourceId")
    resource_name: list[Translation] = doc("ResourceName")
    included_value: Decimal = doc("IncludedValue")
    amount: Decimal = doc("Amount")
    manufacturer: str = doc("Manufacturer")
    manufacturer_name: str = doc("ManufacturerName")
    mp_number: str = doc("MPNumber")
    measure_unit: list[Translation] = doc("MeasureUnit")
    resource_rate: ResourceRate = doc("ResourceRate")
    resource_rate_period: ResourceRatePeriod | None = doc("ResourceRatePeriod")


@dataclass(frozen=True, slots=True)
class SubscriptionDetails:
    """The ``subscriptiondetails`` document."""

    subscription: DetailsSubscription = doc("Subscription")
    service_plan: ServicePlan = doc("ServicePlan")
    service_plan_period: ServicePlanPeriod = doc("ServicePlanPeriod")
    resources: list[Resource] = doc("Resources")


# --- from raw values to models ----------------------------------------------------------------

Converter = Callable[[Any], Any]
T = TypeVar("T")


def _empty(value: Any) -> bool:
    return value is None or value == ""


def _required(name: str, convert: Callable[[Any], T]) -> Callable[[Any], T]:
    def check(value: Any) -> T:
        if _empty(value):
            raise DocumentError(f"{name} is empty")
        try:
            return convert(value)
        except (ValueError, InvalidOperation, TypeError):
            what = convert.__name__.strip("_")
            raise DocumentError(f"{name}={value!r} is not a valid {what}") from None
    return check


def _optional(name: str, convert: Callable[[Any], T]) -> Callable[[Any], T | None]:
    inner = _required(name, convert)
    return lambda value: None if _empty(value) else inner(value)


def _decimal(value: Any) -> Decimal:
    # ijson gives int for whole JSON numbers and Decimal otherwise; XML gives text. A float
    # would already have lost digits: refuse it rather than hide that.
    if isinstance(value, float):
        raise TypeError("a binary float cannot be an exact amount")
    return value if isinstance(value, Decimal) else Decimal(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("not an integer")
    return int(value)


def _date(value: Any) -> dt.date:
    text = str(value)
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        raise ValueError("not YYYYMMDD")
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise ValueError("not true or false")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


_SCALARS: dict[Any, Callable[[Any], Any]] = {
    str: _text, int: _int, Decimal: _decimal, dt.date: _date, bool: _bool,
}


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def scalar_fields(cls: type) -> tuple[tuple[str, str, Converter], ...]:
    """(attribute, document name, converter) of ``cls``'s scalar fields."""
    result: list[tuple[str, str, Converter]] = []
    for f in dataclasses.fields(cls):
        hint = _hints(cls)[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = typing.get_origin(hint) is types.UnionType and len(args) == 1
        base = args[0] if optional else hint
        if base not in _SCALARS:
            continue
        name = f.metadata["doc"]
        convert = _SCALARS[base]
        if convert is _text:
            result.append((f.name, name, convert))
        else:
            result.append((f.name, name, (_optional if optional else _required)(name, convert)))
    return tuple(result)



def build(cls: type[T], get: Callable[[str], Any], **others: Any) -> T:
    """``cls`` from the raw scalar values of one record (``get(name)``, None when absent);
    ``others`` give the rest. Raises ``DocumentError`` naming the first bad field."""
    kind: Any = cls
    try:
        made: T = _fast_builder(kind)(get, others)
        return made
    except (ValueError, TypeError, ArithmeticError):
        pass  # find out which field, with the checking converters
    values = {attr: convert(get(name)) for attr, name, convert in scalar_fields(kind)}
    return cls(**values, **others)


_DATES: dict[Any, dt.date] = {}


def _fast_date(value: Any) -> dt.date:
    found = _DATES.get(value)
    if found is None:
        found = _date(value)
        if len(_DATES) < 10_000:  # a document has few distinct dates
            _DATES[value] = found
    return found


_FAST: dict[Any, str] = {
    str: '(get({name!r}) or "")',
    int: "int(get({name!r}))",
    Decimal: "Decimal(get({name!r}))",
    dt.date: "_fast_date(get({name!r}))",
}


@cache
def _fast_builder(cls: type) -> Callable[[Callable[[str], Any], dict[str, Any]], Any]:
    """One function per model that converts its fields without a loop: a million price
    lines spend most of their parse time here. Anything odd raises, and ``build`` then
    finds the field with the checking converters."""
    parts = []
    for attr, name, _ in scalar_fields(cls):
        hint = _hints(cls)[attr]
        expression = _FAST.get(hint)
        if expression is None:  # optional values and booleans: the checking converter
            parts.append(f"{attr}=_convert_{attr}(get({name!r}))")
        else:
            parts.append(f"{attr}=" + expression.format(name=name))
    source = f"def make(get, others):\n    return cls({''.join(p + ', ' for p in parts)}**others)\n"
    scope: dict[str, Any] = {"cls": cls, "Decimal": Decimal, "_fast_date": _fast_date}
    scope.update({f"_convert_{attr}": convert for attr, _, convert in scalar_fields(cls)})
    exec(source, scope)  # noqa: S102  (the source is built from our own field names)
    made: Callable[[Callable[[str], Any], dict[str, Any]], Any] = scope["make"]
    return made


def nested(cls: type[T], raw: Any, children: Callable[[Any, str], Any],
           items: Callable[[Any], list[Any]]) -> T:
    """``cls`` from a nested record (subscriptiondetails): ``children(raw, name)`` is a
    field's raw value, ``items(raw)`` a list's entries (XML elements or JSON values)."""
    values: dict[str, Any] = {}
    kind: Any = cls
    for f in dataclasses.fields(kind):
        hint = _hints(kind)[f.name]
        name = f.metadata["doc"]
        value = children(raw, name)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        base = args[0] if typing.get_origin(hint) is types.UnionType and len(args) == 1 else hint
        if typing.get_origin(base) is list:
            (item,) = typing.get_args(base)
            values[f.name] = [nested(item, entry, children, items) for entry in items(value)]
        elif dataclasses.is_dataclass(base):
            is_empty = value is None or (not isinstance(value, dict) and len(value) == 0)
            if is_empty and base is not hint:
                values[f.name] = None
            elif value is None:
                raise DocumentError(f"{name} is missing")
            else:
                values[f.name] = nested(typing.cast(type, base), value, children, items)
    return build(cls, lambda name: children(raw, name), **values)
