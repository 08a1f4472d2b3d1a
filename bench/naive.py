"""A naive peer: ``/api/v4/invoices`` written the way most services are, against ours.

    python bench/naive.py [--lines 1000000] [--backend sqlite] [--quick]
    python bench/naive.py serve --port 8001      # just the peer (BILLING_API_DATABASE_URL)

The peer loads ORM entities (price line, customer, subscription, plan, category per row;
invoices and attributes as entities too), builds the whole document in memory (an lxml tree
for XML, nested dicts for JSON with ``json.dumps``), then sends it. It exists only here, as a
yardstick: no key check, no streaming. Its output is checked against ours (XML canonicalised,
JSON parsed with decimals), so both do the same work.

Per backend and format, each server is started fresh for every download, so its peak RSS
(VmHWM) belongs to that download alone; time is the best of ``--repeats``, interleaved.
Targets at 1,000,000 lines: ours ≥ 5× faster and ≥ 20× less peak memory. The peer needs
about 10–20 KiB per line, so on a shared machine it is measured at 50,000 and 200,000 lines
and extrapolated linearly to the size asked for whenever its predicted peak would exceed
``--cap-mib`` (the output says so); ours is always measured. The last line printed is a
JSON summary.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

PROBES = (50_000, 200_000)  # sizes the peer is measured at when 1,000,000 would not fit
TARGET_SPEED = 5.0
TARGET_MEMORY = 20.0
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
CENT = Decimal("0.01")


# --- the peer ---------------------------------------------------------------------------------


def _money(value: Decimal | None) -> str:
    if value is None:
        return ""
    cents = value.quantize(CENT)
    return str(cents) if cents == value else format(value.normalize(), "f")


def _plain(value: Decimal | None) -> str:
    return "" if value is None else format(value.normalize(), "f")


def _date(value: Any) -> str:
    return "" if value is None else value.strftime("%Y%m%d")


def build_document(session: Any, partner_id: int, environment: str) -> dict[str, Any]:
    """The whole ``invoices`` document as nested dicts of Python values (ORM all the way)."""
    from sqlalchemy import select

    from billing_api.billing.countries import language_name
    from billing_api.billing.models import Invoice, PriceLine
    from billing_api.catalog.models import PlanCategory, ServicePlan
    from billing_api.customers.models import Customer, Subscription, SubscriptionAttribute
    from billing_api.export.documents import RECEIVER, SENDER

    invoices = session.scalars(
        select(Invoice).where(Invoice.partner_id == partner_id,
                              Invoice.environment == environment, Invoice.kind == "purchase")
        .order_by(Invoice.invoice_date, Invoice.id)).all()
    rows = session.execute(
        select(PriceLine, Customer, Subscription, ServicePlan, PlanCategory)
        .join(Customer, Customer.id == PriceLine.customer_id)
        .join(Subscription, Subscription.id == PriceLine.subscription_id)
        .join(ServicePlan, ServicePlan.id == Subscription.plan_id)
        .join(PlanCategory, PlanCategory.id == ServicePlan.category_id)
        .where(PriceLine.partner_id == partner_id, PriceLine.environment == environment,
               PriceLine.kind == "purchase")
        .order_by(PriceLine.invoice_date, PriceLine.invoice_id, PriceLine.customer_id,
                  PriceLine.subscription_id, PriceLine.id)).all()
    attributes: dict[int, list[Any]] = {}
    for attribute in session.scalars(select(SubscriptionAttribute)
                                     .order_by(SubscriptionAttribute.id)):
        attributes.setdefault(attribute.subscription_id, []).append(attribute)
    by_invoice: dict[int, dict[int, dict[int, list[Any]]]] = {}
    for line, customer, sub, plan, category in rows:
        (by_invoice.setdefault(line.invoice_id, {}).setdefault(customer.id, {})
         .setdefault(sub.id, []).append((line, customer, sub, plan, category)))
    documents = []
    for invoice in invoices:
        customers = []
        for subs in by_invoice.get(invoice.id, {}).values():
            _, customer, *_ = next(iter(subs.values()))[0]
            subscriptions = []
            for items in subs.values():
                _, _, sub, plan, category = items[0]
                subscriptions.append({
                    "SubscriptionID": sub.id, "SubscriptionName": sub.name,
                    "BillingModel": plan.billing_model, "PlanID": plan.id,
                    "PlanName": plan.name, "PlanCategoryName": category.name,
                    "StartDate": _date(sub.start_date), "SubscriptionPONumber": sub.po_number,
                    "SubscriptionDetails": [
                        {"Attribute": a.attribute, "AttributeValue": a.value,
                         "AttributeDescription": a.description, "noshow": a.noshow}
                        for a in attributes.get(sub.id, [])],
                    "PriceLines": [_line(line) for line, *_ in items],
                })
            customers.append({"AccountID": customer.id,
                              "CustomerNumber": customer.customer_number,
                              "CompanyName": customer.company_name,
                              "CostCenter": customer.cost_center,
                              "Subscriptions": subscriptions})
        credit = invoice.type == "credit"
        documents.append({
            "Header": {
                "InvoiceID": invoice.invoice_number, "Description": invoice.description,
                "Date": _date(invoice.invoice_date),
                "ExpirationDate": _date(invoice.due_date), "Currency": invoice.currency,
                "TermsOfPaymentDays": invoice.terms_of_payment_days,
                "Type": "Credit" if credit else "Invoice", "TypeIdentifier": 2 if credit else 1,
                "LanguageCode": invoice.language_code,
                "Language": language_name(invoice.language_code)},
            "Sender": {name: invoice.sender.get(name, "") for name in SENDER},
            "Receiver": {name: invoice.receiver.get(name, "") for name in RECEIVER},
            "Customers": customers,
            "Totals": {"TotalExcludingVAT": invoice.total_excluding_vat,
                       "TotalVAT": invoice.total_vat,
                       "TotalIncludingVAT": invoice.total_including_vat},
        })
    return {"Invoices": documents}


def _line(line: Any) -> dict[str, Any]:
    return {
        "LineId": line.id, "UID": line.uid, "Description": line.description, "SKU": line.sku,
        "Quantity": ("plain", line.quantity), "QuantityType": line.quantity_type,
        "UnitPrice": line.unit_price, "Discount": line.discount,
        "ExtendedPrice": line.extended_price, "VAT": line.vat,
        "TaxZoneID": line.tax_zone_id, "TaxPercentage": ("plain", line.tax_percentage),
        "StartDate": _date(line.start_date), "EndDate": _date(line.end_date),
        "Duration": ("plain", line.duration), "DurationType": line.duration_type,
        "ConsumerCompanyName": line.consumer_company_name,
        "ConsumerCompanyNumber": line.consumer_company_number,
        "RatePeriodID": line.rate_period_id, "SubPONumber": line.sub_po_number,
        "ChargeType": line.charge_type, "BillingFrequency": line.billing_frequency,
        "InvoiceRowHash": line.row_hash,
    }


def _text(value: Any) -> str:
    if isinstance(value, tuple):  # ("plain", Decimal)
        return _plain(value[1])
    if isinstance(value, Decimal):
        return _money(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return ILLEGAL_XML.sub("", str(value)) if value is not None else ""


def to_xml(document: dict[str, Any]) -> bytes:
    from lxml import etree

    nsmap = {"xsd": "http://www.w3.org/2001/XMLSchema",
             "xsi": "http://www.w3.org/2001/XMLSchema-instance"}
    root = etree.Element("InvoiceResponse", nsmap=nsmap)
    wrappers = {"Customers": "Customer", "Subscriptions": "Subscription",
                "PriceLines": "PriceLine", "SubscriptionDetails": "SubscriptionDetail"}

    def fill(parent: Any, mapping: dict[str, Any]) -> None:
        for name, value in mapping.items():
            element = etree.SubElement(parent, name)
            if isinstance(value, dict):
                fill(element, value)
            elif isinstance(value, list):
                for item in value:
                    fill(etree.SubElement(element, wrappers[name]), item)
            else:
                element.text = _text(value) or None

    for invoice in document["Invoices"]:
        element = etree.SubElement(root, "Invoice")
        fill(element, {key: invoice[key] for key in
                       ("Header", "Sender", "Receiver", "Customers", "Totals")})
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8")) + b"\n"


def to_json(document: dict[str, Any]) -> bytes:
    def plain_values(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain_values(v) for k, v in sorted(value.items(),
                                                          key=lambda kv: kv[0].lower())}
        if isinstance(value, list):
            return [plain_values(v) for v in value]
        if isinstance(value, tuple):
            return value[1]
        return value

    return (json.dumps(plain_values(document), default=float, ensure_ascii=False,
                       separators=(",", ":")) + "\n").encode()


def create_naive_app() -> Any:
    from fastapi import FastAPI, Query
    from fastapi.responses import Response

    from billing_api.db import make_engine, make_session_factory
    from billing_api.settings import Settings

    settings = Settings()
    factory = make_session_factory(make_engine(settings.database_url))
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"

    @app.get("/naive/invoices")
    def invoices(partner_id: int = Query(alias="partnerId"),
                 fmt: str = Query("xml", alias="format")) -> Response:
        with factory() as session:
            document = build_document(session, partner_id, "production")
        if fmt == "json":
            return Response(to_json(document), media_type="application/json")
        return Response(to_xml(document), media_type="application/xml")

    return app


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(create_naive_app(), host="127.0.0.1", port=port, log_level="warning")


# --- the benchmark ----------------------------------------------------------------------------


def _fetch(base: str, path: str, params: dict[str, str], headers: dict[str, str]
           ) -> tuple[bytes, float]:
    import httpx

    started = time.perf_counter()
    response = httpx.get(base + path, params=params, headers=headers, timeout=7200)
    response.raise_for_status()
    return response.content, time.perf_counter() - started


def _same_document(fmt: str, ours: bytes, theirs: bytes) -> bool:
    if fmt == "json":
        return bool(json.loads(ours, parse_float=Decimal)
                    == json.loads(theirs, parse_float=Decimal))
    from lxml import etree

    def canonical(body: bytes) -> bytes:
        return bytes(etree.canonicalize(body.split(b"?>", 1)[1].strip().decode()).encode())

    return canonical(ours) == canonical(theirs)


def _download(db: common.Database, secret: str, partner_id: int, name: str, fmt: str,
              keep: bool = False) -> dict[str, Any]:
    """One download from a fresh server (ours or the peer): lines, seconds, peak RSS."""
    command = (None if name == "ours" else
               [sys.executable, str(Path(__file__).resolve()), "serve", "--port", "{port}"])
    body: bytes | None = None
    with common.server(db.env(), command) as srv:
        idle = srv.peak_rss_kib()
        if name == "ours":
            path, params, headers = "/api/v4/invoices", {}, {"X-Api-Key": secret}
        else:
            path, params, headers = "/naive/invoices", {"partnerId": str(partner_id)}, {}
        if keep:
            body, seconds = _fetch(srv.base, path, {**common.DATE_RANGE, "format": fmt,
                                                    **params}, headers)
            lines = body.count(b"<PriceLine>" if fmt == "xml" else b'"LineId":')
        else:  # streamed and counted: a million-line body is not kept in this process
            lines, _, seconds = common.download(srv.base, path, secret, fmt, params)
        peak = srv.peak_rss_kib()
    common.say(f"{db.backend:>10} {fmt:>4} {name:>5}: {lines} lines {seconds:7.2f} s, idle "
               f"{idle / 1024:.0f} MiB, peak {peak / 1024:.0f} MiB ({common.load_text()})")
    return {"lines": lines, "seconds": seconds, "peak_kib": peak, "idle_kib": idle,
            "body": body}


def _best(db: common.Database, secret: str, partner_id: int, fmt: str, repeats: int,
          names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Best time and highest peak of each of ``names``, interleaved."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeats):
        for name in names:
            run = _download(db, secret, partner_id, name, fmt)
            if name not in best:
                best[name] = run
            else:
                best[name]["seconds"] = min(best[name]["seconds"], run["seconds"])
                best[name]["peak_kib"] = max(best[name]["peak_kib"], run["peak_kib"])
    return best


def measure(lines: int, backend: str, repeats: int, cap_mib: int) -> dict[str, Any]:
    """Ours at ``lines``; the peer at ``lines`` too when its predicted peak fits ``cap_mib``,
    else at two smaller sizes, extrapolated linearly (its time and memory are linear in the
    number of lines; ours are measured)."""
    results: dict[str, Any] = {}
    probe = min(lines, PROBES[0])
    small = common.demo_database(probe, backend)
    small_partner, small_secret = common.api_key(small)
    db = common.demo_database(lines, backend)
    partner_id, secret = common.api_key(db)
    for fmt in ("xml", "json"):
        # The smallest size first: same document?, and the peer's memory per line.
        ours_small = _download(small, small_secret, small_partner, "ours", fmt, keep=True)
        naive_small = _download(small, small_secret, small_partner, "naive", fmt, keep=True)
        same = _same_document(fmt, ours_small.pop("body"), naive_small.pop("body"))
        per_line = max(naive_small["peak_kib"] - naive_small["idle_kib"], 0) / max(
            naive_small["lines"], 1)
        predicted_mib = (naive_small["idle_kib"] + per_line * lines * 1.05) / 1024
        note = ""
        if lines == probe:  # the probe was the measurement; repeat if asked
            ours, naive = ours_small, naive_small
            if repeats > 1:
                more = _best(db, secret, partner_id, fmt, repeats - 1, ("ours", "naive"))
                for mine, extra in ((ours, more["ours"]), (naive, more["naive"])):
                    mine["seconds"] = min(mine["seconds"], extra["seconds"])
                    mine["peak_kib"] = max(mine["peak_kib"], extra["peak_kib"])
        elif predicted_mib <= cap_mib or lines <= PROBES[1]:
            best = _best(db, secret, partner_id, fmt, repeats, ("ours", "naive"))
            ours, naive = best["ours"], best["naive"]
        else:
            ours = _best(db, secret, partner_id, fmt, repeats, ("ours",))["ours"]
            middle = common.demo_database(PROBES[1], backend)
            mid_partner, mid_secret = common.api_key(middle)
            naive_mid = _best(middle, mid_secret, mid_partner, fmt, 1, ("naive",))["naive"]
            naive = {"lines": ours["lines"]}
            for key in ("seconds", "peak_kib"):
                slope = (naive_mid[key] - naive_small[key]) / (
                    naive_mid["lines"] - naive_small["lines"])
                naive[key] = naive_mid[key] + slope * (ours["lines"] - naive_mid["lines"])
            note = (f"peer measured at {naive_small['lines']:,} and {naive_mid['lines']:,} "
                    f"lines and extrapolated (its predicted peak, {predicted_mib / 1024:.1f} "
                    f"GiB, exceeds the {cap_mib / 1024:.1f} GiB cap on this shared machine)")
        results[fmt] = {
            "lines": ours["lines"], "same_document": same, "measured_note": note,
            "ours_lines_per_s": round(ours["lines"] / ours["seconds"]),
            "naive_lines_per_s": round(ours["lines"] / naive["seconds"]),
            "speedup": common.ratio(naive["seconds"], ours["seconds"]),
            "ours_peak_rss_mib": round(ours["peak_kib"] / 1024, 1),
            "naive_peak_rss_mib": round(naive["peak_kib"] / 1024, 1),
            "memory_ratio": common.ratio(naive["peak_kib"], ours["peak_kib"]),
            "target_speedup": TARGET_SPEED, "target_memory_ratio": TARGET_MEMORY,
            "load": common.machine_load(),
        }
        common.say(f"{backend:>10} {fmt:>4}: ours {results[fmt]['speedup']}× faster, "
                   f"{results[fmt]['memory_ratio']}× less memory; same document: {same}"
                   + (f"; {note}" if note else ""))
    return results


def _available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 8192


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        parser = argparse.ArgumentParser(description="serve the naive peer")
        parser.add_argument("serve")
        parser.add_argument("--port", type=int, default=8001)
        serve(parser.parse_args().port)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_common_arguments(parser)
    parser.add_argument("--lines", type=int, help="default 1,000,000 (20,000 with --quick)")
    parser.add_argument("--repeats", type=int, help="downloads per server (default 2, quick 1)")
    parser.add_argument("--cap-mib", type=int, help="largest peak the peer may reach (default: "
                        "a third of MemAvailable, at most 8 GiB); beyond it, extrapolate")
    args = parser.parse_args()
    cap = args.cap_mib or min(8192, _available_mib() // 3)
    lines = args.lines or (common.QUICK_LINES if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 2)
    backends, notes = common.chosen_backends(args.backend)
    if args.quick:
        notes.append(f"--quick: {lines} lines; the full run uses 1,000,000")
    summary: dict[str, Any] = {"benchmark": "naive", "quick": args.quick, "notes": notes,
                               "backends": {b: measure(lines, b, repeats, cap) for b in backends}}
    common.emit_summary(summary)


if __name__ == "__main__":
    main()
