"""The demo as a new user meets it (issue 14, item 5): no invoice dated after today, so the
API's default window (the three months up to today) holds the newest invoices."""

from __future__ import annotations

import datetime as dt

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.app import create_app
from billing_api.billing.models import Invoice
from billing_api.db import transaction
from billing_api.demo.generator import build_demo, invoice_date
from billing_api.settings import Settings
from tests.access_helpers import open_demo_api
from tests.http_server import serve


def test_invoices_are_dated_the_23rd_or_today_when_that_is_still_to_come() -> None:
    december_5 = dt.date(2026, 12, 5)
    assert invoice_date("2026-10", december_5) == dt.date(2026, 11, 23)  # history: the 23rd
    assert invoice_date("2026-11", december_5) == december_5  # the 23rd is still to come
    assert invoice_date("2026-11", dt.date(2026, 12, 23)) == dt.date(2026, 12, 23)
    assert invoice_date("2026-11", dt.date(2026, 12, 31)) == dt.date(2026, 12, 23)
    assert invoice_date("2026-12", dt.date(2027, 1, 1)) == dt.date(2027, 1, 1)


def test_the_default_window_holds_the_demos_newest_invoices(
        factory: sessionmaker[Session], settings: Settings) -> None:
    today = settings.today()  # what `billing-api demo` and the API both take for today
    result = build_demo(factory, customers=3, months=2, today=today)
    newest = [run for run in result.runs if run.environment == "production"][-1]
    with transaction(factory) as session:
        _, secrets = open_demo_api(session, settings)
        numbers = set(session.scalars(select(Invoice.invoice_number).where(
            Invoice.billing_run_id == newest.run_id, Invoice.kind == "purchase")))
        latest = session.scalar(select(func.max(Invoice.invoice_date)))
    assert numbers and latest is not None and latest <= today
    with serve(create_app(settings)) as base:
        # No startDate or endDate: the window a new user's first request gets.
        answer = httpx.get(f"{base}/api/v4/invoices", params={"format": "json"},
                           headers={"X-Api-Key": secrets["production"]}, timeout=60)
    assert answer.status_code == 200, answer.text
    served = {invoice["Header"]["InvoiceID"] for invoice in answer.json()["Invoices"]}
    assert numbers <= served
