"""Checks of subscription and usage rows: customers, plans, periods, resources, duplicates.

A subscription is never changed by an import. One whose customer, name and start date match
an existing subscription is either identical (and skipped, so importing a file twice is safe)
or refused, naming the first field that differs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from billing_api.importer.database import ExistingSubscription, period_key
from billing_api.importer.errors import Source
from billing_api.importer.reader import Parsed
from billing_api.importer.resolution import PlanView, Resolution, UsageTarget
from billing_api.importer.schema import PeriodKey, SubscriptionRow, UsageRow

if TYPE_CHECKING:
    from billing_api.importer.checks import Checker

SELECTORS = ("period", "period_type", "billing_period", "billing_period_type")


def check_subscriptions(checker: Checker, resolution: Resolution) -> None:
    for index, parsed in enumerate(checker.batch.section("subscriptions", SubscriptionRow)):
        row, source = parsed.row, parsed.source
        problem = checker.customer_problem(row.customer_key)
        if problem is not None:
            if problem[0]:
                checker.error(source, *problem)
            checker.skip(source)
        view = _plan_view(checker, source, row.plan)
        key = None if view is None else _select_period(checker, source, row, view)
        if view is not None:
            _check_resources(checker, source, row, view)
        if key is None or problem is not None:
            checker.skip(source)
            continue
        resolution.periods[index] = key
        customer = checker.existing.customers.get(row.customer_key)
        if customer is None:
            continue
        for same in checker.existing.subscriptions[(customer.id, row.name)]:
            if same.subscription.start_date != row.start_date:
                continue
            first = checker.origins.get("subscriptions", same.subscription.id)
            if first is not None:
                checker.error(source, "start_date", f"duplicate of {first}")
                break
            differs = _difference(checker, row, key, same)
            if differs is None:
                resolution.unchanged_subscriptions[index] = same.subscription.id
            else:
                checker.error(source, differs, f"differs from subscription "
                              f"{same.subscription.id}, which has the same customer, name and "
                              "start date; an import never changes an existing subscription")
            break


def _plan_view(checker: Checker, source: Source, plan: str) -> PlanView | None:
    """The plan as it will be; None (reported, unless its own row is wrong) when unknown."""
    if (plan,) in checker.broken["service_plans"]:
        return None  # its row has an error already; checking against half a plan misleads
    view = checker.views.get(plan)
    if view is None:
        count = len(checker.catalog.plans.get(plan, []))
        if count > 1:
            checker.error(source, "plan", f"{count} plans have this name in the database")
        else:
            checker.error(source, "plan", f"unknown plan {plan!r} (not in this import or the "
                          "database)")
    return view


def _select_period(checker: Checker, source: Source, row: SubscriptionRow,
                   view: PlanView) -> PeriodKey | None:
    wanted = [(i, getattr(row, name)) for i, name in enumerate(SELECTORS)
              if getattr(row, name) is not None]
    matches = [k for k in view.periods if all(k[i] == value for i, value in wanted)]
    if len(matches) == 1:
        return matches[0]
    field = SELECTORS[wanted[-1][0]] if wanted else "billing_period_type"
    if matches:
        checker.error(source, field, f"plan {row.plan!r} has {len(matches)} such periods "
                      f"({_describe(matches)}): say which with {', '.join(SELECTORS)}")
    elif view.periods:
        checker.error(source, field, f"plan {row.plan!r} has no such period; it has "
                      f"{_describe(view.periods)}")
    return None


def _describe(periods: Any) -> str:
    return "; ".join(f"{p} {pt} billed every {b} {bt}" for p, pt, b, bt in sorted(periods))


def _check_resources(checker: Checker, source: Source, row: SubscriptionRow,
                     view: PlanView) -> None:
    seen: dict[str, int] = {}
    for i, resource in enumerate(row.resources):
        path = f"resources[{i}]"
        first = seen.setdefault(resource.resource, i)
        skus = view.rates.get(resource.resource)
        if first != i:
            checker.error(source, f"{path}.resource", f"is listed at resources[{first}] already")
        elif skus is None:
            checker.error(source, f"{path}.resource", f"plan {row.plan!r} has no rate for "
                          f"resource {resource.resource!r}")
        elif resource.rate_period is not None and resource.rate_period not in skus:
            checker.error(source, f"{path}.rate_period", f"the rate of {resource.resource!r} "
                          f"in plan {row.plan!r} has no rate period with sku "
                          f"{resource.rate_period!r}")


def _difference(checker: Checker, row: SubscriptionRow, key: PeriodKey,
                same: ExistingSubscription) -> str | None:
    """The first field in which ``row`` differs from an existing subscription, or None."""
    sub = same.subscription
    plan = checker.catalog.plan_by_id.get(sub.plan_id)
    if plan is None or plan.name != row.plan:
        return "plan"
    period = next((p for p in plan.periods if p.id == sub.plan_period_id), None)
    if period is None or period_key(period) != key:
        return "billing_period_type"
    for name in ("expiration_date", "cancelled_on", "po_number"):
        if getattr(sub, name) != getattr(row, name):
            return name
    names = checker.catalog.resource_names
    rates = {r.id: r for r in plan.rates}
    skus = {rp.id: rp.sku for r in plan.rates for rp in r.rate_periods}
    theirs = {names.get(rates[sr.resource_rate_id].resource_id) if sr.resource_rate_id in rates
              else None: (sr.amount, skus.get(sr.rate_period_id or 0), sr.sales_price,
                          sr.sales_discount) for sr in same.resources}
    mine = {r.resource: (r.amount, r.rate_period, r.sales_price, r.sales_discount)
            for r in row.resources}
    if mine != theirs:
        return "resources"
    if sorted((a.attribute, a.value, a.description, a.noshow) for a in same.attributes) != \
            sorted((a.attribute, a.value, a.description, a.noshow) for a in row.attributes):
        return "attributes"
    return None


def check_usage(checker: Checker, resolution: Resolution) -> None:
    # Every subscription a usage row may name is in the database by now: subscriptions are
    # written before usage is read. Duplicates of rows of earlier chunks are found there too.
    seen: dict[tuple[Any, ...], Source] = {}
    for parsed in checker.batch.section("usage", UsageRow):
        row, source = parsed.row, parsed.source
        problem = checker.customer_problem(row.customer_key)
        if problem is not None:
            if problem[0]:
                checker.error(source, *problem)
            continue
        start = row.subscription_start_date
        customer = checker.existing.customers.get(row.customer_key)
        old = [] if customer is None else [
            s for s in checker.existing.subscriptions[(customer.id, row.subscription)]
            if start is None or s.subscription.start_date == start]
        if len(old) != 1:
            _no_single_subscription(checker, source, row, len(old))
            continue
        target = (old[0].subscription.id, row.resource, row.period)
        first = seen.setdefault(target, source)
        if first is not source:
            checker.error(source, "period", f"duplicate of {first} (the same subscription, "
                          "resource and month)")
            continue
        _check_existing_usage(checker, resolution, parsed, old[0])


def _no_single_subscription(checker: Checker, source: Source, row: UsageRow,
                            count: int) -> None:
    if count:
        checker.error(source, "subscription_start_date", f"{count} subscriptions of this "
                      "customer have this name: give subscription_start_date")
    elif not any(k[:4] == (*row.customer_key, row.subscription)
                 for k in checker.broken["subscriptions"]):
        checker.error(source, "subscription", f"unknown subscription {row.subscription!r} of "
                      f"customer {row.customer_number!r}" + (
                          f" starting {row.subscription_start_date}"
                          if row.subscription_start_date else ""))


def _no_resource(checker: Checker, source: Source, row: UsageRow) -> None:
    checker.error(source, "resource", f"subscription {row.subscription!r} has no resource "
                  f"{row.resource!r}: list it in the subscription (amount 0 for a resource "
                  "billed by usage only)")


def _check_existing_usage(checker: Checker, resolution: Resolution,
                          parsed: Parsed[UsageRow], same: ExistingSubscription) -> None:
    row, source = parsed.row, parsed.source
    names = checker.catalog.resource_names
    plan = checker.catalog.plan_by_id[same.subscription.plan_id]
    resource_of = {r.id: names.get(r.resource_id) for r in plan.rates}
    rate_id = next((sr.resource_rate_id for sr in same.resources
                    if resource_of.get(sr.resource_rate_id) == row.resource), None)
    if rate_id is None:
        _no_resource(checker, source, row)
        return
    sub_id = same.subscription.id
    record = checker.existing.usage.get((sub_id, rate_id, row.period))
    first = None if record is None else checker.origins.get("usage_records", record.id)
    if first is not None:
        checker.error(source, "period", f"duplicate of {first} (the same subscription, "
                      "resource and month)")
        return
    if record is not None and record.quantity == row.quantity:
        resolution.unchanged_usage.append((record.id, source))
        return
    partner_id = checker.catalog.companies[row.partner].id
    # As before streaming: usage of a subscription this import creates is not checked
    # against billed months.
    if sub_id < checker.first_new_subscription and \
            (partner_id, row.environment, row.period) in checker.existing.billed:
        checker.error(source, "period", f"is billed already for {row.partner} in "
                      f"{row.environment}: usage of a billed month cannot change")
        return
    resolution.usage.append(UsageTarget(parsed, sub_id, rate_id, record))
