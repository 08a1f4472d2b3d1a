"""Writing a checked import. The catalog goes through the ORM (few rows, updated in place);
customers, subscriptions and usage go in chunk by chunk with bulk Core inserts, since they can
be many.

Nothing here validates: ``checks`` has made sure every reference of the rows it did not skip
resolves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import insert
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.vat import home_zone_code
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
    SubscriptionResource,
    UsageRecord,
)
from billing_api.importer.database import Existing, chunks, period_key
from billing_api.importer.reader import Batch, Parsed
from billing_api.importer.resolution import Resolution
from billing_api.importer.schema import (
    CompanyRow,
    CustomerRow,
    PlanRow,
    ResourceRow,
    Row,
    SubscriptionRow,
    VendorRow,
)

if TYPE_CHECKING:
    from billing_api.importer.checks import Checker

R = TypeVar("R", bound=Row)

BATCH = 5000


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


class Writer:
    """Writes the catalog once, then customers, subscriptions and usage chunk by chunk; leaves
    out the rows the checker skipped. ``counts`` adds up over the whole import."""

    def __init__(self, session: Session, checker: Checker) -> None:
        self.session, self.checker = session, checker
        self.catalog = checker.catalog
        self.counts: dict[str, Counts] = defaultdict(Counts)
        self._resource_names: dict[int, str] = {}
        self._rates: dict[str, dict[str, ResourceRate]] = {}
        self.batch = Batch()
        self.existing = Existing(self.catalog)
        self.resolution = Resolution(self.existing)

    def _use(self, batch: Batch, resolution: Resolution | None = None) -> None:
        self.batch = batch
        if resolution is not None:
            self.resolution, self.existing = resolution, resolution.existing

    def _rows(self, section: str, model: type[R]) -> list[Parsed[R]]:
        return [p for p in self.batch.section(section, model)
                if p.source not in self.checker.skipped]

    def write_catalog(self, batch: Batch) -> None:
        self._use(batch)
        self.companies()
        self.vendors_and_resources()
        self.session.flush()
        self.plans()
        self.session.flush()
        self.catalog.written()

    def write_customers(self, batch: Batch, resolution: Resolution) -> None:
        self._use(batch, resolution)
        self.customers()
        self.session.flush()

    def write_subscriptions(self, batch: Batch, resolution: Resolution) -> None:
        self._use(batch, resolution)
        self.subscriptions()

    def write_usage(self, batch: Batch, resolution: Resolution) -> None:
        self._use(batch, resolution)
        self.usage()
        self.session.flush()

    def created(self, table: str, obj: Any = None, count: int = 1) -> None:
        if obj is not None:
            self.session.add(obj)
        self.counts[table].created += count

    def apply(self, table: str, obj: Any, values: dict[str, Any]) -> None:
        """Set the values that differ; count the row as updated or unchanged."""
        changed = {name: v for name, v in values.items() if getattr(obj, name) != v}
        for name, value in changed.items():
            setattr(obj, name, value)
        if changed:
            self.counts[table].updated += 1
        else:
            self.counts[table].unchanged += 1

    def companies(self) -> None:
        companies = self.catalog.companies
        for parsed in self._rows("distributor", CompanyRow)[:1]:
            company = self.catalog.distributor
            if company is None:
                company = Company(kind="distributor", **parsed.row.columns())
                self.created("companies", company)
            else:
                companies.pop(company.name, None)
                self.apply("companies", company, parsed.row.given())
            companies[company.name] = company
        for parsed in self._rows("partners", CompanyRow):
            found = companies.get(parsed.row.name)
            if found is None:
                companies[parsed.row.name] = Company(kind="partner", **parsed.row.columns())
                self.created("companies", companies[parsed.row.name])
            else:
                self.apply("companies", found, parsed.row.given())

    def vendors_and_resources(self) -> None:
        vendors, categories = self.catalog.vendors, self.catalog.categories
        for vendor in self._rows("vendors", VendorRow):
            if vendor.row.name in vendors:
                self.counts["vendors"].unchanged += 1
            else:
                vendors[vendor.row.name] = Vendor(name=vendor.row.name)
                self.created("vendors", vendors[vendor.row.name])
        for plan in self.batch.section("service_plans", PlanRow):
            if plan.row.category not in categories:
                categories[plan.row.category] = PlanCategory(name=plan.row.category)
                self.created("plan_categories", categories[plan.row.category])
        for parsed in self._rows("resources", ResourceRow):
            found = self.catalog.resources.get(parsed.row.name)
            if found:
                self.apply("resources", found[0], parsed.row.given())
            else:
                self.catalog.resources[parsed.row.name] = [Resource(**parsed.row.columns())]
                self.created("resources", self.catalog.resources[parsed.row.name][0])

    def plans(self) -> None:
        for parsed in self._rows("service_plans", PlanRow):
            row = parsed.row
            values = {"vendor_id": self.catalog.vendors[row.vendor].id,
                      "category_id": self.catalog.categories[row.category].id}
            found = self.catalog.plans.get(row.name)
            if found:
                plan = found[0]
                self.apply("service_plans", plan, row.given("vendor", "category") | values)
            else:
                plan = ServicePlan(**row.columns("vendor", "category"), **values)
                self.catalog.plans[row.name] = [plan]
                self.created("service_plans", plan)
            periods = {period_key(p): p for p in plan.periods}
            for period_row in row.periods:
                period = periods.get(period_row.key)
                if period is None:
                    plan.periods.append(PlanPeriod(**period_row.columns()))
                    self.created("plan_periods")
                else:
                    self.apply("plan_periods", period, period_row.given())
            rates = {r.resource_id: r for r in plan.rates}
            for rate_row in row.rates:
                resource_id = self.catalog.resources[rate_row.resource][0].id
                rate = rates.get(resource_id)
                if rate is None:
                    rate = ResourceRate(resource_id=resource_id, **rate_row.columns("resource"))
                    plan.rates.append(rate)
                    self.created("resource_rates")
                else:
                    self.apply("resource_rates", rate, rate_row.given("resource"))
                by_sku = {rp.sku: rp for rp in rate.rate_periods}
                for rate_period_row in rate_row.rate_periods:
                    found_period = by_sku.get(rate_period_row.sku)
                    if found_period is None:
                        rate.rate_periods.append(RatePeriod(**rate_period_row.columns()))
                        self.created("rate_periods")
                    else:
                        self.apply("rate_periods", found_period, rate_period_row.given())

    def customers(self) -> None:
        zones, companies = self.catalog.zones, self.catalog.companies
        origins = self.checker.origins
        new: list[dict[str, Any]] = []
        sources = []
        for parsed in self._rows("customers", CustomerRow):
            row = parsed.row
            zone_id = zones[row.tax_zone or home_zone_code(row.country_code)]
            customer = self.existing.customers.get(row.key)
            if customer is None:
                new.append(row.columns("partner", "tax_zone")
                           | {"partner_id": companies[row.partner].id, "tax_zone_id": zone_id})
                sources.append(parsed.source)
            else:
                self.apply("customers", customer,
                           row.given("partner", "tax_zone") | {"tax_zone_id": zone_id})
                origins.add("customers", customer.id, parsed.source)
        ids = _insert_returning_ids(self.session, Customer, new)
        for id_, source in zip(ids, sources, strict=True):
            origins.add("customers", id_, source)
        self.created("customers", count=len(new))

    def subscriptions(self) -> None:
        """Insert the new subscriptions of the chunk, their resources and attributes."""
        companies = self.catalog.companies
        origins = self.checker.origins
        subs = self.batch.section("subscriptions", SubscriptionRow)
        customer_ids = {key: c.id for key, c in self.existing.customers.items()}
        unchanged = self.resolution.unchanged_subscriptions
        for index, sub_id in unchanged.items():
            origins.add("subscriptions", sub_id, subs[index].source)
        self.counts["subscriptions"].unchanged += len(unchanged)
        new = [i for i in self.resolution.periods if i not in unchanged
               and subs[i].source not in self.checker.skipped]
        rows = []
        for index in new:
            row = subs[index].row
            plan = self.catalog.plans[row.plan][0]
            wanted = self.resolution.periods[index]
            rows.append({
                "partner_id": companies[row.partner].id, "environment": row.environment,
                "customer_id": customer_ids[row.customer_key], "plan_id": plan.id,
                "plan_period_id": next(p.id for p in plan.periods if period_key(p) == wanted),
                "name": row.name, "start_date": row.start_date,
                "expiration_date": row.expiration_date, "cancelled_on": row.cancelled_on,
                "status": "active" if row.cancelled_on is None else "cancelled",
                "po_number": row.po_number,
            })
        ids = dict(zip(new, _insert_returning_ids(self.session, Subscription, rows),
                       strict=True))
        for index, sub_id in ids.items():
            origins.add("subscriptions", sub_id, subs[index].source)
        first_new = self.checker.first_new_customer
        self.checker.subscribed.update(customer_ids[subs[i].row.customer_key] for i in new
                                       if customer_ids[subs[i].row.customer_key] >= first_new)
        self.created("subscriptions", count=len(new))
        resources: list[dict[str, Any]] = []
        attributes: list[dict[str, Any]] = []
        for index in new:
            row = subs[index].row
            rates = self.rates(row.plan)
            for item in row.resources:
                rate = rates[item.resource]
                rate_period_id = None if item.rate_period is None else next(
                    rp.id for rp in rate.rate_periods if rp.sku == item.rate_period)
                resources.append({
                    "subscription_id": ids[index], "resource_rate_id": rate.id,
                    "rate_period_id": rate_period_id, "amount": item.amount,
                    "sales_price": item.sales_price, "sales_discount": item.sales_discount})
            attributes.extend({"subscription_id": ids[index], **a.columns()}
                              for a in row.attributes)
        _insert(self.session, SubscriptionResource, resources)
        _insert(self.session, SubscriptionAttribute, attributes)
        self.created("subscription_resources", count=len(resources))
        self.created("subscription_attributes", count=len(attributes))

    def rates(self, plan_name: str) -> dict[str, ResourceRate]:
        """A plan's rates by resource name (the catalog is written and flushed by now)."""
        if not self._resource_names:
            self._resource_names = {r.id: name for name, rs in self.catalog.resources.items()
                                    for r in rs}
        if plan_name not in self._rates:
            self._rates[plan_name] = {self._resource_names[r.resource_id]: r
                                      for r in self.catalog.plans[plan_name][0].rates}
        return self._rates[plan_name]

    def usage(self) -> None:
        origins = self.checker.origins
        for record_id, source in self.resolution.unchanged_usage:
            origins.add("usage_records", record_id, source)
        self.counts["usage_records"].unchanged += len(self.resolution.unchanged_usage)
        rows = []
        sources = []
        for target in self.resolution.usage:
            row = target.parsed.row
            if target.parsed.source in self.checker.skipped:
                continue
            if target.existing is not None:
                self.apply("usage_records", target.existing, {"quantity": row.quantity})
                origins.add("usage_records", target.existing.id, target.parsed.source)
                continue
            assert target.rate_id is not None
            rows.append({"subscription_id": target.subscription_id,
                         "resource_rate_id": target.rate_id,
                         "period": row.period, "quantity": row.quantity})
            sources.append(target.parsed.source)
        ids = _insert_returning_ids(self.session, UsageRecord, rows)
        for id_, source in zip(ids, sources, strict=True):
            origins.add("usage_records", id_, source)
        self.created("usage_records", count=len(rows))


def _insert(session: Session, model: Any, rows: Sequence[dict[str, Any]]) -> None:
    for part in chunks(rows, BATCH):
        session.execute(insert(model), part)


def _insert_returning_ids(session: Session, model: Any,
                          rows: Sequence[dict[str, Any]]) -> list[int]:
    ids: list[int] = []
    for part in chunks(rows, BATCH):
        ids.extend(session.scalars(
            insert(model).returning(model.id, sort_by_parameter_order=True), part).all())
    return ids
