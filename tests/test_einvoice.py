"""E-invoices: Peppol BIS 3 UBL and PDF of every invoice, one or as a streamed ZIP.

Every UBL document is checked by the official rules (``../shared/einvoice/validate``: UBL 2.1
XSD, CEN EN 16931, Peppol BIS 3), many files per call as its start-up costs about a second;
PDFs are read back with ``pdftotext``. Totals are compared with the v4 JSON of the same
invoice, to the cent.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import Company
from billing_api.app import create_app
from billing_api.billing.models import Invoice
from billing_api.billing.rating import extended_units, vat_units
from billing_api.billing.run import bill_partner
from billing_api.customers.models import Customer
from billing_api.db import transaction
from billing_api.demo.generator import build_demo
from billing_api.einvoice import documents, pdf, ubl
from billing_api.einvoice import source as s
from billing_api.einvoice.zipstream import ZipStream
from billing_api.environments import Environment
from billing_api.export.source import Scope
from billing_api.importer import ImportRejected, import_files
from billing_api.settings import Settings
from tests.access_helpers import open_demo_api
from tests.conftest import skip_or_fail
from tests.http_server import serve

REPO = Path(__file__).resolve().parent.parent
VALIDATOR = REPO.parent / "shared" / "einvoice" / "validate"
TODAY = dt.date(2026, 12, 5)
ALL = {"startDate": "20200101", "endDate": "20271231"}
UBL_NS = {
    "cbc": "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2",
    "cac": "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2",
}
D = Decimal


def validate(files: list[Path]) -> str:
    """Run the official validator once on ``files``; fail on any fatal problem."""
    if not VALIDATOR.is_file():
        skip_or_fail(f"the Peppol validator is missing: {VALIDATOR}")
    assert files, "nothing to validate"
    result = subprocess.run([sys.executable, str(VALIDATOR), *map(str, files)],
                            capture_output=True, text=True, timeout=600, check=False)
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert re.fullmatch(rf"{len(files)} files?, 0 fatal, \d+ warnings?", summary), (
        result.stdout[-4000:] + result.stderr[-2000:]
    )
    assert result.returncode == 0, result.stdout[-4000:]
    return summary


def pdftotext(data: bytes) -> str:
    if shutil.which("pdftotext") is None:
        skip_or_fail("pdftotext (Debian poppler-utils) is not installed")
    result = subprocess.run(["pdftotext", "-layout", "-", "-"], input=data,
                            capture_output=True, check=True, timeout=60)
    return result.stdout.decode()


# --- the demo, served ------------------------------------------------------------------------


@dataclass
class Demo:
    base: str
    secrets: dict[str, str]  # environment → key
    partner_id: int

    def get(self, path: str, env: str = "production", accept: str | None = None,
            **params: str) -> httpx.Response:
        headers = {"X-Api-Key": self.secrets[env]}
        if accept:
            headers["Accept"] = accept
        return httpx.get(self.base + path, params=params, headers=headers, timeout=120)


@pytest.fixture
def demo(factory: sessionmaker[Session], settings: Settings) -> Iterator[Demo]:
    # 30 customers: the demo's cancellations and amount changes then give negative invoices
    # (credit notes) in both environments, besides corrections inside positive ones.
    build_demo(factory, customers=30, months=3, today=TODAY)
    with transaction(factory) as session:
        company, secrets = open_demo_api(session, settings)
        partner_id = company.id
    quiet = settings.model_copy(update={"rate_limit_per_minute": 1_000_000})
    with serve(create_app(quiet)) as base:
        yield Demo(base, secrets, partner_id)


def _totals_v4(demo: Demo, endpoint: str, env: str) -> dict[str, tuple[D, D, D]]:
    response = demo.get(f"/api/v4/{endpoint}", env, format="json", **ALL)
    document = json.loads(response.text, parse_float=D)
    return {
        str(invoice["Header"]["InvoiceID"]): (D(str(invoice["Totals"]["TotalExcludingVAT"])),
                                              D(str(invoice["Totals"]["TotalVAT"])),
                                              D(str(invoice["Totals"]["TotalIncludingVAT"])))
        for invoice in document["Invoices"]
    }


def _ubl_totals(data: bytes) -> tuple[str, D, D, D]:
    """(InvoiceID, excl., VAT, incl.) read back from a UBL document, signed as in v4."""
    root = etree.fromstring(data)
    sign = -1 if root.tag.endswith("}CreditNote") else 1
    total = root.find("cac:LegalMonetaryTotal", UBL_NS)
    assert total is not None
    excl = D(total.findtext("cbc:TaxExclusiveAmount", namespaces=UBL_NS) or "")
    assert excl == D(total.findtext("cbc:LineExtensionAmount", namespaces=UBL_NS) or "")
    incl = D(total.findtext("cbc:TaxInclusiveAmount", namespaces=UBL_NS) or "")
    assert incl == D(total.findtext("cbc:PayableAmount", namespaces=UBL_NS) or "")
    vat = D(root.findtext("cac:TaxTotal/cbc:TaxAmount", namespaces=UBL_NS) or "")
    return root.findtext("cbc:ID", namespaces=UBL_NS) or "", sign * excl, sign * vat, sign * incl


def _problem(response: httpx.Response) -> dict[str, str]:
    """An XML problem's fields (the default form of an error answer)."""
    root = etree.fromstring(response.content)
    assert root.tag == "{urn:ietf:rfc:7807}problem"
    return {etree.QName(child).localname: child.text or "" for child in root}


def _zip(response: httpx.Response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert "content-length" not in response.headers  # streamed
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_every_demo_ubl_document_is_valid_and_matches_the_v4_totals(
    demo: Demo, tmp_path: Path
) -> None:
    files: list[Path] = []
    categories: set[str] = set()
    roots: set[str] = set()
    for env in ("production", "sandbox"):
        for endpoint in ("invoices", "customerinvoices"):
            expected = _totals_v4(demo, endpoint, env)
            response = demo.get(f"/api/v4/{endpoint}", env, format="ubl", **ALL)
            assert response.headers["content-disposition"] == (
                f'attachment; filename="{endpoint}_v4_20200101_20271231_ubl.zip"'
            )
            archive = _zip(response)
            assert sorted(archive.namelist()) == sorted(f"{n}.xml" for n in expected)
            for name in archive.namelist():
                data = archive.read(name)
                number, *totals = _ubl_totals(data)
                assert f"{number}.xml" == name
                assert tuple(totals) == expected[number], number
                categories.update(re.findall(rb"<cac:ClassifiedTaxCategory><cbc:ID>(\w+)",
                                             data))
                root = etree.fromstring(data).tag.rsplit("}", 1)[1]
                roots.add(root if totals[2] >= 0 else f"negative {root}")
                if b"Correction" in data:
                    roots.add("with corrections")
                path = tmp_path / f"{env}-{endpoint}-{name}"
                path.write_bytes(data)
                files.append(path)
            # One invoice by itself, the same bytes as its ZIP entry.
            first = sorted(expected)[0]
            one = demo.get(f"/api/v4/{endpoint}/{first}", env, format="ubl")
            assert one.status_code == 200, one.text
            assert one.headers["content-disposition"] == f'attachment; filename="{first}.xml"'
            assert one.content == archive.read(f"{first}.xml")
    assert {b"S", b"AE", b"G"} <= categories  # domestic, reverse charge, export
    # Credit notes (negative, naming the corrected invoice) or, for a Dutch seller with no
    # earlier invoice to name, negative invoices; and corrections inside invoices.
    assert "Invoice" in roots and "with corrections" in roots, roots
    assert roots & {"negative CreditNote", "negative Invoice"}, roots
    validate(files)


def test_pdfs_read_back_with_the_v4_totals(demo: Demo) -> None:
    expected = _totals_v4(demo, "customerinvoices", "production")
    archive = _zip(demo.get("/api/v4/customerinvoices", format="pdf", **ALL))
    assert sorted(archive.namelist()) == sorted(f"{n}.pdf" for n in expected)
    for name in archive.namelist()[:6]:
        number = name.removesuffix(".pdf")
        text = pdftotext(archive.read(name))
        excl, vat, incl = expected[number]
        assert number in text
        for label, value in (("Total excluding VAT", excl), ("VAT", vat),
                             ("Total including VAT", incl)):
            assert re.search(rf"{label}\s+{pdf.money(int(value * 10000))} EUR", text), (label,
                                                                                       text)
        assert "VAT breakdown" in text and "IBAN" in text


def test_one_invoice_in_every_form(demo: Demo) -> None:
    number = sorted(_totals_v4(demo, "invoices", "production"))[0]
    path = f"/api/v4/invoices/{number}"
    xml = demo.get(path)
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
    root = etree.fromstring(xml.content)
    assert [i.findtext(".//InvoiceID") for i in root.iter("{*}Invoice")] == [number]
    day = root.findtext(".//Invoice/Header/Date") or root.findtext(".//{*}Date")
    assert xml.headers["content-disposition"] == (
        f'attachment; filename="invoices_v4_{day}_{day}.xml"')
    as_json = demo.get(path, format="json").json()
    assert [i["Header"]["InvoiceID"] for i in as_json["Invoices"]] == [number]
    assert demo.get(path, accept="application/json").json() == as_json
    as_pdf = demo.get(path, accept="application/pdf")
    assert as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF")
    assert as_pdf.headers["content-disposition"] == f'attachment; filename="{number}.pdf"'
    embedded = demo.get(path, format="ubl", embedPdf="true")
    binary = etree.fromstring(embedded.content).findtext(
        "cac:AdditionalDocumentReference/cac:Attachment/cbc:EmbeddedDocumentBinaryObject",
        namespaces=UBL_NS)
    assert binary and base64.b64decode(binary).startswith(b"%PDF")


def test_another_partners_or_environments_invoice_is_404_and_v3_refuses(
    demo: Demo, factory: sessionmaker[Session]
) -> None:
    production = sorted(_totals_v4(demo, "customerinvoices", "production"))
    sandbox = set(_totals_v4(demo, "customerinvoices", "sandbox"))
    only_production = next(n for n in production if n not in sandbox)
    assert demo.get(f"/api/v4/customerinvoices/{only_production}").status_code == 200
    missing = demo.get(f"/api/v4/customerinvoices/{only_production}", "sandbox", format="ubl")
    assert missing.status_code == 404
    assert demo.get("/api/v4/customerinvoices/NO-SUCH-1", format="pdf").status_code == 404
    # Purchase invoice numbers are the distributor's: the partner's customer invoice is not one.
    assert demo.get(f"/api/v4/invoices/{only_production}", format="ubl").status_code == 404
    with transaction(factory) as session:
        other = Company(name="Other Partner BV", kind="partner")
        session.add(other)
        session.flush()
        session.execute(update(Invoice).where(Invoice.invoice_number == only_production,
                                              Invoice.kind == "customer")
                        .values(partner_id=other.id))
    gone = demo.get(f"/api/v4/customerinvoices/{only_production}", format="ubl")
    assert gone.status_code == 404 and _problem(gone)["code"] == "invoice_not_found"
    old = demo.get(f"/api/v3/customerinvoices/{production[0]}", format="ubl")
    assert old.status_code == 404 and "start in v4" in _problem(old)["detail"]
    refused = demo.get("/api/v3/invoices", format="ubl", **ALL)
    assert refused.status_code == 404 and "starts in v4" in _problem(refused)["detail"]
    assert _problem(refused)["code"] == "format_not_in_version"


def test_a_party_without_an_electronic_address_is_a_409_naming_it(
    demo: Demo, factory: sessionmaker[Session]
) -> None:
    number = sorted(_totals_v4(demo, "customerinvoices", "production"))[1]
    with transaction(factory) as session:
        invoice = session.scalars(select(Invoice).where(Invoice.invoice_number == number,
                                                        Invoice.kind == "customer")).one()
        receiver = dict(invoice.receiver)
        receiver.pop("EndpointID")  # as billed before the field existed
        invoice.receiver = receiver
        session.execute(update(Customer).where(Customer.id == invoice.customer_id)
                        .values(endpoint_id=""))
        name = receiver["CompanyName"]
    for fmt in ("ubl", "pdf"):
        problem = demo.get(f"/api/v4/customerinvoices/{number}", format=fmt)
        assert problem.status_code == 409, problem.text
        body = _problem(problem)
        assert body["field"] == "buyer (customer).EndpointID"
        assert "electronic address" in body["detail"] and name in body["detail"]
    # The v4 document does not need it.
    assert demo.get(f"/api/v4/customerinvoices/{number}").status_code == 200


# --- odd invoices, generated ----------------------------------------------------------------

NON_LATIN = st.sampled_from(["Ωμέγα ΑΕ", "ООО Ромашка", "شركة النخيل", "Łódź Sp. z o.o.",
                             "Smith & Sons <\"Ltd\"> café", "株式会社テスト"])
ZONES = {1: "NL", 2: "RC", 3: "NON-EU", 4: "DE", 5: "NL-ZERO"}
ZONE_RATES = {1: 210000, 2: 0, 3: 0, 4: 190000, 5: 0}
UNITS = 10_000


@st.composite
def lines(draw: st.DrawFn) -> tuple[Any, ...]:
    quantity = draw(st.integers(-50, 500)) * UNITS // draw(st.sampled_from([1, 1, 4]))
    price = draw(st.integers(-2_000_000, 50_000_000))  # four decimals
    per_unit_discount = draw(st.sampled_from([0, 0, 1234, 5000]))
    duration = draw(st.sampled_from([UNITS, UNITS, 5161, 12 * UNITS, -3333]))
    zone = draw(st.sampled_from(sorted(ZONES)))
    discount = quantity * per_unit_discount
    extended = extended_units(quantity, price, discount, duration)
    vat = vat_units(extended, ZONE_RATES[zone])
    description = draw(st.one_of(NON_LATIN, st.text(min_size=1, max_size=300).filter(
        lambda t: t.strip())))
    return (1, description, draw(st.sampled_from(["SKU-1", "MS-365-BP-M", "x" * 60])),
            quantity, price, discount // UNITS, extended, vat, zone, ZONE_RATES[zone],
            "20261001", "20261031", duration, draw(st.sampled_from(["Month", "OneTime", "Day"])),
            draw(st.sampled_from(["Cycle Fee", "Correction", "Usage Fee"])), 7,
            draw(st.sampled_from(["", "Consumer Ltd"])))


def _party(name: str, endpoint: str) -> dict[str, Any]:
    return {"CompanyName": name, "Address": "Main Street 1 & <2>", "City": "Utrecht",
            "PostalCode": "3511 AB", "CountryCode": "NL", "VATNumber": "NL123456789B01",
            "EndpointID": endpoint, "EndpointScheme": "0106", "RegistrationNumber": endpoint,
            "RegistrationScheme": "0106", "IBAN": "NL91ABNA0417164300", "BIC": "ABNANL2A",
            "CustomerNumber": "C-1"}


@st.composite
def invoices(draw: st.DrawFn) -> s.EInvoice:
    rows = draw(st.lists(lines(), min_size=1, max_size=draw(st.sampled_from([1, 3, 60]))))
    excl = sum(r[s.L_EXTENDED] for r in rows)
    vat = sum(r[s.L_VAT] for r in rows)
    header = s.Header(
        id=1, kind=draw(st.sampled_from(["purchase", "customer"])),
        number=f"T-{draw(st.integers(1, 10**6))}", description=draw(st.sampled_from(
            ["", "October & <more>"])), date="20261123", due="20261207", currency="EUR",
        terms_days=14, partner_id=2, sender_company_id=1, customer_id=3, sender="{}",
        receiver="{}", total_excl=excl, total_vat=vat, total_incl=excl + vat)
    buyer = draw(NON_LATIN) + " " + draw(st.sampled_from(["", "x" * 150]))
    return s.EInvoice(header, rows, _party("Seller BV", "12345678"), _party(buyer, "87654321"),
                      {zone: code if code != "NL-ZERO" else "NL" for zone, code in ZONES.items()},
                      draw(st.sampled_from([("T-0", "20261023"), None])))


def test_odd_invoices_are_valid_ubl_and_readable_pdfs(tmp_path: Path) -> None:
    files: list[Path] = []
    kinds: set[str] = set()

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(invoices())
    def render(inv: s.EInvoice) -> None:
        try:
            data = ubl.render(inv)
        except Exception as exc:  # only the documented refusal is allowed
            assert getattr(exc, "code", "") == "einvoice_vat_rounding", exc
            return
        _number, excl, vat, incl = _ubl_totals(data)
        assert (excl, vat, incl) == tuple(D(v) / UNITS for v in (
            inv.header.total_excl, inv.header.total_vat, inv.header.total_incl))
        root = etree.fromstring(data).tag.rsplit("}", 1)[1]
        kinds.add(root if inv.header.total_incl >= 0 else f"negative {root}")
        # A credit note names the invoice it corrects; a Dutch seller without one has none.
        assert (root == "CreditNote") == (inv.header.total_incl < 0 and inv.corrects is not None)
        path = tmp_path / f"odd-{len(files)}.xml"
        path.write_bytes(data)
        files.append(path)
        if len(files) % 8 == 1:
            text = pdftotext(pdf.render(inv))
            assert inv.header.number in text
            assert pdf.money(abs(inv.header.total_incl)) in text

    render()
    assert kinds == {"Invoice", "negative CreditNote", "negative Invoice"}
    validate(files)


def test_zip_stream_is_a_valid_zip_of_its_entries() -> None:
    archive = ZipStream()
    chunks = [chunk for n in range(300) for chunk in archive.entry(
        f"N-{n}.xml", f"<x>{n}</x>".encode() * n, compress=n % 2 == 0)]
    chunks += list(archive.close())
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as read:
        assert read.testzip() is None
        assert read.namelist() == [f"N-{n}.xml" for n in range(300)]
        assert read.read("N-7.xml") == b"<x>7</x>" * 7


def test_the_import_example_carries_peppol_data_and_bills_valid_ubl(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:

    with factory.begin() as session:
        import_files(session, [REPO / "docs" / "examples" / "import-example.json"])
    with factory.begin() as session:
        partner = session.scalars(select(Company).where(Company.kind == "partner")).one()
        bill_partner(session, partner.id, Environment.PRODUCTION, "2026-10",
                     dt.date(2026, 11, 23))
        assert partner.endpoint_scheme == "0106"
    files = []
    with factory() as session:
        connection = session.connection()
        scope = Scope(partner.id, "production", dt.date(2026, 1, 1), dt.date(2026, 12, 31))
        for endpoint in ("invoices", "customerinvoices"):
            for inv in documents.invoices(connection, endpoint, scope):
                path = tmp_path / f"{endpoint}-{inv.header.number}.xml"
                path.write_bytes(documents.render(inv, "ubl"))
                files.append(path)
    validate(files)


def test_a_bad_iban_or_scheme_is_refused_by_the_import(
    factory: sessionmaker[Session], tmp_path: Path
) -> None:

    document = json.loads((REPO / "docs" / "examples" / "import-example.json").read_text())
    document["customers"][0]["iban"] = "NL00INGB0123456789"
    document["customers"][1]["endpoint_scheme"] = "EM"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ImportRejected) as caught, factory.begin() as session:
        import_files(session, [path])
    errors = " ".join(str(e) for e in caught.value.errors)
    assert "iban" in errors and "check digit" in errors
    assert "endpoint_scheme" in errors


def test_the_single_invoice_operations_are_described(settings: Settings) -> None:
    spec = create_app(settings).openapi()
    for endpoint in ("invoices", "customerinvoices"):
        operation = spec["paths"][f"/api/{{version}}/{endpoint}/{{InvoiceID}}"]["get"]
        assert operation["security"] == [{"ApiKey": []}, {"DownloadLink": []}]
        assert {"application/xml", "application/pdf", "application/json"} == set(
            operation["responses"]["200"]["content"])
        assert {"400", "401", "403", "404", "409", "429", "503"} <= set(operation["responses"])
        names = {p["name"]: p for p in operation["parameters"]}
        assert names["format"]["schema"]["enum"] == ["ubl", "pdf", "xml", "json"]
        assert {"version", "InvoiceID", "embedPdf"} <= set(names)
        collection = spec["paths"][f"/api/{{version}}/{endpoint}"]["get"]
        assert "application/zip" in collection["responses"]["200"]["content"]


def test_every_einvoice_query_binds_the_callers_partner_and_environment(
    factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``test_scoping`` does for the v4 documents: every statement an e-invoice request
    sends that reads a partner-owned table binds the caller's partner and environment."""
    from tests.export_world import Client, build_rich_world
    from tests.test_scoping import _reads_partner_data, _values, recorded_statements

    world = build_rich_world(factory, settings)
    with factory() as session:
        company_id = session.scalars(
            select(Company.id).where(Company.name == "Acme Cloud BV")).one()
        numbers = {kind: session.scalars(select(Invoice.invoice_number).where(
            Invoice.partner_id == company_id, Invoice.kind == kind,
            Invoice.environment == "production")).all() for kind in ("purchase", "customer")}
    requests: list[tuple[str, dict[str, str]]] = []
    for endpoint, kind in (("invoices", "purchase"), ("customerinvoices", "customer")):
        for fmt in ("ubl", "pdf"):
            requests.append((f"/api/v4/{endpoint}", {**world.window, "format": fmt}))
        for number in numbers[kind][:3]:
            for fmt in ("ubl", "pdf", "xml", "json"):
                requests.append((f"/api/v4/{endpoint}/{number}", {"format": fmt}))
    assert len(requests) > 8
    with serve(create_app(settings)) as base, recorded_statements(monkeypatch) as statements:
        client = Client(base, world.secret)
        for path, params in requests:
            response = client.get(path, **params)
            # The rich world's parties lack Peppol addresses: a 409 after reading them.
            assert response.status_code in (200, 409), (path, params, response.text[:300])
    scoped = [(sql, params) for sql, params in statements if _reads_partner_data(sql)]
    assert len(scoped) >= len(requests)
    for sql, params in scoped:
        values = _values(sql, params)
        assert company_id in values and "production" in values, (sql, params)
        assert re.search(r"\bpartner_id\b", sql) and re.search(r"\benvironment\b", sql), sql
