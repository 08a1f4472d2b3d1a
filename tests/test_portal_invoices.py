"""Portal → Invoices over real HTTP (httpx against uvicorn, no JavaScript): every user sees
the company's purchase and sales invoices, filtered; downloads are signed links to the API's
single-invoice routes; the charts' and tables' figures are the v4 documents' totals.
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import pytest
from lxml import etree
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, links, permissions, users
from billing_api.access.models import Company, User
from billing_api.app import create_app
from billing_api.billing.models import Invoice
from billing_api.db import transaction
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.portal import charts
from billing_api.settings import Settings
from tests.access_helpers import open_demo_api
from tests.browser import FormClient
from tests.http_server import serve
from tests.test_einvoice import TODAY

D = Decimal
NEW_PASSWORD = "a brand new portal passphrase"
CLERK = "clerk@northwind.example"
CLERK_PASSWORD = "clerk password 1234"
# The chart's 12 months end with the period's last month; the demo bills Sep–Nov 2026.
PERIOD = {"from": "2025-12", "to": "2026-11"}
WINDOW = {"startDate": "20251201", "endDate": "20261130"}
ROW = re.compile(r'<tr data-invoice="([^"]+)">(.*?)</tr>', re.S)
DOWNLOAD = re.compile(r'class="download" href="([^"]+)"')


@dataclass
class Shop:
    base: str
    partner_id: int
    admin_password: str
    secrets: dict[str, str]  # environment → key

    def api(self, path: str, env: str = "production", **params: str) -> httpx.Response:
        return httpx.get(self.base + path, params=params,
                         headers={"X-Api-Key": self.secrets[env]}, timeout=60)


def stock(factory: sessionmaker[Session], settings: Settings) -> Shop:
    """The demo (Sep–Nov 2026 billed, both environments) with its API enabled, 127.0.0.1
    whitelisted, a key per environment and a clerk without API permission; ``base`` unset."""
    result = build_demo(factory, customers=8, months=3, today=TODAY)
    with transaction(factory) as session:
        company, secrets = open_demo_api(session, settings)
        users.add_user(session, company, CLERK, CLERK_PASSWORD)
    return Shop("", result.partner_id, result.admin_password, secrets)


@pytest.fixture
def shop(factory: sessionmaker[Session], settings: Settings) -> Iterator[Shop]:
    stocked = stock(factory, settings)
    quiet = settings.model_copy(update={"rate_limit_per_minute": 1_000_000})
    with serve(create_app(quiet)) as base:
        stocked.base = base
        yield stocked


@pytest.fixture
def admin(shop: Shop) -> Iterator[FormClient]:
    with FormClient(shop.base) as client:
        assert client.first_log_in(ADMIN_EMAIL, shop.admin_password,
                                   NEW_PASSWORD).status_code == 303
        yield client


def v4_totals(shop: Shop, endpoint: str, env: str = "production",
              window: dict[str, str] = WINDOW) -> dict[str, tuple[str, D, D]]:
    """InvoiceID → (YYYY-MM of its date, TotalExcludingVAT, TotalIncludingVAT)."""
    response = shop.api(f"/api/v4/{endpoint}", env, format="json", **window)
    assert response.status_code == 200, response.text
    found = {}
    for invoice in json.loads(response.text, parse_float=D)["Invoices"]:
        digits = re.sub(r"\D", "", str(invoice["Header"]["Date"]))
        found[str(invoice["Header"]["InvoiceID"])] = (
            f"{digits[:4]}-{digits[4:6]}", D(str(invoice["Totals"]["TotalExcludingVAT"])),
            D(str(invoice["Totals"]["TotalIncludingVAT"])))
    return found


def listed(page: str, kind: str) -> dict[str, str]:
    """InvoiceID → the row's HTML, for one table of the page."""
    table = re.search(rf'<table class="invoices" id="invoices-{kind}".*?</table>', page, re.S)
    return dict(ROW.findall(table.group(0))) if table else {}


def cells(row: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_every_user_sees_the_companys_invoices_by_month(shop: Shop, admin: FormClient) -> None:
    page = admin.get("/portal/invoices", **PERIOD)
    assert page.status_code == 200
    assert '<a href="/portal/invoices" aria-current="page">Invoices</a>' in page.text
    for endpoint, kind in (("invoices", "purchase"), ("customerinvoices", "customer")):
        expected = v4_totals(shop, endpoint)
        assert expected and set(listed(page.text, kind)) == set(expected)
        for number, row in listed(page.text, kind).items():
            month, excl, incl = expected[number]
            assert [D(v) for v in re.findall(r'data-value="([^"]+)"', row)] == [excl, incl]
            assert cells(row)[2].startswith(month)
            assert len(DOWNLOAD.findall(row)) == 4
    sandbox = admin.get("/portal/invoices", environment="sandbox", **PERIOD).text
    assert set(listed(sandbox, "customer")) == set(v4_totals(shop, "customerinvoices", "sandbox"))
    # A user without API permission sees the same invoices, no link, and what is needed.
    with FormClient(shop.base) as clerk:
        assert clerk.log_in(CLERK, CLERK_PASSWORD).status_code == 303
        assert ">Invoices</a>" in clerk.get("/portal/profile").text
        seen = clerk.get("/portal/invoices", **PERIOD).text
        assert set(listed(seen, "customer")) == set(listed(page.text, "customer"))
        assert not DOWNLOAD.search(seen) and "no API permission" in seen
        assert "Nora Northwind" in html.unescape(seen)
    with FormClient(shop.base) as anonymous:
        assert anonymous.get("/portal/invoices").headers["location"] == "/"


def test_filters_by_period_vendor_and_customer(shop: Shop, admin: FormClient) -> None:
    every = v4_totals(shop, "customerinvoices")
    months = sorted({m for m, _, _ in every.values()})
    assert len(months) >= 2
    one = admin.get("/portal/invoices", **{"from": months[-1], "to": months[-1]}).text
    assert set(listed(one, "customer")) == {n for n, (m, _, _) in every.items()
                                            if m == months[-1]}
    page = admin.get("/portal/invoices", **PERIOD).text
    vendor_id, vendor = re.findall(r'<option value="(\d+)">([^<]+)</option>',
                                   page.split('id="f-vendor"')[1].split("</select>")[0])[0]
    by_vendor = admin.get("/portal/invoices", vendor=vendor_id, **PERIOD).text
    rows = {**listed(by_vendor, "purchase"), **listed(by_vendor, "customer")}
    assert rows and all(cells(r)[3] == html.unescape(vendor) for r in rows.values())
    assert len(rows) < len(listed(page, "purchase")) + len(listed(page, "customer"))
    customer_id, customer = re.findall(r'<option value="(\d+)">([^<]+)</option>',
                                       page.split('id="f-customer"')[1].split("</select>")[0])[0]
    by_customer = admin.get("/portal/invoices", customer=customer_id, **PERIOD).text
    sales = listed(by_customer, "customer")
    name = html.unescape(customer).rsplit(" (", 1)[0]
    assert sales and all(cells(r)[4] == name for r in sales.values())
    assert len(sales) < len(listed(page, "customer"))
    bad = admin.get("/portal/invoices", **{"from": "2026-13", "to": "2026-01", "vendor": "999999"})
    assert bad.status_code == 400
    assert 'id="f-from-error"' in bad.text and 'id="f-vendor-error"' in bad.text


def test_another_partners_invoices_never_appear_and_forged_links_are_refused(
        shop: Shop, admin: FormClient, factory: sessionmaker[Session],
        settings: Settings) -> None:
    page = admin.get("/portal/invoices", **PERIOD).text
    sales = listed(page, "customer")
    moved, kept = sorted(sales)[:2]
    with transaction(factory) as session:
        other = Company(name="Other Partner BV", kind="partner")
        session.add(other)
        session.flush()
        session.execute(update(Invoice).where(Invoice.invoice_number == moved,
                                              Invoice.kind == "customer")
                        .values(partner_id=other.id))
        digest = keys.digest(settings, shop.secrets["production"])
    page = admin.get("/portal/invoices", **PERIOD).text
    assert moved not in page and kept in listed(page, "customer")
    pdf, ubl = (html.unescape(h) for h in DOWNLOAD.findall(listed(page, "customer")[kept])[:2])
    assert "format=pdf" in pdf and "format=ubl" in ubl
    answer = httpx.get(shop.base + pdf, timeout=60)
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF")
    # The link is bound to its path and query: another invoice, another form or no token fail.
    for forged in (pdf.replace(kept, moved), pdf.replace("format=pdf", "format=xml"),
                   pdf.replace("/customerinvoices/", "/invoices/"), pdf.split("&token=")[0]):
        assert httpx.get(shop.base + forged, timeout=60).status_code == 401, forged
    # A correctly signed link to the moved invoice: the API's scoping answers 404.
    path = f"/api/v4/customerinvoices/{moved}"
    signed = links.signed_url(settings, digest, path, [("format", "pdf")])
    assert httpx.get(shop.base + signed, timeout=60).status_code == 404
    # Another environment's key does not sign this page's links, and a forged key id is refused.
    sandbox_key = admin.get("/portal/invoices", environment="sandbox", **PERIOD).text
    sandbox_id = re.search(r'<option value="(\d+)" selected>erp-sandbox', sandbox_key)
    assert sandbox_id
    wrong = admin.get("/portal/invoices", key=sandbox_id.group(1), **PERIOD)
    assert wrong.status_code == 400 and 'id="f-key-error"' in wrong.text
    assert not DOWNLOAD.search(wrong.text)
    # With the API switched off the page signs nothing, says why, and old links die.
    with transaction(factory) as session:
        company = session.get_one(Company, shop.partner_id)
        admin_user = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
        permissions.set_api_enabled(session, company, admin_user, False)
    off = admin.get("/portal/invoices", **PERIOD).text
    assert not DOWNLOAD.search(off) and "not enabled" in off and kept in off
    assert httpx.get(shop.base + ubl, timeout=60).status_code == 403


def _figures(page: str, table_id: str) -> dict[str, dict[str, D]]:
    table = re.search(rf'<table id="{table_id}" class="figures">(.*?)</table>', page, re.S)
    assert table
    found: dict[str, dict[str, D]] = {}
    for label, row in re.findall(r'<tr><th scope="row">([^<]*)</th>(.*?)</tr>', table.group(1),
                                 re.S):
        found[html.unescape(label)] = {s: D(v) for s, v in re.findall(
            r'data-series="(\w+)" data-value="([^"]+)"', row)}
    return found


def _bars(page: str, chart_id: str) -> dict[str, dict[str, D]]:
    svg = re.search(rf'<svg [^>]*id="{chart_id}".*?</svg>', page, re.S)
    assert svg and "style=" not in svg.group(0)
    found: dict[str, dict[str, D]] = defaultdict(dict)
    for series, label, value in re.findall(
            r'data-series="(\w+)" data-label="([^"]*)" data-value="([^"]+)"', svg.group(0)):
        found[html.unescape(label)][series] = D(value)
    return dict(found)


def test_chart_and_table_figures_equal_the_v4_totals(shop: Shop, admin: FormClient) -> None:
    page = admin.get("/portal/invoices", **PERIOD).text
    vendor_of = {n: cells(r)[3] for kind in ("purchase", "customer")
                 for n, r in listed(page, kind).items()}
    months: dict[str, dict[str, D]] = defaultdict(lambda: defaultdict(D))
    vendors: dict[str, dict[str, D]] = defaultdict(lambda: defaultdict(D))
    for endpoint, series in (("invoices", "purchases"), ("customerinvoices", "sales")):
        for number, (month, excl, _) in v4_totals(shop, endpoint).items():
            months[month][series] += excl
            vendors[vendor_of[number]][series] += excl
    for sums in (*months.values(), *vendors.values()):
        sums["margin"] = sums["sales"] - sums["purchases"]
    by_month = _figures(page, "table-months")
    assert list(by_month) == ["2025-12", *[f"2026-{m:02d}" for m in range(1, 12)]]
    assert len([m for m in by_month.values() if m["sales"]]) >= 2
    for month, figures in by_month.items():
        expected = months.get(month, {})
        assert figures == {s: expected.get(s, D(0)) for s in ("purchases", "sales", "margin")}
    assert _bars(page, "chart-months") == by_month
    by_vendor = _figures(page, "table-vendors")
    assert by_vendor == {v: dict(s) for v, s in vendors.items()}
    assert _bars(page, "chart-vendors") == by_vendor
    assert 'role="img"' in page and 'aria-labelledby="chart-months-title chart-months-desc"' in page


def test_bar_chart_is_plain_svg_of_exact_figures() -> None:
    groups = [charts.Group("2026-01", {"purchases": D("10.0001"), "sales": D("-5"),
                                       "margin": D("-15.0001")}),
              charts.Group("<b>&", {"purchases": D(0), "sales": D(0), "margin": D(0)})]
    svg = str(charts.bar_chart("c", "Title <x>", "Desc", groups, "EUR"))
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and svg.endswith("</svg>")
    root = etree.fromstring(svg.encode())  # well-formed XML: every text is escaped
    bars = root.findall("{http://www.w3.org/2000/svg}rect[@data-value]")
    assert [b.get("data-value") for b in bars] == ["10.0001", "-5", "-15.0001", "0", "0", "0"]
    assert root.findtext("{http://www.w3.org/2000/svg}title") == "Title <x>"
    assert "style=" not in svg and "<script" not in svg and "http" not in svg.replace(
        "http://www.w3.org/2000/svg", "")
    # A negative bar hangs below the zero line, a positive one stands on it.
    up, down = bars[0], bars[1]
    assert D(up.get("y") or "0") + D(up.get("height") or "0") == D(down.get("y") or "0")
    assert charts.money(D("1234.5")) == "1,234.50" and charts.money(D("-0.0001")) == "-0.0001"
    assert charts.bar_chart("e", "t", "d", [], "EUR").count("<rect") == 3  # the legend only


def test_a_link_names_the_invoice_quoted_but_signs_the_path_the_server_sees(
        shop: Shop, admin: FormClient) -> None:
    page = admin.get("/portal/invoices", **PERIOD).text
    href = html.unescape(DOWNLOAD.findall(page)[0])
    parts = urlsplit(href)
    assert parts.path.startswith("/api/v4/") and unquote(parts.path) == parts.path
    assert [k for k, _ in parse_qsl(parts.query)] == ["format", "token"]


def test_every_statement_of_the_page_binds_the_viewers_company_and_environment(
        shop: Shop, admin: FormClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``test_scoping`` does for the API: every statement the page sends that reads a
    partner-owned table (invoices, customers …) binds the viewer's company and environment."""
    from tests.test_scoping import _reads_partner_data, _values, recorded_statements

    page = admin.get("/portal/invoices", **PERIOD).text
    vendor_id = re.findall(r'<option value="(\d+)">', page.split('id="f-vendor"')[1])[0]
    customer_id = re.findall(r'<option value="(\d+)">', page.split('id="f-customer"')[1])[0]
    for environment in ("production", "sandbox"):
        with recorded_statements(monkeypatch) as statements:
            assert admin.get("/portal/invoices", environment=environment, vendor=vendor_id,
                             **PERIOD).status_code in (200, 400)
            admin.get("/portal/invoices", environment=environment, customer=customer_id,
                      **PERIOD)
        scoped = [(sql, params) for sql, params in statements if _reads_partner_data(sql)]
        assert len(scoped) >= 10
        for sql, params in scoped:
            values = _values(sql, params)
            assert shop.partner_id in values and environment in values, (sql, params)
