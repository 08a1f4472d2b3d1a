"""Checks across rows: duplicates in the input, and references to rows in the input or the
database. Nothing is written here; the result tells the writer what exists already and which
rows to leave out.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from billing_api.billing.vat import home_zone_code
from billing_api.customers.models import Customer, Subscription
from billing_api.importer.database import (
    Catalog,
    CustomerKey,
    Existing,
    load_catalog,
    load_existing,
    period_key,
)
from billing_api.importer.errors import Problems, Source
from billing_api.importer.reader import Batch
from billing_api.importer.resolution import PlanView, Resolution, row_key
from billing_api.importer.schema import (
    KEYS,
    CompanyRow,
    CustomerRow,
    PeriodKey,
    PlanRow,
    ResourceRow,
    SubscriptionRow,
    UsageRow,
)
from billing_api.importer.subscription_checks import check_subscriptions, check_usage


class Origins:
    """Where the rows this import wrote came from, by table and database id, packed into an
    int each (a file index and a row number): a later row with the same key is a duplicate of
    that row. Compact per-key state, so that streaming keeps memory flat."""

    def __init__(self) -> None:
        self.files: list[str] = []
        self._file_index: dict[str, int] = {}
        self.by_table: dict[str, dict[int, int]] = {
            "customers": {}, "subscriptions": {}, "usage_records": {}}

    def add(self, table: str, row_id: int, source: Source) -> None:
        index = self._file_index.get(source.file)
        if index is None:
            index = self._file_index[source.file] = len(self.files)
            self.files.append(source.file)
        row = source.row
        if row.isdigit():
            code = int(row) << 4 | 15
        else:  # .section[index]
            section, _, rest = row[1:].partition("[")
            code = int(rest[:-1]) << 4 | _SECTION_CODES[section]
        self.by_table[table][row_id] = code << 16 | index

    def get(self, table: str, row_id: int) -> str | None:
        """The row that wrote ``row_id`` (``FILE:ROW``), or None if this import did not."""
        packed = self.by_table[table].get(row_id)
        if packed is None:
            return None
        code, file = packed >> 16, self.files[packed & 0xFFFF]
        kind, number = code & 15, code >> 4
        return f"{file}:{number}" if kind == 15 else f"{file}:.{_SECTIONS[kind]}[{number}]"


_SECTIONS = list(KEYS)
_SECTION_CODES = {name: i for i, name in enumerate(_SECTIONS)}


class Checker:
    """Cross-row checks. The catalog is checked once, whole; customers, subscriptions and
    usage chunk by chunk (``customers``, ``subscriptions``, ``usage``), against the database,
    which by then holds every earlier chunk: the import writes valid rows as it goes, inside
    its one transaction, and the caller rolls back if any row had an error.

    A row with an error (or referring to one) goes to ``skipped``, its key to ``broken``: it
    is not written, and rows referring to it report nothing more.
    """

    def __init__(self, session: Session, batch: Batch, problems: Problems) -> None:
        self.session, self.batch, self.problems = session, batch, problems
        self.catalog: Catalog = load_catalog(session)
        self.views: dict[str, PlanView] = {}
        self.existing = Existing(self.catalog)
        self.broken = batch.broken
        self.file_partners: set[str] = set()
        self.file_resources: set[str] = set()
        self.skipped: set[Source] = set()
        self.origins = Origins()
        self.first_new_subscription = 1 + (session.scalar(select(func.max(Subscription.id)))
                                           or 0)
        # A customer this import creates has no subscriptions but those it writes: only
        # look for them once it has some (inside the transaction the database's planner may
        # scan the growing table for each chunk).
        self.first_new_customer = 1 + (session.scalar(select(func.max(Customer.id))) or 0)
        self.subscribed: set[int] = set()  # new customers with subscriptions written

    def error(self, source: Source, field_: str, message: str) -> None:
        self.problems.add(source, field_, message)
        self.skipped.add(source)

    def skip(self, source: Source) -> None:
        """Leave a row out without a message of its own (its cause is reported elsewhere)."""
        self.skipped.add(source)

    def check_catalog(self) -> None:
        """The catalog sections of ``batch``: duplicates, companies, resources and plans."""
        self._duplicates()
        b = self.batch
        self.file_partners = {p.row.name for p in b.section("partners", CompanyRow)}
        self.file_resources = {p.row.name for p in b.section("resources", ResourceRow)}
        self._companies()
        self._resources()
        self._plans()
        for section in ("partners", "service_plans"):
            for parsed in b.rows[section]:
                if parsed.source in self.skipped:
                    self.broken[section].add((parsed.row.name,))
                    if section == "partners":
                        self.file_partners.discard(parsed.row.name)

    def customers(self, batch: Batch) -> Resolution:
        """Check a chunk of customer rows; returns what the writer needs."""
        self.batch = batch
        self._duplicates()
        keys = [p.row.key for p in batch.section("customers", CustomerRow)]
        self.existing = load_existing(self.session, self.catalog, keys, [], [])
        for parsed in batch.section("customers", CustomerRow):
            check_customer(self, parsed.row, parsed.source)
            if parsed.source in self.skipped:
                self.broken["customers"].add(row_key("customers", parsed.row))
        return Resolution(self.existing)

    def subscriptions(self, batch: Batch) -> Resolution:
        self.batch = batch
        self._duplicates()
        keys = [p.row.customer_key for p in batch.section("subscriptions", SubscriptionRow)]
        self.existing = load_existing(
            self.session, self.catalog, keys, keys, [], wants_subscriptions=lambda c:
            c.id < self.first_new_customer or c.id in self.subscribed)
        resolution = Resolution(self.existing)
        check_subscriptions(self, resolution)
        for parsed in batch.section("subscriptions", SubscriptionRow):
            if parsed.source in self.skipped:
                self.broken["subscriptions"].add(row_key("subscriptions", parsed.row))
        return resolution

    def usage(self, batch: Batch) -> Resolution:
        self.batch = batch
        self._duplicates()
        rows = batch.section("usage", UsageRow)
        keys = [p.row.customer_key for p in rows]
        self.existing = load_existing(self.session, self.catalog, keys, keys,
                                      [p.row.period for p in rows])
        resolution = Resolution(self.existing)
        check_usage(self, resolution)
        return resolution

    def _duplicates(self) -> None:
        """Duplicates inside the batch; those of earlier chunks are found in the database."""
        for section, rows in self.batch.rows.items():
            seen: dict[tuple[str, ...], Source] = {}
            kept = []
            for parsed in rows:
                first = seen.setdefault(row_key(section, parsed.row), parsed.source)
                if first is parsed.source:
                    kept.append(parsed)
                else:
                    self.error(parsed.source, KEYS[section][-1], f"duplicate of {first}")
            self.batch.rows[section] = kept

    def _companies(self) -> None:
        distributors = self.batch.section("distributor", CompanyRow)
        partners = self.batch.section("partners", CompanyRow)
        for extra in distributors[1:]:
            self.error(extra.source, "name", f"there is one distributor: given at "
                       f"{distributors[0].source} already")
        partner_names = {p.row.name: p.source for p in partners}
        if distributors:
            row, source = distributors[0].row, distributors[0].source
            owner = self.catalog.companies.get(row.name)
            if owner is not None and owner is not self.catalog.distributor:
                self.error(source, "name", f"is the name of partner company {owner.id}")
            if row.name in partner_names:
                self.error(source, "name", f"is also a partner's name at {partner_names[row.name]}")
        for parsed in partners:
            owner = self.catalog.companies.get(parsed.row.name)
            if owner is not None and owner.kind != "partner":
                self.error(parsed.source, "name", "is the distributor's name")

    def _resources(self) -> None:
        for parsed in self.batch.section("resources", ResourceRow):
            count = len(self.catalog.resources.get(parsed.row.name, []))
            if count > 1:
                self.error(parsed.source, "name", f"{count} resources have this name in the "
                           "database: cannot tell which one to update")

    def _resource_problem(self, name: str) -> str | None:
        if name in self.file_resources:
            return None
        count = len(self.catalog.resources.get(name, []))
        if count == 1:
            return None
        if count > 1:
            return f"{count} resources named {name!r} exist: rename them apart first"
        return "" if (name,) in self.broken["resources"] else \
            f"unknown resource {name!r} (not in this import or the database)"

    def _plans(self) -> None:
        names = self.catalog.resource_names
        for name, plans in self.catalog.plans.items():
            if len(plans) == 1:
                self.views[name] = PlanView(
                    {period_key(p) for p in plans[0].periods},
                    {names[r.resource_id]: {rp.sku for rp in r.rate_periods}
                     for r in plans[0].rates})
        vendors = {p.row.name for p in self.batch.rows["vendors"]} | set(self.catalog.vendors)
        for parsed in self.batch.section("service_plans", PlanRow):
            row, source = parsed.row, parsed.source
            count = len(self.catalog.plans.get(row.name, []))
            if count > 1:
                self.error(source, "name", f"{count} plans have this name in the database: "
                           "cannot tell which one to update")
                continue
            if row.vendor not in vendors and (row.vendor,) not in self.broken["vendors"]:
                self.error(source, "vendor", f"unknown vendor {row.vendor!r} (not in this "
                           "import or the database)")
            if count == 0 and not row.periods:
                self.error(source, "periods", "a new plan needs at least one period")
            view = self.views.setdefault(row.name, PlanView())
            seen_periods: dict[PeriodKey, int] = {}
            for i, period in enumerate(row.periods):
                j = seen_periods.setdefault(period.key, i)
                if j != i:
                    self.error(source, f"periods[{i}]", f"is the same period as periods[{j}]")
                view.periods.add(period.key)
            seen_rates: dict[str, int] = {}
            for i, rate in enumerate(row.rates):
                j = seen_rates.setdefault(rate.resource, i)
                problem = self._resource_problem(rate.resource)
                if j != i:
                    problem = f"has a rate at rates[{j}] already"
                if problem:
                    self.error(source, f"rates[{i}].resource", problem)
                skus = view.rates.setdefault(rate.resource, set())
                seen_skus: dict[str, int] = {}
                for k, rate_period in enumerate(rate.rate_periods):
                    m = seen_skus.setdefault(rate_period.sku, k)
                    if m != k:
                        self.error(source, f"rates[{i}].rate_periods[{k}].sku",
                                   f"is the sku of rates[{i}].rate_periods[{m}] already")
                    skus.add(rate_period.sku)

    def partner_problem(self, partner: str) -> str | None:
        """None when ``partner`` names a partner; "" when its row was wrong already."""
        if partner in self.file_partners:
            return None
        company = self.catalog.companies.get(partner)
        if company is not None:
            return None if company.kind == "partner" else "is the distributor, not a partner"
        return "" if (partner,) in self.broken["partners"] else \
            f"unknown partner {partner!r} (not in this import or the database)"

    def customer_problem(self, key: CustomerKey) -> tuple[str, str] | None:
        """None when ``key`` names a customer; ("", "") when its row was wrong already."""
        partner, env, number = key
        problem = self.partner_problem(partner)
        if problem is not None:
            return ("partner", problem) if problem else ("", "")
        if key in self.existing.customers:  # in the database, or written by this import
            return None
        if key in self.broken["customers"]:
            return ("", "")
        return ("customer_number", f"unknown customer: partner {partner!r} has no customer "
                f"{number!r} in {env} (in this import or the database)")



def check_customer(checker: Checker, row: CustomerRow, source: Source) -> None:
    """The checks of one customer row against the others and the database."""
    problem = checker.partner_problem(row.partner)
    if problem:
        checker.error(source, "partner", problem)
    elif problem is not None:
        checker.skip(source)
    if row.tax_zone is not None:
        if row.tax_zone not in checker.catalog.zones:
            checker.error(source, "tax_zone", f"unknown tax zone; known zones: "
                          f"{', '.join(sorted(checker.catalog.zones))}")
    elif (zone := home_zone_code(row.country_code)) not in checker.catalog.zones:
        checker.error(source, "country_code",
                      f"this country's tax zone {zone!r} does not exist: give tax_zone")
    customer = checker.existing.customers.get(row.key)
    first = None if customer is None else checker.origins.get("customers", customer.id)
    if first is not None:
        checker.error(source, "customer_number", f"duplicate of {first}")
