"""Invoices: the viewer's purchase and sales invoices by month, with filters, downloads and a
margin chart. For every user of the partner: the portal session is the authorisation and
every figure is the viewer's company's, in the environment chosen on the page.

One GET form (works without JavaScript): environment, period (from/to month), vendor,
customer, and the key that signs the download links (``invoice_downloads``). The charts
cover the 12 invoice-date months ending with the period's last month, all vendors and
customers (the filters narrow the listing), in the partner's currency.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from starlette.responses import Response

from billing_api.access import links as signed
from billing_api.db import utcnow
from billing_api.environments import Environment
from billing_api.portal import charts, invoice_downloads, invoice_query
from billing_api.portal.charts import MARGIN, PURCHASES, SALES, Group
from billing_api.portal.invoice_query import Figures, Filters
from billing_api.portal.web import PortalRoute, ViewerDep, db, render, settings_of

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

INVOICES_PAGE = "/portal/invoices"
CHART_MONTHS = 12
MONTH = re.compile(r"(\d{4})-(\d{2})")


def _month(text: str, field: str, errors: dict[str, str]) -> dt.date | None:
    found = MONTH.fullmatch(text.strip())
    if found is None or not 1 <= int(found.group(2)) <= 12 or int(found.group(1)) < 1900:
        errors[field] = f"{text!r} is not a month: use YYYY-MM, e.g. 2026-03."
        return None
    return dt.date(int(found.group(1)), int(found.group(2)), 1)


def _shift(first: dt.date, months: int) -> dt.date:
    index = first.year * 12 + first.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def _choice(text: str, choices: list[tuple[int, str]], field: str, what: str,
            errors: dict[str, str]) -> int | None:
    if not text:
        return None
    chosen = next((i for i, _ in choices if str(i) == text), None)
    if chosen is None:
        errors[field] = f"That is not one of your {what}: choose one from the list."
    return chosen


def _groups_by_month(found: Figures) -> list[Group]:
    return [Group(m, {PURCHASES: found.purchases.get(m, Decimal(0)),
                      SALES: found.sales.get(m, Decimal(0)), MARGIN: found.margin(m)})
            for m in found.months]


def _groups_by_vendor(found: Figures) -> list[Group]:
    return [Group(v, {PURCHASES: found.vendor_purchases.get(v, Decimal(0)),
                      SALES: found.vendor_sales.get(v, Decimal(0)),
                      MARGIN: found.vendor_margin(v)})
            for v in found.vendors]


@router.get(INVOICES_PAGE)
def invoices_page(request: Request, viewer: ViewerDep) -> Response:
    query = request.query_params
    errors: dict[str, str] = {}
    environment = query.get("environment", Environment.PRODUCTION.value)
    if environment not in {e.value for e in Environment}:
        errors["environment"] = "Choose production or sandbox."
        environment = Environment.PRODUCTION.value
    today = utcnow().astimezone(ZoneInfo(settings_of(request).timezone)).date()
    this_month = today.replace(day=1)
    last = _month(query["to"], "to", errors) if query.get("to") else this_month
    first = _month(query["from"], "from", errors) if query.get("from") else None
    last = last or this_month
    first = first or _shift(last, 1 - CHART_MONTHS)
    if first > last:
        errors["from"] = "The first month is after the last one."
        first = _shift(last, 1 - CHART_MONTHS)
    connection = db(request).connection()
    partner_id = viewer.company.id
    vendors = invoice_query.vendor_choices(connection, partner_id, environment)
    customers = invoice_query.customer_choices(connection, partner_id, environment)
    vendor_id = _choice(query.get("vendor", ""), vendors, "vendor", "vendors", errors)
    customer_id = _choice(query.get("customer", ""), customers, "customer", "customers", errors)
    start, end = invoice_query.month_bounds(invoice_query.month_range(first, last))
    filters = Filters(environment, start, end, vendor_id, customer_id)
    found = invoice_query.listing(connection, partner_id, filters)
    chart_start, chart_end = invoice_query.month_bounds(
        invoice_query.month_range(_shift(last, 1 - CHART_MONTHS), last))
    figures = invoice_query.figures(connection, partner_id, environment, chart_start,
                                    chart_end, viewer.company.currency)
    downloads = invoice_downloads.plan(request, viewer, environment, query.get("key", ""),
                                       errors)
    links: dict[str, dict[str, str]] = {}
    if downloads.key is not None:
        now = utcnow()
        downloads.expires_at = now + signed.MAX_LIFETIME
        for kind, rows in found.rows.items():
            for row in rows:
                links[f"{kind}:{row.number}"] = invoice_downloads.signed_links(
                    request, downloads.key, kind, row.number, now)
    by_month = _groups_by_month(figures)
    by_vendor = _groups_by_vendor(figures)
    span = f"{figures.months[0]} to {figures.months[-1]}"
    month_chart = charts.bar_chart(
        "chart-months", f"Purchases, sales and margin per month, {span}",
        f"Totals excluding VAT in {figures.currency} by invoice date, {environment}; the "
        "table below holds the same figures.", by_month, figures.currency)
    vendor_chart = charts.bar_chart(
        "chart-vendors", f"Purchases, sales and margin per vendor, {span}",
        f"Totals excluding VAT in {figures.currency} by vendor, {environment}; the table "
        "below holds the same figures.", by_vendor, figures.currency)
    values = {"environment": environment, "from": first.strftime("%Y-%m"),
              "to": last.strftime("%Y-%m"), "vendor": str(vendor_id or ""),
              "customer": str(customer_id or ""),
              "key": str(downloads.key.id) if downloads.key else query.get("key", "")}
    return render(
        request, "invoices.html", 400 if errors else 200, title="Invoices", errors=errors,
        values=values, environments=[e.value for e in Environment], vendors=vendors,
        customers=customers, listing=found, limit=invoice_query.LISTING_LIMIT, links=links,
        downloads=downloads, formats=invoice_downloads.FORMATS, figures=figures,
        by_month=by_month, by_vendor=by_vendor, month_chart=month_chart,
        vendor_chart=vendor_chart, money=charts.money, span=span)
