"""The official Python client (clients/python) on its own: models, streaming parse in flat
memory, retries, the ETag cache, webhook verification and the CLI's refusals.

Everything goes over real HTTP to small loopback servers where the transport matters; the
tests against the real Billing API server are in test_client_server.py.
"""

from __future__ import annotations

import base64
import dataclasses
import email.utils
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks

from billing_api.export import documents as d
from billing_api_client import (
    ApiError,
    BillingClient,
    ConsolidatedPriceLine,
    DocumentError,
    EtagCache,
    InvoiceEnd,
    LineItem,
    PriceLine,
    SyncError,
    file_chunks,
    iter_invoices,
    iter_records,
    parse_subscription_details,
    retry_after,
    sync_directory,
    webhooks,
)
from billing_api_client import models as m
from tests import loopback
from tests.client_bigdoc import Shape, expected_total, serve_big_document

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
CLIENT_CLI = Path(sys.executable).parent / "billing-api-client"
MIB = 1024 * 1024


def _golden(name: str) -> Iterator[bytes]:
    return file_chunks(str(GOLDEN / name))


# --- models and parse ------------------------------------------------------------------------


def _doc_names(cls: type) -> list[str]:
    return [f.metadata["doc"] for f in dataclasses.fields(cls)
            if f.name not in ("lines", "subscriptions", "details")]


def test_models_name_every_field_the_server_writes() -> None:
    """The client's models follow the writers' field lists (export/documents.py): a field
    added on the server without the client fails here."""
    invoices = d.invoice_shape("invoices", True)
    consolidated = d.invoice_shape("consolidatedinvoices", True)
    assert sorted(_doc_names(m.PriceLine)) == sorted(f.name for f in invoices.line)
    assert sorted(_doc_names(m.ConsolidatedPriceLine)) == sorted(f.name for f in
                                                                 consolidated.line)
    assert sorted(_doc_names(m.Subscription)) == sorted(f.name for f in invoices.subscription)
    assert sorted(_doc_names(m.Customer)) == sorted(f.name for f in invoices.customer)
    assert _doc_names(m.Header) == list(d.HEADER)
    assert _doc_names(m.Sender) == list(d.SENDER)
    assert _doc_names(m.Receiver) == list(d.RECEIVER)
    assert _doc_names(m.Totals) == list(d.TOTALS)
    assert _doc_names(m.SubscriptionDetail) == list(d.DETAIL)
    # Money and quantities are Decimal: the writers' MONEY and PLAIN kinds.
    hints = {f.metadata["doc"]: str(f.type) for f in dataclasses.fields(m.PriceLine)}
    for field in invoices.line:
        if field.kind in (d.Kind.MONEY, d.Kind.PLAIN):
            assert hints[field.name] == "Decimal", field.name


@pytest.mark.parametrize("endpoint", ["invoices", "customerinvoices", "consolidatedinvoices"])
def test_xml_and_json_give_the_same_typed_invoices(endpoint: str) -> None:
    from_xml = list(iter_invoices(_golden(f"{endpoint}_v4.xml"), "xml"))
    from_json = list(iter_invoices(_golden(f"{endpoint}_v4.json"), "json"))
    assert from_xml == from_json
    raw = json.loads((GOLDEN / f"{endpoint}_v4.json").read_text(), parse_float=Decimal)
    assert [i.header.invoice_id for i in from_xml] == [
        i["Header"]["InvoiceID"] for i in raw["Invoices"]]
    for invoice, raw_invoice in zip(from_xml, raw["Invoices"], strict=True):
        lines = invoice.lines()
        assert len(lines) == sum(len(s["PriceLines"]) for c in raw_invoice["Customers"]
                                 for s in c["Subscriptions"])
        if isinstance(invoice.totals, m.ConsolidatedTotals):
            assert all(isinstance(line, ConsolidatedPriceLine) for line in lines)
            purchase = sum(line.purchase_extended_price for line in lines
                           if isinstance(line, ConsolidatedPriceLine))
            assert purchase == invoice.totals.purchases.total_excluding_vat
            sales = sum(line.sales_extended_price or 0 for line in lines
                        if isinstance(line, ConsolidatedPriceLine))
            assert sales == invoice.totals.sales.total_excluding_vat
        else:
            assert all(isinstance(line, PriceLine) for line in lines)
            extended = [line.extended_price for line in lines if isinstance(line, PriceLine)]
            assert all(type(x) is Decimal for x in extended)
            assert sum(extended) == invoice.totals.total_excluding_vat
            assert sum(line.vat for line in lines) == invoice.totals.total_vat


def test_records_stream_lines_then_the_invoice_end() -> None:
    records = list(iter_records(_golden("invoices_v4.xml"), "xml"))
    kinds = [type(r).__name__ for r in records]
    assert kinds[-1] == "InvoiceEnd"
    assert kinds.count("InvoiceEnd") == 2
    first = records[0]
    assert isinstance(first, LineItem)
    assert first.invoice == 0 and first.customer.account_id == 1001
    assert first.subscription.subscription_id == 501
    assert first.subscription.lines == []  # streaming keeps nothing
    assert first.line.quantity == Decimal(3)
    assert isinstance(first.line, PriceLine) and first.line.unit_price == Decimal("8.00")


def test_subscriptiondetails_xml_and_json_agree() -> None:
    from_xml = parse_subscription_details((GOLDEN / "subscriptiondetails_v4.xml").read_bytes(),
                                          "xml")
    from_json = parse_subscription_details(
        (GOLDEN / "subscriptiondetails_v4.json").read_bytes(), "json")
    assert from_xml == from_json
    resource = from_xml.resources[0]
    assert resource.amount == Decimal(2) and type(resource.amount) is Decimal
    assert resource.resource_rate_period is not None
    assert resource.resource_rate_period.rate_period_id == 51
    assert [t.name for t in from_xml.service_plan.plan_name] == ["en", "nl"]


@pytest.mark.parametrize("fmt", ["xml", "json"])
def test_broken_documents_are_refused(fmt: str) -> None:
    body = (GOLDEN / f"invoices_v4.{fmt}").read_bytes()
    with pytest.raises(DocumentError, match=r"incomplete|not valid"):
        list(iter_records([body[: len(body) // 2]], fmt))  # type: ignore[arg-type]
    bad = body.replace(b"<Quantity>3<", b"<Quantity>three<").replace(b'"Quantity":3,',
                                                                      b'"Quantity":"three",')
    with pytest.raises(DocumentError, match="Quantity='three'"):
        list(iter_records([bad], fmt))  # type: ignore[arg-type]


# --- a million lines in flat memory ------------------------------------------------------------

MEMORY_PROBE = """
import json, resource, sys
from decimal import Decimal
from billing_api_client import BillingClient, LineItem
url, fmt = sys.argv[1], sys.argv[2]
count, total, invoice_total, base, ok = 0, Decimal(0), Decimal(0), None, True
with BillingClient(url, "not-checked-by-this-server") as client:
    for record in client.records("invoices", fmt=fmt):
        if isinstance(record, LineItem):
            count += 1
            total += record.line.extended_price
            invoice_total += record.line.extended_price
            if count == 20_000:  # imports done, parser and buffers warm
                base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        else:
            ok = ok and invoice_total == record.totals.total_excluding_vat
            invoice_total = Decimal(0)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "total": str(total), "totals_match": ok,
                  "base_kib": base, "peak_kib": peak}))
"""


@pytest.mark.parametrize(("fmt", "lines"), [("xml", 1000), ("json", 250)])
def test_a_million_lines_stream_in_flat_memory(fmt: str, lines: int) -> None:
    """1,000,000 price lines (about 750 MB of XML) streamed over HTTP and iterated by the
    client in a subprocess: its peak RSS grows by less than 30 MiB past the first lines.
    JSON, the same mechanism, with 250,000 lines: each million takes minutes on a loaded
    CI machine."""
    shape = Shape(invoices=10, customers=10, subscriptions=10, lines=lines)
    with serve_big_document(shape) as url:
        result = subprocess.run([sys.executable, "-c", MEMORY_PROBE, url, fmt],
                                capture_output=True, text=True, timeout=1800, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    assert figures["count"] == shape.total_lines == lines * 1000
    assert Decimal(figures["total"]) == expected_total(shape)
    assert figures["totals_match"]
    growth = (figures["peak_kib"] - figures["base_kib"]) * 1024
    print(f"{fmt}: {figures['count']} lines, peak RSS {figures['peak_kib'] // 1024} MiB, "
          f"+{growth / MIB:.1f} MiB after the first 20,000 (target < 30)")  # pytest -s
    assert growth < 30 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB"


# --- small loopback servers -----------------------------------------------------------------


@contextmanager
def _server(answer: Callable[[BaseHTTPRequestHandler, int], None]) -> Iterator[str]:
    """A loopback server calling ``answer(handler, n)`` for its n-th request (from 0)."""
    seen = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            with lock:
                n = seen[0]
                seen[0] += 1
            answer(self, n)

        def log_message(self, *args: object) -> None:
            pass

    with loopback.serve(Handler) as url:
        yield url


def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
           headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


PROBLEM_503 = b'{"status":503,"code":"server_busy","detail":"try again"}'
INVOICES_JSON = (GOLDEN / "invoices_v4.json").read_bytes()


def test_retries_honour_retry_after_and_are_bounded() -> None:
    in_two_seconds = email.utils.formatdate(time.time() + 2, usegmt=True)

    def answer(handler: BaseHTTPRequestHandler, n: int) -> None:
        if n == 0:
            _reply(handler, 503, PROBLEM_503, {"Retry-After": "3",
                                               "Content-Type": "application/problem+json"})
        elif n == 1:
            _reply(handler, 429, b"", {"Retry-After": in_two_seconds})
        else:
            _reply(handler, 200, INVOICES_JSON, {"Content-Type": "application/json"})

    waits: list[float] = []
    with _server(answer) as url, BillingClient(url, "k", sleep=waits.append) as client:
        invoices = list(client.invoices("invoices", fmt="json"))
    assert len(invoices) == 2
    assert waits[0] == 3.0 and 0 < waits[1] <= 2.0  # seconds, then an HTTP date
    assert client.retries == 2

    def always_busy(handler: BaseHTTPRequestHandler, n: int) -> None:
        _reply(handler, 503, PROBLEM_503, {"Retry-After": "86400",
                                           "Content-Type": "application/problem+json"})

    waits.clear()
    with (_server(always_busy) as url,
          BillingClient(url, "k", sleep=waits.append, max_retries=3,
                        max_retry_wait=5) as client,
          pytest.raises(ApiError) as caught):
        list(client.records("invoices"))
    assert caught.value.status == 503 and caught.value.code == "server_busy"
    assert waits == [5.0, 5.0, 5.0]  # a day's Retry-After is capped, three times, no more


def test_etag_cache_sends_if_none_match_and_serves_304_from_the_copy(tmp_path: Path) -> None:
    state = {"tag": '"v1"'}
    asked: list[str | None] = []

    def answer(handler: BaseHTTPRequestHandler, n: int) -> None:
        asked.append(handler.headers.get("If-None-Match"))
        if handler.headers.get("If-None-Match") == state["tag"]:
            _reply(handler, 304, b"", {"ETag": state["tag"]})
        else:
            _reply(handler, 200, INVOICES_JSON + state["tag"].encode(), {"ETag": state["tag"]})

    params = {"format": "json"}
    with _server(answer) as url:
        with BillingClient(url, "k", cache=EtagCache()) as client:  # in memory
            first = client.get("invoices", params)
            second = client.get("invoices", params)
        assert not first.from_cache and second.from_cache
        assert second.content == first.content and second.status == 200
        assert asked == [None, '"v1"']
        for _ in range(2):  # on disk: the second client finds the first one's copy
            with BillingClient(url, "k", cache=EtagCache(tmp_path / "cache")) as client:
                kept = client.get("invoices", params)
        assert kept.from_cache and kept.content == first.content
        state["tag"] = '"v2"'  # the document changed: a new tag, a new body
        with BillingClient(url, "k", cache=EtagCache(tmp_path / "cache")) as client:
            changed = client.get("invoices", params)
            again = client.get("invoices", params)
    assert not changed.from_cache and changed.content.endswith(b'"v2"')
    assert again.from_cache and again.content == changed.content
    assert asked[2:] == [None, '"v1"', '"v1"', '"v2"']


# --- webhooks --------------------------------------------------------------------------------

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_webhooks_verified_like_the_standard_webhooks_library() -> None:
    body = b'{"type":"invoices.created","data":{"invoices":3,"total":"12.50"}}'
    library = standardwebhooks.Webhook(SECRET)
    now = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
               "webhook-signature": library.sign("msg_1", _utc(now), body.decode())}
    payload = webhooks.verify(SECRET, headers, body)
    assert payload["data"]["invoices"] == 3
    # Ours signs as the library verifies (title-case headers too).
    ours = webhooks.sign(SECRET, "msg_2", now, body)
    assert ours == library.sign("msg_2", _utc(now), body.decode())
    library.verify(body, {"webhook-id": "msg_2", "webhook-timestamp": str(now),
                          "webhook-signature": ours})
    assert webhooks.verify(SECRET, {"Webhook-Id": "msg_2", "Webhook-Timestamp": str(now),
                                    "Webhook-Signature": "v1,bm9wZQ== " + ours}, body)
    for bad_body, bad_headers in (
        (body + b" ", headers),
        (body, {**headers, "webhook-id": "msg_9"}),
        (body, {**headers, "webhook-timestamp": str(now - 3600)}),
        (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
    ):
        with pytest.raises(webhooks.WebhookVerificationError):
            webhooks.verify(SECRET, bad_headers, bad_body)
    other = "whsec_" + base64.b64encode(b"another secret of 32 bytes!!!!!!").decode()
    with pytest.raises(webhooks.WebhookVerificationError):
        webhooks.verify(other, headers, body)


def _utc(timestamp: int) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


# --- the command line ------------------------------------------------------------------------


def test_cli_refuses_a_key_on_the_command_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BILLING_API_KEY"}
    for option in ("--key", "--api-key"):
        refused = subprocess.run(
            [str(CLIENT_CLI), "sync", "--url", "http://127.0.0.1:9", "--out", str(tmp_path),
             option, "secret-on-the-command-line"],
            capture_output=True, text=True, env=env, timeout=60, check=False)
        assert refused.returncode == 2
        assert "BILLING_API_KEY" in refused.stderr
    missing = subprocess.run([str(CLIENT_CLI), "sync", "--url", "http://127.0.0.1:9", "--out",
                              str(tmp_path)], capture_output=True, text=True, env=env,
                             timeout=60, check=False)
    assert missing.returncode == 2 and "set BILLING_API_KEY" in missing.stderr
    assert list(tmp_path.iterdir()) == []


def test_records_and_invoice_ends_are_the_public_types() -> None:
    assert {LineItem, InvoiceEnd} == set(m.Record.__args__)


def test_retry_after_reads_seconds_and_dates() -> None:
    now = time.time()
    assert retry_after("7", now) == 7.0
    assert 29 <= (retry_after(email.utils.formatdate(now + 30, usegmt=True), now) or 0) <= 30
    assert retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert retry_after("soon", now) is None and retry_after(None, now) is None


def test_one_sync_per_folder_at_a_time(tmp_path: Path) -> None:
    import fcntl

    with open(tmp_path / ".billing-api-client.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with BillingClient("http://127.0.0.1:9", "k") as client, \
                pytest.raises(SyncError, match="another sync is running"):
            sync_directory(client, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".billing-api-client.lock"]
