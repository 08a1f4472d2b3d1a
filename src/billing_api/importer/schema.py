"""The rows an import file holds, one pydantic model per section, checked field by field.

Rows name each other by natural keys (a partner's name, a plan's name, a customer's number),
never by database ids. String limits come from the model columns, so they cannot drift.
Fields a row leaves out keep their current value when the row updates an existing record
(see ``given``), and take the column default when it creates one.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from billing_api.access.models import Company
from billing_api.billing.models import TaxZone
from billing_api.billing.vat_numbers import check_vat_number
from billing_api.catalog.models import (
    PlanCategory,
    PlanPeriod,
    RatePeriod,
    Resource,
    ResourceRate,
    ServicePlan,
    Vendor,
)
from billing_api.customers.models import Customer, Subscription, SubscriptionAttribute
from billing_api.importer.fields import (
    Count,
    CountryCode,
    CurrencyCode,
    Date,
    EnvironmentName,
    Iban,
    LanguageCode,
    Money,
    Month,
    Names,
    PeriodType,
    Quantity,
    SchemeCode,
    check_text,
    column_length,
    text,
)

PeriodKey = tuple[int, str, int, str]
ZERO = Decimal(0)


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def _one_line_of_text(cls, value: Any) -> Any:
        # Every free-text field: checked, and stored in normal form C (a decomposed é composed).
        if isinstance(value, str):
            return check_text(value)
        if isinstance(value, dict):
            return {check_text(k) if isinstance(k, str) else k:
                    check_text(v) if isinstance(v, str) else v for k, v in value.items()}
        return value

    def given(self, *exclude: str) -> dict[str, Any]:
        """The fields the input set, as column values (nested rows left out)."""
        return {name: getattr(self, name) for name in self.model_fields_set
                if name not in exclude and not isinstance(getattr(self, name), list)}

    @field_validator("vat_number", mode="after", check_fields=False)
    @classmethod
    def _vat_number_of_the_country(cls, value: str, info: ValidationInfo) -> str:
        # Companies' and customers' numbers: the stored form, or the reason the row is refused
        # (billing/vat_numbers.py decides). No country_code (it was wrong): that error is enough.
        country = info.data.get("country_code")
        if not value or country is None:
            return value
        checked = check_vat_number(value, country)
        if checked.problem:
            raise PydanticCustomError("vat_number", "{problem}", {"problem": checked.problem})
        return checked.number

    def columns(self, *exclude: str) -> dict[str, Any]:
        """Every field, given or default, as column values (nested rows left out)."""
        return {name: getattr(self, name) for name in type(self).model_fields
                if name not in exclude and not isinstance(getattr(self, name), list)}


class CompanyRow(Row):
    """The distributor or a partner (``kind`` comes from the section)."""

    name: str = text(Company, "name", required=True)
    address: str = text(Company, "address")
    postal_code: str = text(Company, "postal_code")
    city: str = text(Company, "city")
    country_code: CountryCode
    telephone: str = text(Company, "telephone")
    fax: str = text(Company, "fax")
    email: str = text(Company, "email")
    website: str = text(Company, "website")
    logo: str = text(Company, "logo")
    chamber_of_commerce: str = text(Company, "chamber_of_commerce")
    vat_number: str = text(Company, "vat_number")
    bank_account: str = text(Company, "bank_account")
    iban: Iban = text(Company, "iban")
    bic: str = text(Company, "bic")
    endpoint_id: str = text(Company, "endpoint_id")
    endpoint_scheme: SchemeCode = text(Company, "endpoint_scheme")
    registration_scheme: SchemeCode = text(Company, "registration_scheme")
    language_code: LanguageCode = "en"
    currency: CurrencyCode = "EUR"
    terms_of_payment_days: int = Field(30, ge=0, le=365)
    invoice_prefix: str = text(Company, "invoice_prefix")
    contact_first_name: str = text(Company, "contact_first_name")
    contact_middle_name: str = text(Company, "contact_middle_name")
    contact_last_name: str = text(Company, "contact_last_name")


class VendorRow(Row):
    name: str = text(Vendor, "name", required=True)


class ResourceRow(Row):
    name: str = text(Resource, "name", required=True)
    names: Names = Field(default_factory=dict)
    manufacturer: str = text(Resource, "manufacturer")
    manufacturer_name: str = text(Resource, "manufacturer_name")
    mp_number: str = text(Resource, "mp_number")
    measure_unit: str = text(Resource, "measure_unit")
    measure_units: Names = Field(default_factory=dict)


class PlanPeriodRow(Row):
    period: Count = 1
    period_type: PeriodType = "month"
    billing_period: Count = 1
    billing_period_type: PeriodType = "month"
    setup_sku: str = text(PlanPeriod, "setup_sku")
    subscription_sku: str = text(PlanPeriod, "subscription_sku")
    renewal_sku: str = text(PlanPeriod, "renewal_sku")
    transfer_sku: str = text(PlanPeriod, "transfer_sku")
    cancellation_sku: str = text(PlanPeriod, "cancellation_sku")

    @property
    def key(self) -> PeriodKey:
        return (self.period, self.period_type, self.billing_period, self.billing_period_type)


class RatePeriodRow(Row):
    sku: str = text(RatePeriod, "sku", required=True)
    term: Count = 1
    term_type: PeriodType = "year"
    billing_period: Count = 1
    billing_period_type: PeriodType = "month"
    recurring_cost: Money
    recurring_price: Money


class RateRow(Row):
    resource: str = text(Resource, "name", required=True)
    included_value: Quantity = ZERO
    recurring_cost: Money = ZERO
    recurring_price: Money = ZERO
    overuse_cost: Money = ZERO
    overuse_price: Money = ZERO
    setup_cost: Money = ZERO
    setup_price: Money = ZERO
    cancellation_cost: Money = ZERO
    cancellation_price: Money = ZERO
    setup_sku: str = text(ResourceRate, "setup_sku")
    recurring_sku: str = text(ResourceRate, "recurring_sku")
    overuse_sku: str = text(ResourceRate, "overuse_sku")
    cancellation_sku: str = text(ResourceRate, "cancellation_sku")
    rate_periods: list[RatePeriodRow] = Field(default_factory=list)


class PlanRow(Row):
    name: str = text(ServicePlan, "name", required=True)
    vendor: str = text(Vendor, "name", required=True)
    category: str = text(PlanCategory, "name", required=True)
    names: Names = Field(default_factory=dict)
    is_telecom: bool = False
    billing_model: int = Field(1, ge=0, le=99)
    periods: list[PlanPeriodRow] = Field(default_factory=list)
    rates: list[RateRow] = Field(default_factory=list)


class CustomerRow(Row):
    partner: str = text(Company, "name", required=True)
    environment: EnvironmentName
    customer_number: str = text(Customer, "customer_number", required=True)
    company_name: str = text(Customer, "company_name", required=True)
    country_code: CountryCode
    tax_zone: str | None = Field(None, min_length=1, max_length=column_length(TaxZone, "code"))
    cost_center: str = text(Customer, "cost_center")
    address: str = text(Customer, "address")
    postal_code: str = text(Customer, "postal_code")
    city: str = text(Customer, "city")
    vat_number: str = text(Customer, "vat_number")
    endpoint_id: str = text(Customer, "endpoint_id")
    endpoint_scheme: SchemeCode = text(Customer, "endpoint_scheme")
    registration_number: str = text(Customer, "registration_number")
    registration_scheme: SchemeCode = text(Customer, "registration_scheme")
    iban: Iban = text(Customer, "iban")
    bic: str = text(Customer, "bic")
    contact_first_name: str = text(Customer, "contact_first_name")
    contact_middle_name: str = text(Customer, "contact_middle_name")
    contact_last_name: str = text(Customer, "contact_last_name")
    email: str = text(Customer, "email")
    telephone: str = text(Customer, "telephone")
    fax: str = text(Customer, "fax")
    language_code: LanguageCode = "en"
    is_partner_itself: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.partner, self.environment, self.customer_number)


class SubscriptionResourceRow(Row):
    resource: str = text(Resource, "name", required=True)
    amount: Quantity
    rate_period: str | None = Field(None, min_length=1,
                                    max_length=column_length(RatePeriod, "sku"))
    sales_price: Money | None = None
    sales_discount: Money = ZERO

    @field_validator("sales_discount")
    @classmethod
    def _discount_within_price(cls, value: Decimal, info: ValidationInfo) -> Decimal:
        price = info.data.get("sales_price")
        if price is not None and value > price:
            raise PydanticCustomError("discount", "is larger than sales_price")
        return value


class AttributeRow(Row):
    attribute: str = text(SubscriptionAttribute, "attribute", required=True)
    value: str = text(SubscriptionAttribute, "value")
    description: str = text(SubscriptionAttribute, "description")
    noshow: bool = False


class SubscriptionRow(Row):
    partner: str = text(Company, "name", required=True)
    environment: EnvironmentName
    customer_number: str = text(Customer, "customer_number", required=True)
    plan: str = text(ServicePlan, "name", required=True)
    name: str = text(Subscription, "name", required=True)
    start_date: Date
    expiration_date: Date | None = None
    cancelled_on: Date | None = None
    po_number: str = text(Subscription, "po_number")
    # Which of the plan's periods; only needed when the plan has more than one.
    period: Count | None = None
    period_type: PeriodType | None = None
    billing_period: Count | None = None
    billing_period_type: PeriodType | None = None
    resources: list[SubscriptionResourceRow] = Field(min_length=1)
    attributes: list[AttributeRow] = Field(default_factory=list)

    @field_validator("expiration_date", "cancelled_on")
    @classmethod
    def _not_before_start(cls, value: Any, info: ValidationInfo) -> Any:
        start = info.data.get("start_date")
        if value is not None and start is not None and value < start:
            raise PydanticCustomError("date_order", "is before start_date {start}",
                                      {"start": start.isoformat()})
        return value

    @property
    def customer_key(self) -> tuple[str, str, str]:
        return (self.partner, self.environment, self.customer_number)

    @property
    def key(self) -> tuple[str, str, str, str, str]:
        return (*self.customer_key, self.name, self.start_date.isoformat())


class UsageRow(Row):
    partner: str = text(Company, "name", required=True)
    environment: EnvironmentName
    customer_number: str = text(Customer, "customer_number", required=True)
    subscription: str = text(Subscription, "name", required=True)
    subscription_start_date: Date | None = None
    resource: str = text(Resource, "name", required=True)
    period: Month
    quantity: Quantity

    @property
    def customer_key(self) -> tuple[str, str, str]:
        return (self.partner, self.environment, self.customer_number)


# Section name → row model, in the order the import writes them.
SECTIONS: dict[str, type[Row]] = {
    "distributor": CompanyRow,
    "partners": CompanyRow,
    "vendors": VendorRow,
    "resources": ResourceRow,
    "service_plans": PlanRow,
    "customers": CustomerRow,
    "subscriptions": SubscriptionRow,
    "usage": UsageRow,
}
# Sections a CSV file can hold (flat rows; ``names.en``-style columns fill the name maps).
CSV_TABLES = ("partners", "vendors", "resources", "customers", "usage")
# The natural key of each section's rows, for duplicate checks and error messages.
KEYS: dict[str, tuple[str, ...]] = {
    "distributor": ("name",),
    "partners": ("name",),
    "vendors": ("name",),
    "resources": ("name",),
    "service_plans": ("name",),
    "customers": ("partner", "environment", "customer_number"),
    "subscriptions": ("partner", "environment", "customer_number", "name", "start_date"),
    "usage": ("partner", "environment", "customer_number", "subscription",
              "subscription_start_date", "resource", "period"),
}
