"""The document endpoints over real HTTP: formats, dates, versions, errors, scoping."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from lxml import etree
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import Company
from billing_api.app import create_app
from billing_api.billing.rating import add_months
from billing_api.billing.run import bill_partner
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests import factories as f
from tests.access_helpers import Partner, make_partner
from tests.http_server import serve

D = Decimal
TRICKY_NAME = 'Smith & Sons <"Ltd"> \x01café'


@dataclass
class World:
    base: str
    partner: Partner
    subscription_id: int
    other_subscription_id: int
    sandbox_subscription_id: int


@pytest.fixture
def world(factory: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    partner = make_partner(factory, settings)
    other = make_partner(factory, settings, name="Other Partner BV")
    with transaction(factory) as session:
        f.distributor(session)
        company = session.get_one(Company, partner.company_id)
        _, period, rate = f.plan(session, f.vendor(session, "Microsoft"))
        _, yperiod, yrate = f.plan(
            session,
            f.vendor(session, "VMware"),
            billing_period_type="year",
            recurring_cost=D("100"),
            recurring_price=D("120.50"),
        )
        tricky = f.customer(session, company, company_name=TRICKY_NAME, cost_center="IT")
        plain = f.customer(session, company, country_code="BE", vat_number="BE0123456749")
        sub, _ = f.subscription(
            session, tricky, period, rate, amount=D(3), start=dt.date(2026, 9, 1), po_number="PO-1"
        )
        f.subscription(session, plain, yperiod, yrate, amount=D(2), start=dt.date(2026, 10, 5))
        f.subscription(session, plain, period, rate, amount=D(1), start=dt.date(2026, 9, 16))
        other_sub, _ = f.subscription(
            session, f.customer(session, session.get_one(Company, other.company_id)), period, rate
        )
        sandbox_sub, _ = f.subscription(
            session, f.customer(session, company, environment="sandbox"), period, rate
        )
    for period_name, day in (
        ("2026-09", dt.date(2026, 10, 23)),
        ("2026-10", dt.date(2026, 11, 23)),
    ):
        for company_id in (partner.company_id, other.company_id):
            for env in Environment:
                with transaction(factory, writer=True) as session:
                    bill_partner(session, company_id, env, period_name, day)
    with serve(create_app(settings)) as base:
        yield World(base, partner, sub.id, other_sub.id, sandbox_sub.id)


def get(world: World, path: str, *, accept: str | None = None, **params: str) -> httpx.Response:
    headers = {"X-Api-Key": world.partner.secret}
    if accept is not None:
        headers["Accept"] = accept
    return httpx.get(world.base + path, params=params, headers=headers, timeout=30)


ALL_2026 = {"startDate": "20260101", "endDate": "20261231"}


def test_xml_is_the_default_and_json_on_request(world: World) -> None:
    xml = get(world, "/api/v4/invoices", **ALL_2026)
    assert xml.status_code == 200, xml.text
    assert xml.headers["content-type"] == "application/xml; charset=utf-8"
    assert xml.text.startswith('<?xml version="1.0" encoding="utf-8"?>\n<InvoiceResponse ')
    assert xml.headers["content-disposition"] == (
        'attachment; filename="invoices_v4_20260101_20261231.xml"'
    )
    assert xml.headers["x-api-version"] == "v4" and xml.headers["vary"] == "Accept"
    for accept in ("*/*", "application/xml", "text/xml", "text/html, */*;q=0.1"):
        assert get(world, "/api/v4/invoices", accept=accept, **ALL_2026).content == xml.content
    as_json = get(world, "/api/v4/invoices", accept="application/json", **ALL_2026)
    assert as_json.headers["content-type"] == "application/json"
    assert as_json.json()["Invoices"]
    # format= wins over Accept.
    assert (
        get(world, "/api/v4/invoices", accept="application/json", format="xml", **ALL_2026).content
        == xml.content
    )


def test_same_request_returns_identical_bytes(world: World) -> None:
    for endpoint in ("invoices", "customerinvoices", "consolidatedinvoices"):
        for fmt in ("xml", "json"):
            first = get(world, f"/api/v4/{endpoint}", format=fmt, **ALL_2026)
            assert first.status_code == 200
            assert (
                get(world, f"/api/v4/{endpoint}", format=fmt, **ALL_2026).content == first.content
            )


def _xml_invoices(response: httpx.Response) -> list[etree._Element]:
    root = etree.fromstring(response.content)
    return list(root.iter("Invoice"))


def test_xml_and_json_carry_the_same_data(world: World) -> None:
    for endpoint in ("invoices", "customerinvoices", "consolidatedinvoices"):
        xml_invoices = _xml_invoices(get(world, f"/api/v4/{endpoint}", **ALL_2026))
        json_invoices = get(world, f"/api/v4/{endpoint}", format="json", **ALL_2026).json()[
            "Invoices"
        ]
        assert len(xml_invoices) == len(json_invoices) > 0
        for x, j in zip(xml_invoices, json_invoices, strict=True):
            assert x.findtext("Header/InvoiceID") == j["Header"]["InvoiceID"]
            x_lines = x.findall(".//PriceLine")
            j_lines = [
                line for c in j["Customers"] for s in c["Subscriptions"] for line in s["PriceLines"]
            ]
            assert len(x_lines) == len(j_lines)
            for xl, jl in zip(x_lines, j_lines, strict=True):
                for element in xl:
                    value = jl[element.tag]
                    text = element.text or ""
                    if isinstance(value, (int, float)) and not isinstance(value, bool):
                        # Compare the exact decimal text, not a float.
                        assert D(text) == D(str(value)), element.tag
                    else:
                        # XML 1.0 cannot carry control characters: the XML side drops them.
                        expected = "" if value is None else value.replace("\x01", "")
                        assert text == expected, element.tag


def test_json_numbers_are_exact_and_keys_sorted_ignoring_case(world: World) -> None:
    body = get(world, "/api/v4/invoices", format="json", **ALL_2026).text
    data = json.loads(body, parse_float=D)

    def check(node: object) -> None:
        if isinstance(node, dict):
            keys = list(node)
            assert keys == sorted(keys, key=str.lower), keys
            for value in node.values():
                check(value)
        elif isinstance(node, list):
            for item in node:
                check(item)

    check(data)
    line = data["Invoices"][0]["Customers"][0]["Subscriptions"][0]["PriceLines"][0]
    assert isinstance(line["ExtendedPrice"], Decimal)
    assert '"UnitPrice":8.00' in body  # two decimals at least, never 8.0 or 8


def test_markup_and_control_characters_are_escaped(world: World) -> None:
    xml = get(world, "/api/v4/customerinvoices", **ALL_2026)
    assert b"Smith &amp; Sons &lt;&quot;Ltd&quot;&gt; caf\xc3\xa9" in xml.content
    assert b"\x01" not in xml.content
    names = [e.text for e in etree.fromstring(xml.content).iter("CompanyName")]
    assert 'Smith & Sons <"Ltd"> café' in names
    as_json = get(world, "/api/v4/customerinvoices", format="json", **ALL_2026).json()
    customers = [c["CompanyName"] for i in as_json["Invoices"] for c in i["Customers"]]
    assert TRICKY_NAME in customers  # JSON can carry the control character, escaped


def test_totals_and_lines_agree(world: World) -> None:
    for endpoint in ("invoices", "customerinvoices"):
        for invoice in _xml_invoices(get(world, f"/api/v4/{endpoint}", **ALL_2026)):
            lines = invoice.findall(".//PriceLine")
            excl = sum(D(line.findtext("ExtendedPrice") or "0") for line in lines)
            vat = sum(D(line.findtext("VAT") or "0") for line in lines)
            assert D(invoice.findtext("Totals/TotalExcludingVAT") or "") == excl
            assert D(invoice.findtext("Totals/TotalVAT") or "") == vat
            assert D(invoice.findtext("Totals/TotalIncludingVAT") or "") == excl + vat


def test_consolidated_sales_side_equals_customer_invoices(world: World) -> None:
    consolidated = get(world, "/api/v4/consolidatedinvoices", format="json", **ALL_2026).json()
    sales = get(world, "/api/v4/customerinvoices", format="json", **ALL_2026).json()
    by_hash = {
        line["InvoiceRowHash"]: line
        for i in sales["Invoices"]
        for c in i["Customers"]
        for s in c["Subscriptions"]
        for line in s["PriceLines"]
    }
    purchases = get(world, "/api/v4/invoices", format="json", **ALL_2026).json()
    purchase_hashes = [
        line["InvoiceRowHash"]
        for i in purchases["Invoices"]
        for c in i["Customers"]
        for s in c["Subscriptions"]
        for line in s["PriceLines"]
    ]
    seen = []
    for invoice in consolidated["Invoices"]:
        total = D(0)
        for customer in invoice["Customers"]:
            assert "CustomerCostCenter" in customer and "CostCenter" not in customer
            for sub in customer["Subscriptions"]:
                for line in sub["PriceLines"]:
                    seen.append(line["InvoiceRowHash"])
                    sale = by_hash.get(line["InvoiceRowHash"])
                    if sale is None:
                        assert line["SalesExtendedPrice"] is None
                        continue
                    assert D(str(line["SalesExtendedPrice"])) == D(str(sale["ExtendedPrice"]))
                    assert D(str(line["SalesPrice"])) == D(str(sale["UnitPrice"]))
                    total += D(str(sale["ExtendedPrice"]))
        assert D(str(invoice["Totals"]["TotalSales"]["TotalExcludingVAT"])) == total
    assert seen == purchase_hashes  # every purchase line once, in the same order


def test_date_bounds_are_inclusive(world: World) -> None:
    def dates(**params: str) -> set[str]:
        body = get(world, "/api/v4/invoices", format="json", **params).json()
        return {i["Header"]["Date"] for i in body["Invoices"]}

    assert dates(startDate="20261023", endDate="20261023") == {"20261023"}
    assert dates(startDate="2026-10-23", endDate="2026-11-23") == {"20261023", "20261123"}
    assert dates(startDate="20261024", endDate="20261122") == set()
    assert dates(startDate="20261124", endDate="20261231") == set()


def test_default_window_is_three_months_up_to_today(world: World, settings: Settings) -> None:
    response = get(world, "/api/v4/invoices")
    today = settings.today()  # the distributor's day, not the machine's
    disposition = response.headers["content-disposition"]
    assert f"_{today:%Y%m%d}.xml" in disposition
    start = add_months(today, -3)
    assert f"invoices_v4_{start:%Y%m%d}_" in disposition
    only_end = get(world, "/api/v4/invoices", endDate="20261123")
    assert 'invoices_v4_20260823_20261123.xml"' in only_end.headers["content-disposition"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"startDate": "2026-13-01"}, "startDate"),
        ({"startDate": "20260230"}, "startDate"),
        ({"endDate": "yesterday"}, "endDate"),
        ({"startDate": "20261101", "endDate": "20261001"}, "endDate"),
        ({"format": "csv"}, "format"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    world: World, params: dict[str, str], field: str
) -> None:
    for accept, parse in (
        ("application/json", lambda r: r.json()),
        (None, lambda r: {e.tag.split("}")[-1]: e.text for e in etree.fromstring(r.content)}),
    ):
        response = get(world, "/api/v4/invoices", accept=accept, **params)
        assert response.status_code == 400, response.text
        body = parse(response)
        assert body["field"] == field and field in body["detail"]


def test_an_accept_that_allows_neither_format_is_406(world: World) -> None:
    response = get(world, "/api/v4/invoices", accept="text/html")
    assert response.status_code == 406
    assert response.headers["content-type"].startswith("application/problem+xml")


def test_versions(world: World) -> None:
    gone = get(world, "/api/v1/invoices", accept="application/json")
    assert gone.status_code == 410 and "v4" in gone.json()["detail"]
    assert httpx.get(world.base + "/api/v1/invoices", timeout=10).status_code == 410  # no key
    assert get(world, "/api/v9/invoices").status_code == 404
    assert get(world, "/api/v4/nothing").status_code == 404
    v2 = get(world, "/api/v2/invoices", format="json", **ALL_2026)
    assert v2.headers["deprecation"] and "successor-version" in v2.headers["link"]
    line = v2.json()["Invoices"][0]["Customers"][0]["Subscriptions"][0]["PriceLines"][0]
    assert "InvoiceRowHash" not in line and "ChargeType" not in line
    v3 = get(world, "/api/v3/invoices", format="json", **ALL_2026)
    assert "deprecation" not in v3.headers
    assert v3.json() == v2.json()  # same shape


def test_subscription_details(world: World) -> None:
    response = get(
        world,
        "/api/v4/subscriptiondetails",
        format="json",
        subscriptionId=str(world.subscription_id),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["Resources", "ServicePlan", "ServicePlanPeriod", "Subscription"]
    assert body["Subscription"]["SubscriptionId"] == world.subscription_id
    assert body["Resources"][0]["ResourceRate"]["PlanRateId"]
    xml = get(world, "/api/v4/subscriptiondetails", subscriptionId=str(world.subscription_id))
    root = etree.fromstring(xml.content)
    assert root.tag == "SubscriptionDetails"
    assert root.findtext("Subscription/SubscriptionId") == str(world.subscription_id)


def test_subscription_details_files_are_named_after_their_subscription(world: World) -> None:
    """``curl -OJ`` for a second subscription must not collide with the first one's file."""
    response = get(world, "/api/v4/subscriptiondetails", format="json",
                   subscriptionId=str(world.subscription_id), **ALL_2026)
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        f'attachment; filename="subscriptiondetails_v4_{world.subscription_id}_20260101_20261231'
        '.json"')
    # The other documents keep their names: endpoint, version, window.
    invoices = get(world, "/api/v2/invoices", **ALL_2026)
    assert invoices.headers["content-disposition"] == (
        'attachment; filename="invoices_v2_20260101_20261231.xml"')


@pytest.mark.parametrize("which", ["other_subscription_id", "sandbox_subscription_id"])
def test_another_partners_or_environments_subscription_is_404(world: World, which: str) -> None:
    response = get(
        world,
        "/api/v4/subscriptiondetails",
        accept="application/json",
        subscriptionId=str(getattr(world, which)),
    )
    assert response.status_code == 404
    assert response.json()["code"] == "subscription_not_found"
    missing = get(
        world, "/api/v4/subscriptiondetails", accept="application/json", subscriptionId="999999999"
    )
    assert missing.status_code == 404 and missing.json()["detail"] == response.json()[
        "detail"
    ].replace(str(getattr(world, which)), "999999999")


def test_subscription_id_is_required_and_numeric(world: World) -> None:
    for params in ({}, {"subscriptionId": "abc"}, {"subscriptionId": "-1"}):
        response = get(world, "/api/v4/subscriptiondetails", accept="application/json", **params)
        assert response.status_code == 400 and response.json()["field"] == "subscriptionId"


def test_key_environment_scopes_documents(
    world: World, factory: sessionmaker[Session], settings: Settings
) -> None:
    production = get(world, "/api/v4/invoices", format="json", **ALL_2026).json()
    numbers = {i["Header"]["InvoiceID"] for i in production["Invoices"]}
    assert numbers and not any("-SBX-" in n for n in numbers)


def test_a_database_failure_mid_stream_aborts_the_transfer(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client must see a broken download, never a well-formed but truncated document.

    The failure is injected into the real row stream after its first rows (issue 8 stops a
    real PostgreSQL server mid-download)."""
    from sqlalchemy.exc import OperationalError

    from billing_api.export import source, stream

    real_stream = source.stream

    def failing_stream(connection: object, stmt: object) -> Iterator[object]:
        for n, row in enumerate(real_stream(connection, stmt)):  # type: ignore[arg-type]
            if n == 3:
                raise OperationalError("SELECT …", {}, Exception("server closed the connection"))
            yield row

    monkeypatch.setattr(stream.s, "stream", failing_stream)
    monkeypatch.setattr(stream, "LINES_PER_CHUNK", 1)  # the first bytes leave before the failure
    received = b""
    with (
        pytest.raises(httpx.RemoteProtocolError),  # reading the body is what fails
        httpx.stream("GET", world.base + "/api/v4/invoices", params=ALL_2026,
                     headers={"X-Api-Key": world.partner.secret}, timeout=30) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_bytes():
            received += chunk
    assert received.startswith(b"<?xml")
    assert not received.rstrip().endswith(b"</InvoiceResponse>")
