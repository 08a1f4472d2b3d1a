"""Every XML document the real server returns validates against the XSD it publishes.

Schemas are fetched from the server itself (``/api/schemas/{version}/{document}.xsd``, no
key), with their ``xs:include``s resolved over HTTP as a partner's validator would. The
negative checks break valid documents in the ways a writer bug would and expect a refusal, so
the schemas are known not to accept anything.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from billing_api.api.schema_routes import published
from billing_api.api.versions import ENDPOINTS, INVOICE_ENDPOINTS, SERVED
from billing_api.app import create_app
from billing_api.export.values import money, plain
from billing_api.settings import Settings
from tests.export_world import BilledWorld, Client, build_rich_world
from tests.http_server import serve

GOLDEN = Path(__file__).parent / "golden"
Element = etree._Element


class _HttpResolver(etree.Resolver):
    """Resolve ``xs:include`` of a schema fetched over HTTP by fetching the included URL."""

    def resolve(self, url: str | None, pubid: str | None, context: object) -> object:
        if url is None or not url.startswith("http://"):
            return None
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
        return self.resolve_string(response.content, context, base_url=url)


def served_schema(base: str, version: str, document: str) -> etree.XMLSchema:
    url = f"{base}/api/schemas/{version}/{document}.xsd"
    response = httpx.get(url, timeout=10)  # no key: schemas are public
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    parser = etree.XMLParser(no_network=True)
    parser.resolvers.add(_HttpResolver())
    return etree.XMLSchema(etree.fromstring(response.content, parser, base_url=url))


def package_schema(version: str, document: str) -> etree.XMLSchema:
    """The schema from the package files (relative includes resolve on disk)."""
    root = resources.files("billing_api.api").joinpath("schemas")
    with resources.as_file(root) as folder:
        return etree.XMLSchema(etree.parse(str(folder / version / f"{document}.xsd")))


def assert_valid(schema: etree.XMLSchema, content: bytes, what: str) -> None:
    if not schema.validate(etree.fromstring(content)):
        raise AssertionError(f"{what}: {schema.error_log.last_error}")


@pytest.fixture
def rich(
    factory: sessionmaker[Session], settings: Settings
) -> Iterator[tuple[Client, BilledWorld]]:
    world = build_rich_world(factory, settings)
    with serve(create_app(settings)) as base:
        yield Client(base, world.secret), world


def test_every_served_xml_document_validates_against_its_schema(
    rich: tuple[Client, BilledWorld],
) -> None:
    client, world = rich
    assert SERVED == ("v2", "v3", "v4")
    for version in SERVED:
        for document in INVOICE_ENDPOINTS:
            schema = served_schema(client.base, version, document)
            full = client.get(f"/api/{version}/{document}", **world.window)
            assert full.status_code == 200 and b"<PriceLine>" in full.content
            assert_valid(schema, full.content, f"{version} {document}")
            empty = client.get(f"/api/{version}/{document}", startDate="20200101",
                               endDate="20200131")
            assert b"<PriceLine>" not in empty.content
            assert_valid(schema, empty.content, f"{version} {document}, no invoices")
        schema = served_schema(client.base, version, "subscriptiondetails")
        for subscription_id in world.subscription_ids:
            details = client.get(f"/api/{version}/subscriptiondetails",
                                 subscriptionId=str(subscription_id))
            assert details.status_code == 200, details.text
            assert_valid(schema, details.content, f"{version} details {subscription_id}")


def test_the_rich_world_has_what_the_schemas_must_accept(rich: tuple[Client, BilledWorld]) -> None:
    """Guards the test above against a world that silently lost its hard cases."""
    client, world = rich
    purchases = client.get("/api/v4/invoices", **world.window).content.decode()
    consolidated = client.get("/api/v4/consolidatedinvoices", **world.window).content.decode()
    sales = client.get("/api/v4/customerinvoices", **world.window).content.decode()
    assert "<Type>Credit</Type>" in purchases and "<ExtendedPrice>-" in purchases
    assert "<ChargeType>Correction</ChargeType>" in purchases
    assert "<BillingFrequency>Yearly</BillingFrequency>" in purchases
    assert "<RatePeriodID>" in purchases and "<RatePeriodID />" in purchases
    assert "<noshow>true</noshow>" in purchases and "<noshow>false</noshow>" in purchases
    assert "<SubscriptionDetails />" in purchases
    assert "<SalesExtendedPrice />" in consolidated
    assert "Smith &amp; Sons &lt;&quot;Ltd&quot;&gt; &apos;Ünal&apos; café" in sales
    nce = str(world.subscription_ids[2])
    details = client.get("/api/v4/subscriptiondetails", subscriptionId=nce)
    assert b"<RatePeriodId>" in details.content and "für Ärzte".encode() in details.content
    assert b"<ExpirationDate />" in details.content  # open-ended: empty, "" in JSON
    as_json = client.get("/api/v4/subscriptiondetails", format="json", subscriptionId=nce).json()
    assert as_json["Subscription"]["ExpirationDate"] == ""


def test_schemas_are_public_and_equal_the_package_files(settings: Settings) -> None:
    files = published()
    for version in SERVED:
        assert {document for v, document in files if v == version} >= set(ENDPOINTS)
    with serve(create_app(settings)) as base:
        for (version, document), body in files.items():
            response = httpx.get(f"{base}/api/schemas/{version}/{document}.xsd", timeout=10)
            assert response.status_code == 200 and response.content == body
        for path in ("v1/invoices", "v9/invoices", "v4/nothing", "v4/..%2Fv2%2Ftypes", "v4/"):
            response = httpx.get(f"{base}/api/schemas/{path}.xsd", timeout=10,
                                 headers={"Accept": "application/json"})
            assert response.status_code == 404, path
            assert response.headers["content-type"] == "application/problem+json"
        missing = httpx.get(f"{base}/api/schemas/v1/invoices.xsd", timeout=10)
        assert missing.headers["content-type"].startswith("application/problem+xml")
        assert b"unknown_schema" in missing.content


def test_v3_schemas_are_v2s() -> None:
    for document in ENDPOINTS:
        text = published()[("v3", document)].decode()
        assert f'<xs:include schemaLocation="../v2/{document}.xsd"/>' in text


# --- the schemas refuse broken documents ------------------------------------------------------


def _golden(name: str) -> Element:
    return etree.parse(str(GOLDEN / name)).getroot()


def _remove(path: str) -> Callable[[Element], None]:
    def mutate(root: Element) -> None:
        element = root.find(path)
        assert element is not None, path
        element.getparent().remove(element)

    return mutate


def _set(path: str, text: str | None) -> Callable[[Element], None]:
    def mutate(root: Element) -> None:
        element = root.find(path)
        assert element is not None, path
        element.text = text

    return mutate


def _swap(path: str) -> Callable[[Element], None]:
    def mutate(root: Element) -> None:
        element = root.find(path)
        assert element is not None, path
        following = element.getnext()
        assert following is not None, path
        following.addnext(element)

    return mutate


def _add(path: str, tag: str) -> Callable[[Element], None]:
    def mutate(root: Element) -> None:
        parent = root.find(path)
        assert parent is not None, path
        etree.SubElement(parent, tag).text = "x"

    return mutate


LINE = "Invoice/Customers/Customer/Subscriptions/Subscription/PriceLines/PriceLine"
CONSOLIDATED_LINE = f"Invoices/{LINE}"
BROKEN = [
    ("invoices_v4.xml", "invoices", _remove(f"{LINE}/VAT")),
    ("invoices_v4.xml", "invoices", _remove("Invoice/Totals")),
    ("invoices_v4.xml", "invoices", _swap(f"{LINE}/UnitPrice")),
    ("invoices_v4.xml", "invoices", _add(LINE, "Unexpected")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/UnitPrice", "8.0")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/UnitPrice", "8")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/UnitPrice", "8.000")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/UnitPrice", "8,00")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/ExtendedPrice", None)),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/Quantity", "3.0")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/StartDate", "2026-11-01")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/StartDate", "20261301")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/LineId", "")),
    ("invoices_v4.xml", "invoices", _set(f"{LINE}/ChargeType", "Fee")),
    ("invoices_v4.xml", "invoices", _set("Invoice/Header/TypeIdentifier", "3")),
    ("invoices_v4.xml", "invoices", _remove("Invoice/Customers/Customer/Subscriptions")),
    ("invoices_v4.xml", "invoices",
     _set(".//SubscriptionDetail/noshow", "1")),
    ("invoices_v4.xml", "customerinvoices", _remove(f"{LINE}/InvoiceRowHash")),
    ("invoices_v4.xml", "invoices", lambda root: root.set("version", "4")),
    ("consolidatedinvoices_v4.xml", "consolidatedinvoices",
     _set(f"{CONSOLIDATED_LINE}/PurchasePrice", None)),
    ("consolidatedinvoices_v4.xml", "consolidatedinvoices",
     _remove("Invoices/Invoice/Totals/TotalSales")),
    ("consolidatedinvoices_v4.xml", "consolidatedinvoices",
     _add("Invoices/Invoice/Customers/Customer", "CostCenter")),
    ("subscriptiondetails_v4.xml", "subscriptiondetails",
     _remove("Resources/Resource/ResourceRatePeriod")),
    ("subscriptiondetails_v4.xml", "subscriptiondetails",
     lambda root: root.find("ServicePlan/PlanName").clear()),  # type: ignore[union-attr]
    ("subscriptiondetails_v4.xml", "subscriptiondetails",
     _set("Subscription/PeriodType", "week")),
    ("subscriptiondetails_v2.xml", "subscriptiondetails", _remove("ServicePlanPeriod")),
]


@pytest.mark.parametrize(("golden", "document", "mutate"), BROKEN)
def test_a_broken_document_fails_validation(
    golden: str, document: str, mutate: Callable[[Element], None]
) -> None:
    version = golden.rsplit("_", 1)[1].removesuffix(".xml")
    schema = package_schema(version, document)
    root = _golden(golden)
    assert schema.validate(copy.deepcopy(root)), schema.error_log.last_error  # valid as is
    mutate(root)
    assert not schema.validate(root)


@pytest.mark.parametrize("document", ENDPOINTS)
def test_a_v4_document_is_not_a_v2_document(document: str) -> None:
    """The v4 fields are not optional extras in v2's schema, nor missing from v4's."""
    v4_doc, v2_doc = _golden(f"{document}_v4.xml"), _golden(f"{document}_v2.xml")
    assert not package_schema("v2", document).validate(v4_doc)
    assert not package_schema("v4", document).validate(v2_doc)
    assert package_schema("v3", document).validate(v2_doc)


def test_each_schema_accepts_only_its_own_document() -> None:
    for version in SERVED:
        doc_version = "v4" if version == "v4" else "v2"
        for document in ENDPOINTS:
            schema = package_schema(version, document)
            for other in ENDPOINTS:
                valid = schema.validate(_golden(f"{other}_{doc_version}.xml"))
                # customerinvoices has the shape of invoices: one schema fits both.
                same = {document, other} <= {"invoices", "customerinvoices"} or document == other
                assert valid == same, (version, document, other)


@settings(max_examples=200, deadline=None)
@given(units=st.integers(-(2**63), 2**63 - 1), other=st.integers(-(2**63), 2**63 - 1))
def test_the_number_types_accept_whatever_the_writers_write(units: int, other: int) -> None:
    """Every money and plain number the stored 64-bit units can give is valid."""
    schema = package_schema("v4", "invoices")
    root = _golden("invoices_v4.xml")
    _set(f"{LINE}/UnitPrice", money(units))(root)
    _set(f"{LINE}/Quantity", plain(other))(root)
    _set(f"{LINE}/LineId", str(other))(root)
    assert schema.validate(root), schema.error_log.last_error
