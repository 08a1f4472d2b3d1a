"""The official Python client against the real server (real uvicorn, real database).

Typed documents, per-invoice files and problems work on any server of this version. The sync
tests (``since=``, ``X-Next-Cursor``) and the ETag test need the conditional requests and
incremental sync of issue 13 (docs/sync.md).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from billing_api.app import create_app
from billing_api.billing.run import bill_partner
from billing_api.db import transaction
from billing_api.demo.generator import build_demo
from billing_api.environments import Environment
from billing_api.settings import Settings
from billing_api_client import (
    ApiError,
    BillingClient,
    ConsolidatedPriceLine,
    ConsolidatedTotals,
    EtagCache,
    PriceLine,
    Totals,
)
from tests.access_helpers import make_partner, open_demo_api
from tests.http_server import serve

CLIENT_CLI = Path(sys.executable).parent / "billing-api-client"
# Two months billed (September and October 2026); November is billed by the test.
DEMO_TODAY = dt.date(2026, 11, 5)
ALL = {"startDate": "20200101", "endDate": "20271231"}


@dataclass
class Served:
    base: str
    key: str
    partner_id: int
    factory: sessionmaker[Session]

    def client(self, **options: object) -> BillingClient:
        return BillingClient(self.base, self.key, **options)  # type: ignore[arg-type]

    def invoice_ids(self, endpoint: str) -> list[str]:
        answer = httpx.get(f"{self.base}/api/v4/{endpoint}", headers={"X-Api-Key": self.key},
                           params={**ALL, "format": "json"}, timeout=120)
        assert answer.status_code == 200, answer.text
        return [i["Header"]["InvoiceID"] for i in answer.json()["Invoices"]]

    def bill_november(self) -> None:
        with transaction(self.factory, writer=True) as session:
            summary = bill_partner(session, self.partner_id, Environment.PRODUCTION, "2026-11",
                                   dt.date(2026, 12, 23))
        assert summary.invoices > 0


@pytest.fixture
def served(factory: sessionmaker[Session], settings: Settings) -> Iterator[Served]:
    build_demo(factory, customers=6, months=2, today=DEMO_TODAY)
    with transaction(factory) as session:
        company, secrets = open_demo_api(session, settings)
        partner_id = company.id
    quiet = settings.model_copy(update={"rate_limit_per_minute": 1_000_000})
    with serve(create_app(quiet)) as base:
        yield Served(base, secrets["production"], partner_id, factory)


# --- documents, files and problems ------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["invoices", "customerinvoices", "consolidatedinvoices"])
def test_typed_documents_from_the_server_are_exact(served: Served, endpoint: str) -> None:
    with served.client() as client:
        from_xml = list(client.invoices(endpoint, fmt="xml", **_dates()))  # type: ignore[arg-type]
        from_json = list(client.invoices(endpoint, fmt="json", **_dates()))  # type: ignore[arg-type]
    assert from_xml == from_json
    assert [i.header.invoice_id for i in from_xml] == served.invoice_ids(endpoint)
    for invoice in from_xml:
        lines = invoice.lines()
        if isinstance(lines[0], ConsolidatedPriceLine):
            purchase = [line.purchase_extended_price for line in lines
                        if isinstance(line, ConsolidatedPriceLine)]
            assert isinstance(invoice.totals, ConsolidatedTotals)
            assert sum(purchase) == invoice.totals.purchases.total_excluding_vat
        else:
            extended = [line.extended_price for line in lines if isinstance(line, PriceLine)]
            assert isinstance(invoice.totals, Totals)
            assert sum(extended) == invoice.totals.total_excluding_vat
            assert sum(line.vat for line in lines) == invoice.totals.total_vat


def _dates() -> dict[str, str]:
    return {"start_date": ALL["startDate"], "end_date": ALL["endDate"]}


def test_one_invoice_files_and_subscription_details(served: Served) -> None:
    with served.client() as client:
        invoice = next(client.invoices("customerinvoices", fmt="json", **_dates()))
        number = invoice.header.invoice_id
        ubl = client.invoice_file("customerinvoices", number, "ubl").content
        pdf = client.invoice_file("customerinvoices", number, "pdf").content
        single = client.invoice_file("customerinvoices", number, "json").content
        details = client.subscription_details(
            invoice.customers[0].subscriptions[0].subscription_id)
    assert ubl.startswith(b"<?xml") and number.encode() in ubl
    assert pdf.startswith(b"%PDF-")
    assert json.loads(single)["Invoices"][0]["Header"]["InvoiceID"] == number
    assert details.subscription.subscription_id == \
        invoice.customers[0].subscriptions[0].subscription_id
    assert all(type(r.amount) is Decimal for r in details.resources)


def test_problems_become_api_errors(served: Served) -> None:
    with BillingClient(served.base, "not-a-key") as client, pytest.raises(ApiError) as caught:
        list(client.records("invoices"))
    assert caught.value.status == 401 and caught.value.code
    with served.client() as client, pytest.raises(ApiError) as missing:
        client.invoice_file("invoices", "NO-SUCH-1", "xml")
    assert missing.value.status == 404


def test_the_servers_rate_limit_is_waited_out_as_it_says(factory: sessionmaker[Session],
                                                         settings: Settings) -> None:
    partner = make_partner(factory, settings)
    strict = settings.model_copy(update={"rate_limit_per_minute": 2})
    waits: list[float] = []
    with serve(create_app(strict)) as base, BillingClient(base, partner.secret,
                                                          sleep=waits.append,
                                                          max_retries=2) as client:
        for _ in range(2):
            assert list(client.records("invoices", fmt="json")) == []
        with pytest.raises(ApiError) as caught:
            list(client.records("invoices", fmt="json"))
        told = httpx.get(f"{base}/api/v4/invoices", headers={"X-Api-Key": partner.secret},
                         timeout=30).headers["Retry-After"]
    assert caught.value.status == 429
    assert len(waits) == 2  # bounded: max_retries
    assert all(abs(w - int(told)) <= 1 for w in waits)  # what the server said, not a guess


# --- sync and conditional requests (issue 13: since=, X-Next-Cursor, ETag) --------------------


def _sync(served: Served, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_API_KEY": served.key}
    result = subprocess.run([str(CLIENT_CLI), "sync", "--url", served.base, "--out", str(out),
                             *extra], capture_output=True, text=True, env=env, timeout=600,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _files(out: Path) -> dict[str, int]:
    """Visible files and their modification times (ns)."""
    return {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith(".")}


@pytest.mark.parametrize(("endpoint", "fmt", "suffix"),
                         [("invoices", "xml", ".xml"), ("customerinvoices", "json", ".json")])
def test_sync_writes_each_invoice_once_and_then_only_new_ones(served: Served, tmp_path: Path,
                                                              endpoint: str, fmt: str,
                                                              suffix: str) -> None:
    out = tmp_path / "invoices"
    args = ("--endpoint", endpoint, "--format", fmt, "--start-date", "20200101")
    first = _sync(served, out, *args)
    before = served.invoice_ids(endpoint)
    assert before and sorted(_files(out)) == sorted(f"{i}{suffix}" for i in before)
    assert first.stdout.count("\n") == len(before)
    for invoice_id in before:  # each file is that one invoice
        body = (out / f"{invoice_id}{suffix}").read_bytes()
        invoices = list(_parse(body, fmt))
        assert [i.header.invoice_id for i in invoices] == [invoice_id]

    written = _files(out)
    cursor_files = {p.name: p.read_bytes() for p in out.iterdir() if p.name.endswith(".cursor")}
    assert len(cursor_files) == 1
    again = _sync(served, out, *args)  # right after: nothing new, nothing touched
    assert again.stdout == "" and "0 new" in again.stderr
    assert _files(out) == written
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name.endswith(".cursor")} == \
        cursor_files

    served.bill_november()
    new = sorted(set(served.invoice_ids(endpoint)) - set(before))
    assert new
    third = _sync(served, out, *args)
    after = _files(out)
    assert sorted(set(after) - set(written)) == sorted(f"{i}{suffix}" for i in new)
    assert {name: after[name] for name in written} == written  # old files untouched
    assert sorted(third.stdout.split()) == sorted(str(out / f"{i}{suffix}") for i in new)
    fourth = _sync(served, out, *args)
    assert fourth.stdout == "" and _files(out) == after
    assert list(out.glob(".*.tmp")) == []  # every write was renamed into place


def _parse(body: bytes, fmt: str) -> Iterator[object]:
    from billing_api_client import iter_invoices

    return iter_invoices([body], fmt)  # type: ignore[arg-type]


def test_cursor_pages_return_each_invoice_once(served: Served) -> None:
    with served.client() as client:
        first = client.changes("invoices", None, start_date="20200101")
        assert sorted(first.invoice_ids) == sorted(served.invoice_ids("invoices"))
        empty = client.changes("invoices", first.next_cursor)
        assert empty.invoice_ids == []
        served.bill_november()
        november = client.changes("invoices", empty.next_cursor)
        again = client.changes("invoices", november.next_cursor)
    assert november.invoice_ids and not set(november.invoice_ids) & set(first.invoice_ids)
    assert sorted(first.invoice_ids + november.invoice_ids) == \
        sorted(served.invoice_ids("invoices"))
    assert again.invoice_ids == []


def test_etag_cache_gets_304_until_a_billing_run_changes_the_document(served: Served) -> None:
    params = {**ALL, "format": "json"}
    with served.client(cache=EtagCache()) as client:
        first = client.get("invoices", params)
        second = client.get("invoices", params)
        assert first.headers.get("ETag") and first.headers.get("Last-Modified")
        assert not first.from_cache and second.from_cache
        assert second.content == first.content
        served.bill_november()
        third = client.get("invoices", params)
        fourth = client.get("invoices", params)
    assert not third.from_cache and third.content != first.content
    assert third.headers["ETag"] != first.headers["ETag"]
    assert fourth.from_cache and fourth.content == third.content
