"""OpenAPI money: clients generated from /api/openapi.json read amounts exactly.

Money and quantities are ``type: number`` with ``format: decimal`` (the OpenAPI format
registry's fixed-point decimal). datamodel-code-generator turns that into ``Decimal``; a test
generates the models from the served description and sums real documents to the cent.
openapi-python-client types every number as float and parses with ``response.json()``: the
test shows what its default call sends and gets, and the documented setting (docs/openapi.md)
with which its models carry exact decimals.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from billing_api.app import create_app
from billing_api.db import transaction
from billing_api.demo.generator import build_demo
from billing_api.settings import Settings
from tests.access_helpers import open_demo_api
from tests.http_server import serve

BIN = Path(sys.executable).parent
TODAY = dt.date(2026, 12, 5)
ALL = {"startDate": "20200101", "endDate": "20271231"}


@dataclass
class Served:
    base: str
    key: str

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(self.base + path, params=params, headers={"X-Api-Key": self.key},
                         timeout=120)


@pytest.fixture
def served(factory: sessionmaker[Session], settings: Settings) -> Iterator[Served]:
    build_demo(factory, customers=12, months=2, today=TODAY)
    with transaction(factory) as session:
        _, secrets = open_demo_api(session, settings)
    quiet = settings.model_copy(update={"rate_limit_per_minute": 1_000_000})
    with serve(create_app(quiet)) as base:
        yield Served(base, secrets["production"])


def _numbers(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema typed number in the description, with where it is."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind == "number" or (isinstance(kind, list) and "number" in kind):
            yield path, node
        for key, value in node.items():
            yield from _numbers(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, f"{path}/{i}")


def test_every_number_in_the_description_is_a_decimal(settings: Settings) -> None:
    description = create_app(settings).openapi()
    numbers = list(_numbers(description["components"]["schemas"]))
    names = {path.rsplit("/", 1)[-1] for path, _ in numbers}
    assert {"UnitPrice", "ExtendedPrice", "VAT", "Quantity", "Duration", "TaxPercentage",
            "TotalIncludingVAT", "SalesExtendedPrice", "IncludedValue", "Amount"} <= names
    assert [path for path, schema in numbers if schema.get("format") != "decimal"] == []


def _generate_models(served: Served, tmp_path: Path) -> ModuleType:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(served.get("/api/openapi.json").content)
    target = tmp_path / "billing_models.py"
    result = subprocess.run(
        [str(BIN / "datamodel-codegen"), "--input", str(spec), "--input-file-type", "openapi",
         "--output", str(target), "--output-model-type", "pydantic_v2.BaseModel",
         "--snake-case-field"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    loader = importlib.util.spec_from_file_location("billing_models", target)
    assert loader is not None and loader.loader is not None
    module = importlib.util.module_from_spec(loader)
    # Registered while it loads: pydantic resolves the models' forward references through it.
    sys.modules["billing_models"] = module
    try:
        loader.loader.exec_module(module)
    finally:
        del sys.modules["billing_models"]
    return module


def test_datamodel_code_generator_models_sum_every_invoice_exactly(served: Served,
                                                                  tmp_path: Path) -> None:
    models = _generate_models(served, tmp_path)
    source = (tmp_path / "billing_models.py").read_text()
    assert "unit_price: Decimal" in source and ": float" not in source
    checked = 0
    for endpoint, model in (("invoices", models.PurchaseInvoices),
                            ("customerinvoices", models.CustomerInvoices)):
        body = served.get(f"/api/v4/{endpoint}", format="json", **ALL).content
        # The documented way: numbers parsed as Decimal, then validated.
        document = model.model_validate(json.loads(body, parse_float=Decimal))
        for invoice in document.invoices:
            lines = [line for customer in invoice.customers
                     for subscription in customer.subscriptions
                     for line in subscription.price_lines]
            assert all(type(line.extended_price) is Decimal for line in lines)
            totals = invoice.totals
            assert sum(line.extended_price for line in lines) == totals.total_excluding_vat
            assert sum(line.vat for line in lines) == totals.total_vat
            assert totals.total_excluding_vat + totals.total_vat == totals.total_including_vat
            checked += 1
    assert checked >= 20
    consolidated = models.ConsolidatedInvoices.model_validate(json.loads(
        served.get("/api/v4/consolidatedinvoices", format="json", **ALL).content,
        parse_float=Decimal))
    for invoice in consolidated.invoices:
        sales = [line.sales_extended_price for customer in invoice.customers
                 for subscription in customer.subscriptions
                 for line in subscription.price_lines if line.sales_extended_price is not None]
        assert sum(sales, Decimal(0)) == invoice.totals.total_sales.total_excluding_vat


def _generate_client(served: Served, tmp_path: Path) -> Path:
    spec = tmp_path / "openapi.json"
    spec.write_bytes(served.get("/api/openapi.json").content)
    result = subprocess.run(
        [str(BIN / "openapi-python-client"), "generate", "--path", str(spec), "--output-path",
         str(tmp_path / "generated_billing_client"), "--meta", "none"],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return tmp_path


def test_openapi_python_client_negotiates_and_reads_money_exactly(served: Served,
                                                                  tmp_path: Path) -> None:
    sys.path.insert(0, str(_generate_client(served, tmp_path)))
    try:
        from generated_billing_client import AuthenticatedClient  # type: ignore[import-not-found]
        from generated_billing_client.api.documents import (  # type: ignore[import-not-found]
            invoices,
        )
        from generated_billing_client.models import (  # type: ignore[import-not-found]
            InvoicesVersion,
            PurchaseInvoices,
        )
    finally:
        sys.path.remove(str(tmp_path))
    sent: list[str | None] = []
    hooks = {"event_hooks": {"request": [lambda r: sent.append(r.headers.get("accept"))]}}

    def client(**headers: str) -> Any:
        return AuthenticatedClient(base_url=served.base, token=served.key, prefix="",
                                   auth_header_name="X-Api-Key", headers=headers,
                                   httpx_args=hooks)

    # Its defaults: httpx's "Accept: */*", which the contract answers in XML, the default
    # format; never a 406.
    with client() as default:
        raw = default.get_httpx_client().get("/api/v4/invoices", params=ALL)
    assert sent == ["*/*"]
    assert raw.status_code == 200
    assert raw.headers["content-type"].startswith("application/xml")
    # The documented setting: Accept JSON on the client; its parser then reads the answer.
    with client(Accept="application/json") as json_client:
        answer = invoices.sync_detailed(version=InvoicesVersion.V4, client=json_client,
                                        start_date=ALL["startDate"], end_date=ALL["endDate"])
    assert sent[-1] == "application/json"
    assert answer.status_code == 200
    assert isinstance(answer.parsed, PurchaseInvoices) and answer.parsed.invoices
    # Its models type money as float; from_dict keeps what it is given, so Decimal numbers
    # stay exact (docs/openapi.md).
    exact = PurchaseInvoices.from_dict(json.loads(answer.content, parse_float=Decimal))
    for invoice in exact.invoices:
        lines = [line for customer in invoice.customers for subscription in
                 customer.subscriptions for line in subscription.price_lines]
        assert all(type(line.extended_price) is Decimal for line in lines)
        assert sum(line.extended_price for line in lines) == \
            invoice.totals.total_excluding_vat
