"""Portal → Invoices in a real browser (Debian's chromium via Playwright): walk to the page,
download one invoice as PDF and one as UBL through the page's signed links, and read both
back against the v4 JSON of the same invoice; the SVG chart is drawn with its table.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from lxml import etree
from playwright.sync_api import Browser, Page
from sqlalchemy.orm import Session, sessionmaker

from billing_api.app import create_app
from billing_api.demo.generator import ADMIN_EMAIL
from billing_api.einvoice import pdf
from billing_api.settings import Settings
from tests.browser import Visit, chromium
from tests.http_server import serve
from tests.test_einvoice import UBL_NS, pdftotext, validate
from tests.test_portal_invoices import NEW_PASSWORD, Shop, stock, v4_totals


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def shop(factory: sessionmaker[Session], settings: Settings) -> Iterator[Shop]:
    stocked = stock(factory, settings)
    with serve(create_app(settings)) as base:
        stocked.base = base
        yield stocked


def _download(page: Page, number: str, form: str) -> tuple[str, bytes]:
    link = page.get_by_role("link", name=f"{number} as {form.upper()}", exact=True)
    with page.expect_download() as info:
        link.click()
    download = info.value
    return download.suggested_filename, Path(download.path()).read_bytes()


def test_invoices_page_downloads_a_pdf_and_a_ubl_and_draws_the_chart(
        browser: Browser, shop: Shop, tmp_path: Path) -> None:
    visit = Visit(browser, shop.base, name="invoices")
    try:
        page = visit.page
        visit.first_log_in(ADMIN_EMAIL, shop.admin_password, NEW_PASSWORD)
        page.get_by_role("navigation", name="Main").get_by_role("link", name="Invoices").click()
        page.wait_for_url(re.compile(r"/portal/invoices$"))
        page.get_by_label("From month").fill("2025-12")
        page.get_by_label("To month").fill("2026-11")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url(re.compile(r"/portal/invoices\?.*to=2026-11"))
        visit.shot("invoices")
        # The chart is inline SVG with a table holding the same figures.
        chart = page.locator("svg#chart-months")
        assert chart.get_attribute("role") == "img"
        assert chart.locator("rect[data-value]").count() == 36
        assert page.locator("table#table-months tbody tr").count() == 12
        assert page.locator("svg#chart-vendors rect[data-value]").count() == \
            3 * page.locator("table#table-vendors tbody tr").count() > 0

        sales = v4_totals(shop, "customerinvoices")
        number = page.locator("#invoices-customer tbody tr").first.get_attribute("data-invoice")
        assert number in sales
        _, excl, incl = sales[number]
        name, body = _download(page, number, "pdf")
        assert name == f"{number}.pdf" and body.startswith(b"%PDF")
        text = pdftotext(body)
        assert number in text
        assert re.search(rf"Total including VAT\s+{pdf.money(int(incl * 10000))} EUR", text), text

        name, body = _download(page, number, "ubl")
        assert name == f"{number}.xml"
        root = etree.fromstring(body)
        sign = -1 if root.tag.endswith("}CreditNote") else 1
        assert root.findtext("cbc:ID", namespaces=UBL_NS) == number
        payable = root.findtext("cac:LegalMonetaryTotal/cbc:PayableAmount", namespaces=UBL_NS)
        assert sign * Decimal(payable or "") == incl
        excluded = root.findtext("cac:LegalMonetaryTotal/cbc:TaxExclusiveAmount",
                                 namespaces=UBL_NS)
        assert sign * Decimal(excluded or "") == excl
        saved = tmp_path / name
        saved.write_bytes(body)
        validate([saved])
        assert visit.foreign_requests() == []
        assert visit.console_errors == []
    finally:
        visit.close()
    # On a phone without JavaScript: the same page, nothing scrolls sideways but the tables.
    phone = Visit(browser, shop.base, name="invoices-phone", viewport=(375, 740),
                  javascript=False)
    try:
        phone.log_in(ADMIN_EMAIL, NEW_PASSWORD)
        phone.page.goto("/portal/invoices?from=2025-12&to=2026-11")
        assert phone.page.locator("svg#chart-months rect[data-value]").count() == 36
        assert phone.page.evaluate("document.documentElement.scrollWidth") <= 375
        phone.shot("invoices")
        assert phone.foreign_requests() == []
    finally:
        phone.close()
