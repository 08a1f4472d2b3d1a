"""Golden files: every document × version × format of a small fixed world, byte for byte.

The world (``export_world.build_golden_world``) gives every row an explicit id, so documents
are the same on SQLite and PostgreSQL except ``LineId``, which the billing run's inserts get
from the database (PostgreSQL's sequences do not restart when the tests empty the tables):
``LineId`` values are replaced by their order of first appearance (1, 2, …) before comparing.
``UPDATE_GOLDEN=1`` rewrites the files instead; review the diff, and ``tests/golden/README.md``
when numbers change.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from billing_api.api.versions import ENDPOINTS, SERVED
from billing_api.app import create_app
from billing_api.settings import Settings
from tests.export_world import GOLDEN_SUBSCRIPTION_ID, Client, build_golden_world
from tests.http_server import serve

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
FORMATS = ("xml", "json")
_LINE_ID = re.compile(rb"(<LineId>|\"LineId\":)(\d+)")


def golden_name(endpoint: str, version: str, fmt: str) -> str:
    return f"{endpoint}_{version}.{fmt}"


def normalise(body: bytes) -> bytes:
    """``LineId`` values numbered by first appearance; everything else untouched."""
    numbers: dict[bytes, bytes] = {}

    def renumber(match: re.Match[bytes]) -> bytes:
        number = numbers.setdefault(match[2], str(len(numbers) + 1).encode())
        return match[1] + number

    return _LINE_ID.sub(renumber, body)


@pytest.fixture
def golden_client(factory: sessionmaker[Session], settings: Settings) -> Iterator[Client]:
    world = build_golden_world(factory, settings)
    with serve(create_app(settings)) as base:
        yield Client(base, world.secret)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_documents_equal_their_golden_files(golden_client: Client, endpoint: str) -> None:
    params = {"startDate": "20261201", "endDate": "20261231"}
    if endpoint == "subscriptiondetails":
        params["subscriptionId"] = str(GOLDEN_SUBSCRIPTION_ID)
    different = []
    for version in SERVED:
        for fmt in FORMATS:
            response = golden_client.get(f"/api/{version}/{endpoint}", format=fmt, **params)
            assert response.status_code == 200, response.text
            body = normalise(response.content)
            path = GOLDEN / golden_name(endpoint, version, fmt)
            if UPDATE:
                path.write_bytes(body)
            elif not path.exists() or path.read_bytes() != body:
                different.append(path.name)
    assert not different, (
        f"{different} differ from the server's output: if the change is intended, rerun with "
        "UPDATE_GOLDEN=1 and review the diff"
    )


def test_no_stale_golden_files() -> None:
    expected = {golden_name(e, v, f) for e in ENDPOINTS for v in SERVED for f in FORMATS}
    assert {p.name for p in GOLDEN.iterdir()} == expected | {"README.md"}


def test_normalise_numbers_line_ids_by_first_appearance() -> None:
    body = b'<LineId>907</LineId><LineId>12</LineId><LineId>907</LineId>"LineId":12,"LineId":5'
    assert normalise(body) == (
        b'<LineId>1</LineId><LineId>2</LineId><LineId>1</LineId>"LineId":2,"LineId":3'
    )


def _json(name: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((GOLDEN / name).read_bytes(), parse_float=Decimal)
    return data


def _totals(name: str) -> list[tuple[Decimal, Decimal, Decimal]]:
    invoices = _json(name)["Invoices"]
    assert isinstance(invoices, list)
    return [tuple(Decimal(str(i["Totals"][k])) for k in  # type: ignore[misc]
                  ("TotalExcludingVAT", "TotalVAT", "TotalIncludingVAT")) for i in invoices]


def test_the_readme_numbers_are_the_golden_numbers() -> None:
    """The hand-checked figures of tests/golden/README.md, so a careless UPDATE_GOLDEN=1
    that changes them fails here too."""
    D = Decimal
    for version in SERVED:
        assert _totals(f"invoices_{version}.json") == [
            (D("31.00"), D("6.51"), D("37.51")),  # Microsoft: 24.00 + 7.00
            (D("480.00"), D("100.80"), D("580.80")),  # VMware: 16 × 2.50 × 12
        ]
        assert _totals(f"customerinvoices_{version}.json") == [
            (D("36.50"), D("7.67"), D("44.17")),  # Bakker & Zonen: 27.00 + 9.50
            (D("576.00"), D("0.00"), D("576.00")),  # Brasserie Ünal: reverse charge
        ]
        consolidated = _json(f"consolidatedinvoices_{version}.json")["Invoices"]
        assert isinstance(consolidated, list)
        sales = [i["Totals"]["TotalSales"]["TotalExcludingVAT"] for i in consolidated]
        assert sales == [D("36.50"), D("576.00")]
