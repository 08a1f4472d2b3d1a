"""The published description (/api/openapi.json) and the interactive reference (/api/docs).

The description is checked as a document (valid OpenAPI 3.1, everything a partner needs is in
it), then against the running server with schemathesis: with a valid key over billed data, and
without a key, no answer may be a 5xx or differ from what the description promises (status,
media type, headers, JSON body). The reference page must load nothing from another host.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from lxml import etree
from openapi_spec_validator import validate
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import Company
from billing_api.api import docs_routes
from billing_api.api.openapi_problems import ERRORS, PROBLEM_XML_NAMESPACE
from billing_api.api.schema_routes import SCHEMA_DOCUMENTS, SCHEMA_VERSIONS, published
from billing_api.app import create_app
from billing_api.billing.run import bill_partner
from billing_api.customers.models import SubscriptionAttribute
from billing_api.db import transaction
from billing_api.environments import Environment
from billing_api.settings import Settings
from tests import factories as f
from tests.access_helpers import Partner, make_partner
from tests.browser import Visit, chromium
from tests.conftest import TEST_SECRET
from tests.http_server import serve
from tests.schemathesis_support import keep_the_window_in_order, without_made_up_cursor

D = Decimal
OPENAPI = "/api/openapi.json"
DOCUMENTS = ("invoices", "customerinvoices", "consolidatedinvoices", "subscriptiondetails")
# Every check schemathesis has, negative data included (tests/schemathesis_support.py reads XML
# answers as the description says and keeps generated date windows in order).


@pytest.fixture
def spec(settings: Settings) -> dict[str, Any]:
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The document operations (the description also holds the public XSD route)."""
    for path, item in spec["paths"].items():
        for operation in item.values():
            if "documents" in operation.get("tags", ()):
                yield path, operation


# --- the description as a document ----------------------------------------------------------


def test_the_description_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    validate(spec)  # raises on any violation of the OpenAPI 3.1 schema
    assert spec["servers"] == [{"url": "/"}]
    assert {f"/api/{{version}}/{name}" for name in DOCUMENTS} <= set(spec["paths"])


def test_the_introduction_explains_keys_whitelist_versions_and_dates(
    spec: dict[str, Any],
) -> None:
    text = spec["info"]["description"]
    for needle in ("X-Api-Key", "Account Administrator", "Whitelist at least one IP address",
                   "sandbox", "| `v1` | End of Life |", "| `v4` | Current |", "invoice date",
                   "inclusive at both ends", "YYYYMMDD", "three months", "XML is the default",
                   "120 per minute"):
        assert needle in text, needle


def test_the_key_header_is_a_security_scheme_every_operation_requires(
    spec: dict[str, Any],
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["ApiKey"] == schemes["ApiKey"] | {
        "type": "apiKey", "in": "header", "name": "X-Api-Key"}
    assert schemes["DownloadLink"]["in"] == "query" and schemes["DownloadLink"]["name"] == "token"
    for path, operation in _operations(spec):
        assert operation["security"] == [{"ApiKey": []}, {"DownloadLink": []}], path


def test_api_routes_describe_their_query_and_leave_its_parsing_to_negotiation(
        settings: Settings) -> None:
    """The query parameters and the key of an API route are in its description
    (``openapi_docs.described``), not in its signature, where FastAPI would parse them on
    every request while ``negotiation`` and ``authenticate_request`` read them anyway. What
    a route describes is exactly what it accepts (``token`` is the DownloadLink scheme)."""
    from fastapi.routing import APIRoute, iter_route_contexts

    from billing_api.api import einvoice_bulk, einvoice_routes, routes

    def parsed(dependant: Any) -> list[str]:  # what FastAPI reads from query and headers
        return [field.alias for field in [*dependant.query_params, *dependant.header_params]
                ] + [name for sub in dependant.dependencies for name in parsed(sub)]

    def accepted(path: str) -> frozenset[str]:
        endpoint = path.removeprefix("/api/{version}/")
        if endpoint.endswith("{InvoiceID}"):
            return einvoice_routes.ONE_INVOICE_PARAMETERS
        if endpoint == "subscriptiondetails":
            return routes.DETAILS_PARAMETERS
        if endpoint in einvoice_bulk.ENDPOINTS:
            return routes.EINVOICE_COLLECTION_PARAMETERS
        return routes.INVOICE_PARAMETERS

    app = create_app(settings)
    spec = app.openapi()
    seen = []
    for context in iter_route_contexts(app.routes):
        if not (isinstance(context.original_route, APIRoute)
                and (context.path or "").startswith("/api/{version}/")):
            continue
        path = context.path or ""
        assert parsed(context.original_route.dependant) == [], path
        operation = spec["paths"][path]["get"]
        assert operation["security"] == [{"ApiKey": []}, {"DownloadLink": []}], path
        described = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
        assert described == accepted(path) - {"token"}, path
        seen.append(path)
    assert len(seen) == 6  # the four documents and the two single invoices


def test_every_parameter_has_a_description_and_an_example(spec: dict[str, Any]) -> None:
    for path, operation in _operations(spec):
        names = []
        for parameter in operation["parameters"]:
            names.append(parameter["name"])
            assert parameter["description"], (path, parameter["name"])
            # since has none on purpose: only a cursor the server made is valid, and the
            # reference's "Try it out" would send an example.
            assert "example" in parameter or parameter["name"] == "since", (
                path, parameter["name"])
            assert "anyOf" not in parameter["schema"], (path, parameter["name"])
        assert {"version", "startDate", "endDate", "format"} <= set(names), path
    details = next(op for path, op in _operations(spec) if path.endswith("subscriptiondetails"))
    subscription_id = next(p for p in details["parameters"] if p["name"] == "subscriptionId")
    assert subscription_id["required"] is True


def test_both_formats_and_every_error_status_are_documented(spec: dict[str, Any]) -> None:
    for path, operation in _operations(spec):
        responses = operation["responses"]
        # format=ubl|pdf on the purchase and sales invoices: a ZIP, or 409 (docs/einvoicing.md)
        einvoices = path.rsplit("/", 1)[-1] in ("invoices", "customerinvoices")
        assert sorted(responses) == sorted(["200", "304", "400", "401", "403", "404", "406", "410",
                                            "429", "431", "500", "503",
                                            *(["409"] if einvoices else [])]
                                           ), path  # and no 422: validation errors are 400
        assert set(responses["200"]["content"]) == {
            "application/xml", "application/json", *(["application/zip"] if einvoices else [])}
        assert {"Content-Disposition", "X-Api-Version"} <= set(responses["200"]["headers"])
        for status in ERRORS:
            content = responses[str(status)]["content"]
            assert set(content) == {"application/problem+json", "application/problem+xml"}
            for example in content["application/problem+json"]["examples"].values():
                assert example["value"]["status"] == status
            for example in content["application/problem+xml"]["examples"].values():
                root = etree.fromstring(example["value"].encode())
                assert root.tag == f"{{{PROBLEM_XML_NAMESPACE}}}problem"
        for retried in ("429", "503"):
            assert "Retry-After" in responses[retried]["headers"], (path, retried)


# --- the description against the running server --------------------------------------------


@dataclass
class Served:
    base: str
    partner: Partner
    subscription_id: int


@pytest.fixture
def served(factory: sessionmaker[Session], database_url: str) -> Iterator[Served]:
    """A partner with billed purchase and customer invoices over two months (a monthly plan
    priced per rate period, with attributes; a yearly plan), served by uvicorn."""
    # No rate limiting to speak of: hundreds of generated requests arrive within seconds.
    app_settings = Settings(database_url=database_url, secret_key=SecretStr(TEST_SECRET),
                            redis_url=None, rate_limit_per_minute=1_000_000,
                            failed_auth_per_minute=1_000_000)
    partner = make_partner(factory, app_settings)
    with transaction(factory) as session:
        f.distributor(session)
        company = session.get_one(Company, partner.company_id)
        _, period, rate = f.plan(session, f.vendor(session, "Microsoft"))
        _, yearly, yearly_rate = f.plan(session, f.vendor(session, "VMware"),
                                        billing_period_type="year", recurring_price=D("120.50"))
        customer = f.customer(session, company, company_name='Smith & Sons <"Ltd"> café')
        sub, _ = f.subscription(session, customer, period, rate, amount=D(3),
                                start=dt.date(2026, 9, 1), po_number="PO-1",
                                rate_period_=f.rate_period(session, rate))
        session.add(SubscriptionAttribute(subscription_id=sub.id, attribute="vCPU",
                                          value="4", noshow=True))
        f.subscription(session, f.customer(session, company, country_code="BE",
                                           vat_number="BE0123456749"),
                       yearly, yearly_rate, start=dt.date(2026, 10, 5))
    for period_name, day in (("2026-09", dt.date(2026, 10, 23)),
                             ("2026-10", dt.date(2026, 11, 23))):
        with transaction(factory, writer=True) as session:
            bill_partner(session, partner.company_id, Environment.PRODUCTION, period_name, day)
    with serve(create_app(app_settings)) as base:
        yield Served(base, partner, sub.id)


def description() -> dict[str, Any]:
    """The app's description, built without a database (an engine connects only when used)."""
    app = create_app(Settings(database_url="sqlite://", secret_key=SecretStr(TEST_SECRET),
                              redis_url=None))
    try:
        document: dict[str, Any] = app.openapi()
        return document
    finally:
        app.state.engine.dispose()


# Loaded at collection, as ``parametrize`` needs the operations then (the fixture-based loader
# does not work with pytest 9); the server that answers is started per test, and
# ``test_the_served_description_is_the_one_tested`` proves it serves this same document.
SCHEMA = schemathesis.openapi.from_dict(
    description(),
    config=schemathesis.Config.from_dict({
        "generation": {"mode": "all", "max-examples": 30, "deterministic": True},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": True},
    }),
)
SCHEMA.hook("map_case")(keep_the_window_in_order(Settings(database_url="sqlite://").today()))
# The served app and its data are built once per operation and only read by the examples.
BOUNDED = settings(max_examples=30, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


@SCHEMA.parametrize()
@BOUNDED
def test_with_a_key_answers_conform_to_the_description(case: Any, served: Served) -> None:
    without_made_up_cursor(case)
    case.call_and_validate(base_url=served.base, headers={"X-Api-Key": served.partner.secret})


@SCHEMA.parametrize()
@BOUNDED
def test_without_a_key_answers_conform_to_the_description(case: Any, served: Served) -> None:
    response = case.call_and_validate(base_url=served.base)
    if case.operation.path.startswith("/api/{version}/"):
        # Generated X-Api-Key and token values are never real: nothing but refusals (the
        # version is checked first: 404, 410; other methods: 405).
        assert response.status_code in (401, 404, 405, 410), response.status_code


def test_a_document_in_each_format_matches_its_schema(served: Served) -> None:
    """The generated cases rarely hit a date range with invoices: one explicit call per
    document and format, validated the same way."""
    headers = {"X-Api-Key": served.partner.secret}
    for document in DOCUMENTS:
        operation = SCHEMA[f"/api/{{version}}/{document}"]["GET"]
        for version in ("v2", "v4"):
            for fmt in ("xml", "json"):
                query = {"startDate": "20260101", "endDate": "20261231", "format": fmt}
                if document == "subscriptiondetails":
                    query["subscriptionId"] = str(served.subscription_id)
                case = operation.Case(path_parameters={"version": version}, query=query)
                response = case.call_and_validate(base_url=served.base, headers=headers)
                assert response.status_code == 200, response.text
                if fmt == "json" and document != "subscriptiondetails":
                    assert response.json()["Invoices"], (document, version)


def test_odd_subscription_ids_are_refused_not_a_500(served: Served) -> None:
    for value, status in (
        ("²", 400), ("1²", 400), ("٣", 400),  # str.isdigit() admits them; int("²") was a 500
        ("2147483647", 404), ("2147483648", 404),  # past PostgreSQL's integer: was a 500
        ("393000155526192614", 404),  # found by the schemathesis run on PostgreSQL
    ):
        answer = httpx.get(f"{served.base}/api/v4/subscriptiondetails",
                           params={"subscriptionId": value},
                           headers={"X-Api-Key": served.partner.secret}, timeout=10)
        assert answer.status_code == status, (value, answer.text)


def test_problem_examples_have_the_shape_the_api_sends(served: Served,
                                                       spec: dict[str, Any]) -> None:
    answer = httpx.get(f"{served.base}/api/v4/invoices", params={"format": "json"}, timeout=10)
    assert answer.status_code == 401
    documented = spec["paths"]["/api/{version}/invoices"]["get"]["responses"]["401"]["content"]
    example = next(iter(documented["application/problem+json"]["examples"].values()))["value"]
    assert set(answer.json()) == set(example)
    as_xml = httpx.get(f"{served.base}/api/v4/invoices", timeout=10)
    sent = etree.fromstring(as_xml.content)
    xml_example = next(iter(documented["application/problem+xml"]["examples"].values()))["value"]
    shown = etree.fromstring(xml_example.encode())
    assert [e.tag for e in sent] == [e.tag for e in shown]
    assert sent.tag == shown.tag


def test_the_served_description_is_the_one_tested(served: Served) -> None:
    served_spec = httpx.get(served.base + OPENAPI, timeout=10).json()
    tested = description()
    # Only the introduction differs: it states the server's rate limit.
    assert served_spec["info"].pop("description") != tested["info"].pop("description")
    assert served_spec == tested


# --- the interactive reference --------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self.inline_styles = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in attrs if k in ("src", "href", "data-openapi-url") and v]
        self._in_script = tag == "script"
        if tag == "style" or "style" in values:
            self.inline_styles += 1

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_the_reference_page_loads_only_local_assets(served: Served) -> None:
    page = httpx.get(served.base + "/api/docs", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = dict(part.strip().split(" ", 1) for part in
               page.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'" and csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'" and csp["frame-ancestors"] == "'none'"
    links = _Links()
    links.feed(page.text)
    assert links.inline_scripts == 0 and links.inline_styles == 0
    assert len(links.urls) >= 5
    for url in links.urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc and url.startswith("/api/"), url
        asset = httpx.get(served.base + url, timeout=10)
        assert asset.status_code == 200, url
    assert OPENAPI in links.urls
    script = httpx.get(served.base + "/api/static/swagger/swagger-ui-bundle.js", timeout=10)
    assert "javascript" in script.headers["content-type"]


def test_the_vendored_swagger_ui_is_version_5_and_unmodified() -> None:
    folder = docs_routes.SWAGGER_DIR
    assert docs_routes.swagger_ui_version().startswith("5.")
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    names = set()
    for line in sums:
        digest, name = line.split(maxsplit=1)
        names.add(name)
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert {"swagger-ui-bundle.js", "swagger-ui.css", "LICENSE"} <= names
    init = (folder / "init.js").read_text()
    assert "validatorUrl: null" in init  # the default would call validator.swagger.io


def test_the_page_url_keeps_a_proxy_prefix() -> None:
    html = docs_routes.docs_page("T", OPENAPI, root_path="/billing")
    assert 'data-openapi-url="/billing/api/openapi.json"' in html
    assert 'src="/billing/api/static/swagger/init.js?v=' in html


def test_the_reference_works_in_a_browser_under_its_policy(served: Served) -> None:
    """Swagger UI renders the description and "Try it out" calls the API, with every request
    to this origin and no Content-Security-Policy violation (Debian's chromium, headless)."""
    problems: list[str] = []
    with chromium() as browser:
        visit = Visit(browser, served.base, name="api-docs")
        page = visit.page
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto("/api/docs")
        page.wait_for_selector(".opblock", timeout=20_000)
        assert page.locator(".opblock").count() >= len(DOCUMENTS)
        page.get_by_role("button", name="Authorize").first.click()
        page.locator(".auth-container input").first.fill(served.partner.secret)
        page.locator(".auth-container").first.locator("button.authorize").click()
        page.get_by_role("button", name="Close").first.click()
        operation = page.locator("#operations-documents-invoices")
        operation.locator(".opblock-summary").click()
        operation.get_by_role("button", name="Try it out").click()
        operation.get_by_role("button", name="Execute").click()
        status = operation.locator(".live-responses-table .response .response-col_status")
        status.wait_for(timeout=20_000)
        assert status.inner_text().strip() == "200"
        visit.shot("try-it-out")
        visit.close()
    assert problems == []
    assert visit.foreign_requests() == []
    assert all(url.startswith(served.base + "/api/") for url in visit.requested), visit.requested
    assert any("/api/v4/invoices?" in url for url in visit.requested)


def test_the_schema_route_declares_every_published_file(spec: dict[str, Any]) -> None:
    """The XSD route's enums cover every shipped file (and name nothing else)."""
    assert {v for v, _ in published()} == set(SCHEMA_VERSIONS)
    assert {d for _, d in published()} == set(SCHEMA_DOCUMENTS)
    parameters = spec["paths"]["/api/schemas/{version}/{document}.xsd"]["get"]["parameters"]
    enums = {p["name"]: p["schema"]["enum"] for p in parameters}
    assert enums == {"version": list(SCHEMA_VERSIONS), "document": list(SCHEMA_DOCUMENTS)}
