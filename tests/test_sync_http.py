"""Incremental sync (``since`` / ``X-Next-Cursor``) and conditional requests (``ETag``,
``Last-Modified``, ``304``) over real HTTP, on the demo's partner billed run by run."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import shutil
import subprocess
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import ApiKey
from billing_api.api import conditional
from billing_api.app import create_app
from billing_api.billing.models import BillingRun, Invoice
from billing_api.billing.run import bill_partner
from billing_api.billing.undo import undo_run
from billing_api.customers.models import Customer, Subscription
from billing_api.db import transaction
from billing_api.demo.generator import build_demo
from billing_api.environments import Environment
from billing_api.importer import import_files
from billing_api.settings import Settings
from billing_api.sync import cursor
from tests.access_helpers import open_demo_api
from tests.conftest import skip_or_fail
from tests.http_server import serve
from tests.test_scoping import recorded_statements

TODAY = dt.date(2026, 12, 5)
ALL = {"startDate": "20200101", "endDate": "20271231"}
ENDPOINTS = ("invoices", "customerinvoices", "consolidatedinvoices")
KIND = {"invoices": "purchase", "customerinvoices": "customer",
        "consolidatedinvoices": "purchase"}
# Three runs: September, November, then October billed late (dated before November's).
RUNS = (("2026-09", dt.date(2026, 10, 23)), ("2026-11", dt.date(2026, 12, 23)),
        ("2026-10", dt.date(2026, 11, 23)))


@dataclass
class World:
    base: str
    secrets: dict[str, str]
    partner_id: int
    factory: sessionmaker[Session]

    def get(self, path: str, headers: dict[str, str] | None = None, env: str = "production",
            **params: str) -> httpx.Response:
        return httpx.get(self.base + path, params=params, timeout=120,
                         headers={"X-Api-Key": self.secrets[env], **(headers or {})})

    def bill(self, period: str, day: dt.date) -> int:
        with transaction(self.factory, writer=True) as session:
            summary = bill_partner(session, self.partner_id, Environment.PRODUCTION, period, day)
            assert summary.invoices and summary.sync_position is not None
            return summary.sync_position

    def numbers(self, kind: str, position: int | None = None) -> list[str]:
        """The invoice numbers of ``kind`` (of one run's position), from the database."""
        with self.factory() as session:
            stmt = select(Invoice.invoice_number).join(
                BillingRun, BillingRun.id == Invoice.billing_run_id).where(
                Invoice.partner_id == self.partner_id, Invoice.kind == kind,
                Invoice.environment == "production")
            if position is not None:
                stmt = stmt.where(BillingRun.sync_position == position)
            return sorted(session.scalars(stmt))

    def unbill_newest(self) -> None:
        with transaction(self.factory, writer=True) as session:
            # The API was used since the run: unbill refuses that unless nobody downloaded it.
            session.execute(update(ApiKey).values(last_used_at=None))
            run = session.scalars(select(BillingRun).where(
                BillingRun.partner_id == self.partner_id,
                BillingRun.environment == "production",
            ).order_by(BillingRun.sync_position.desc()).limit(1)).one()
            undo_run(session, run)


@pytest.fixture
def world(factory: sessionmaker[Session], settings: Settings) -> Iterator[World]:
    build_demo(factory, customers=6, months=3, today=TODAY,
               environments=(Environment.PRODUCTION,), bill=False)
    with transaction(factory) as session:
        company, secrets = open_demo_api(session, settings)
        partner_id = company.id
    quiet = settings.model_copy(update={"rate_limit_per_minute": 1_000_000})
    with serve(create_app(quiet)) as base:
        yield World(base, secrets, partner_id, factory)


def invoice_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("application/json"):
        return [str(i["Header"]["InvoiceID"]) for i in json.loads(response.text)["Invoices"]]
    return re.findall(r"<InvoiceID>([^<]*)</InvoiceID>", response.text)


def next_cursor(response: httpx.Response) -> str:
    value = response.headers["x-next-cursor"]
    assert value.startswith("c1")
    return value


# --- incremental sync ------------------------------------------------------------------------


def test_a_cursor_loop_returns_each_invoice_exactly_once_across_three_runs(
    world: World,
) -> None:
    clients = [(endpoint, fmt) for endpoint in ENDPOINTS for fmt in ("json", "xml")]
    seen: dict[tuple[str, str], list[str]] = {client: [] for client in clients}
    cursors: dict[tuple[str, str], str] = {}
    positions = [world.bill(*RUNS[0])]
    for endpoint, fmt in clients:  # the first full download, with dates
        first = world.get(f"/api/v4/{endpoint}", format=fmt, **ALL)
        seen[endpoint, fmt] += invoice_ids(first)
        cursors[endpoint, fmt] = next_cursor(first)
        assert cursor.decode(cursors[endpoint, fmt], world.partner_id,
                             "production").position == positions[0]
    for period, day in RUNS[1:]:
        positions.append(world.bill(period, day))
        for client in clients:
            endpoint, fmt = client
            answer = world.get(f"/api/v4/{endpoint}", format=fmt, since=cursors[client])
            new = invoice_ids(answer)
            assert sorted(new) == world.numbers(KIND[endpoint], positions[-1]), (client, period)
            seen[client] += new
            cursors[client] = next_cursor(answer)
            # Again with the new cursor: nothing new until the next run, the same cursor.
            again = world.get(f"/api/v4/{endpoint}", format=fmt, since=cursors[client])
            assert invoice_ids(again) == [] and next_cursor(again) == cursors[client]
    assert positions == [1, 2, 3]
    for (endpoint, fmt), ids in seen.items():
        assert len(ids) == len(set(ids)), (endpoint, fmt)
        assert sorted(ids) == world.numbers(KIND[endpoint]), (endpoint, fmt)
    # The late October run is dated before November's: a client polling a date window past
    # November's invoices would never have seen it; the cursor did.
    october = world.numbers("purchase", 3)
    assert october and set(october) <= set(seen["invoices", "json"])


def test_since_combines_with_dates_and_names_the_file_after_the_positions(
    world: World,
) -> None:
    start = world.get("/api/v4/invoices", format="json", **ALL)
    origin = next_cursor(start)
    for run in RUNS:
        world.bill(*run)
    only_october = world.get("/api/v4/invoices", format="json", since=origin,
                             startDate="20261101", endDate="20261130")
    assert sorted(invoice_ids(only_october)) == world.numbers("purchase", 3)
    assert "20261101_20261130" in only_october.headers["content-disposition"]
    everything = world.get("/api/v4/invoices", format="json", since=origin)
    assert sorted(invoice_ids(everything)) == world.numbers("purchase")
    assert 'filename="invoices_v4_since0_upto3.json"' in \
        everything.headers["content-disposition"]


def test_a_run_committing_while_a_client_reads_is_neither_skipped_nor_duplicated(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cursor and the data come from one snapshot: a run that commits after the cursor
    was read (here: between the cursor query and the document's queries) is in neither, and
    comes with the next call."""
    world.bill(*RUNS[0])
    origin = next_cursor(world.get("/api/v4/invoices", format="json", **ALL))
    original = conditional.partner_state
    pending = list(RUNS[1:])
    committed: list[int] = []

    def state_then_a_run_commits(*args: Any) -> Any:
        state = original(*args)
        if pending:
            run = pending.pop(0)
            thread = threading.Thread(target=lambda: committed.append(world.bill(*run)))
            thread.start()
            thread.join(60)
            assert not thread.is_alive(), "the concurrent run did not commit"
        return state

    monkeypatch.setattr(conditional, "partner_state", state_then_a_run_commits)
    during = world.get("/api/v4/invoices", format="json", since=origin)  # run 2 commits
    assert committed == [2]
    assert invoice_ids(during) == [] and next_cursor(during) == origin
    # A date window covering every date, read while run 3 commits: neither shows it.
    window = world.get("/api/v4/invoices", format="json", **ALL)
    assert committed == [2, 3]
    assert sorted(invoice_ids(window)) == sorted(world.numbers("purchase", 1)
                                                 + world.numbers("purchase", 2))
    assert cursor.decode(next_cursor(window), world.partner_id, "production").position == 2
    after = world.get("/api/v4/invoices", format="json", since=next_cursor(during))
    assert sorted(invoice_ids(after)) == sorted(world.numbers("purchase", 2)
                                                + world.numbers("purchase", 3))
    last = world.get("/api/v4/invoices", format="json", since=next_cursor(window))
    assert sorted(invoice_ids(last)) == world.numbers("purchase", 3)
    assert cursor.decode(next_cursor(last), world.partner_id, "production").position == 3


def test_the_e_invoice_zip_follows_the_cursor(world: World) -> None:
    world.bill(*RUNS[0])
    origin = next_cursor(world.get("/api/v4/customerinvoices", format="json", **ALL))
    world.bill(*RUNS[1])
    answer = world.get("/api/v4/customerinvoices", format="ubl", since=origin)
    assert answer.status_code == 200, answer.text
    names = zipfile.ZipFile(io.BytesIO(answer.content)).namelist()
    assert sorted(names) == [f"{n}.xml" for n in world.numbers("customer", 2)]
    following = next_cursor(answer)
    empty = world.get("/api/v4/customerinvoices", format="pdf", since=following)
    assert zipfile.ZipFile(io.BytesIO(empty.content)).namelist() == []
    assert next_cursor(empty) == following
    repeat = world.get("/api/v4/customerinvoices", {"If-None-Match": answer.headers["etag"]},
                       format="ubl", since=origin)
    assert repeat.status_code == 304 and repeat.content == b""


def test_cursors_that_are_not_the_callers_are_refused(world: World) -> None:
    world.bill(*RUNS[0])
    good = next_cursor(world.get("/api/v4/invoices", **ALL))
    json_problem = {"Accept": "application/json"}
    for bad, env, says in ((good[:-2], "production", "damaged"),
                           ("20261101", "production", "not a cursor"),
                           (good, "sandbox", "another account or environment")):
        answer = world.get("/api/v4/invoices", json_problem, env=env, since=bad)
        assert answer.status_code == 400, answer.text
        problem = answer.json()
        assert answer.headers["content-type"] == "application/problem+json"
        assert problem["code"] == "invalid_cursor" and says in problem["detail"]
        assert "X-Next-Cursor" in problem["detail"] or "copy" in problem["detail"] \
            or "returned to this key" in problem["detail"]
    huge = cursor.encode(world.partner_id, "production", 2**64 - 1)
    answer = world.get("/api/v4/invoices", json_problem, since=huge)
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_cursor"
    before_v4 = world.get("/api/v3/invoices", json_problem, since=good)
    assert before_v4.status_code == 400 and "/api/v4/invoices" in before_v4.json()["detail"]
    # Ahead of the server (an edited cursor, or a replica lagging behind the primary that
    # answered before): nothing, and the cursor does not go back.
    ahead = cursor.encode(world.partner_id, "production", 9)
    answer = world.get("/api/v4/invoices", format="json", since=ahead)
    assert invoice_ids(answer) == [] and next_cursor(answer) == ahead
    assert "x-next-cursor" not in world.get("/api/v3/invoices", **ALL).headers


# --- conditional requests ---------------------------------------------------------------------


def _reads(statements: list[tuple[str, Any]], table: str) -> int:
    return sum(1 for sql, _ in statements if re.search(rf"\b{table}\b", sql, re.IGNORECASE))


def test_a_repeat_with_the_tag_is_304_without_reading_an_invoice(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.bill(*RUNS[0])
    first = world.get("/api/v4/consolidatedinvoices", format="json", **ALL)
    tag, modified = first.headers["etag"], first.headers["last-modified"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', tag)
    assert first.headers["cache-control"] == "private, no-cache"
    assert parsedate_to_datetime(modified) <= dt.datetime.now(dt.UTC)
    with recorded_statements(monkeypatch) as statements:
        repeat = world.get("/api/v4/consolidatedinvoices", {"If-None-Match": tag},
                           format="json", **ALL)
    assert repeat.status_code == 304 and repeat.content == b""
    for name, value in (("etag", tag), ("last-modified", modified), ("vary", "Accept"),
                        ("cache-control", "private, no-cache"),
                        ("x-next-cursor", first.headers["x-next-cursor"])):
        assert repeat.headers[name] == value, name
    # Authentication, then one statement on the runs: no invoice, no price line.
    assert _reads(statements, "price_lines") == 0 and _reads(statements, "invoices") == 0
    assert _reads(statements, "billing_runs") == 1
    # A list, weak forms and * match too (RFC 9110: weak comparison for If-None-Match).
    for header in (f'"other", W/{tag}', "*", f'"x",{tag}'):
        answer = world.get("/api/v4/consolidatedinvoices", {"If-None-Match": header},
                           format="json", **ALL)
        assert answer.status_code == 304, header
    for header in ('"other"', tag[:-2] + '"', "W/"):
        answer = world.get("/api/v4/consolidatedinvoices", {"If-None-Match": header},
                           format="json", **ALL)
        assert answer.status_code == 200 and answer.content == first.content, header
    # Another format, version or window is another tag.
    others = {world.get("/api/v4/consolidatedinvoices", format="xml", **ALL).headers["etag"],
              world.get("/api/v3/consolidatedinvoices", format="json", **ALL).headers["etag"],
              world.get("/api/v4/consolidatedinvoices", format="json",
                        startDate="20200101", endDate="20261231").headers["etag"]}
    assert tag not in others and len(others) == 3


def test_if_modified_since_applies_only_without_if_none_match(world: World) -> None:
    world.bill(*RUNS[0])
    first = world.get("/api/v4/invoices", **ALL)
    modified = parsedate_to_datetime(first.headers["last-modified"])
    earlier = format_datetime(modified - dt.timedelta(seconds=1), usegmt=True)
    cases = (({"If-Modified-Since": first.headers["last-modified"]}, 304),
             ({"If-Modified-Since": earlier}, 200),
             ({"If-Modified-Since": "yesterday"}, 200),
             ({"If-Modified-Since": first.headers["last-modified"],
               "If-None-Match": '"other"'}, 200))
    for headers, status in cases:
        assert world.get("/api/v4/invoices", headers, **ALL).status_code == status, headers


def test_the_tag_changes_with_a_run_in_the_window_and_with_unbill_and_only_then(
    world: World,
) -> None:
    world.bill(*RUNS[0])
    window = {"startDate": "20261001", "endDate": "20261130"}  # September's and October's
    before = world.get("/api/v4/invoices", format="json", **window)
    tag = before.headers["etag"]
    world.bill(*RUNS[2])  # October, dated 2026-11-23: inside
    grown = world.get("/api/v4/invoices", {"If-None-Match": tag}, format="json", **window)
    assert grown.status_code == 200 and grown.headers["etag"] != tag
    assert len(invoice_ids(grown)) > len(invoice_ids(before))
    world.unbill_newest()
    shrunk = world.get("/api/v4/invoices", {"If-None-Match": grown.headers["etag"]},
                       format="json", **window)
    assert shrunk.status_code == 200
    # The same bytes as before the run: the same tag, but a later Last-Modified (an
    # If-Modified-Since of the removed run's time must not say "not modified").
    assert shrunk.content == before.content and shrunk.headers["etag"] == tag
    assert parsedate_to_datetime(shrunk.headers["last-modified"]) >= \
        parsedate_to_datetime(grown.headers["last-modified"])
    world.bill(*RUNS[1])  # November, dated 2026-12-23: outside the window
    unchanged = world.get("/api/v4/invoices", {"If-None-Match": tag}, format="json", **window)
    assert unchanged.status_code == 304


def test_single_invoices_details_and_zips_are_validated(
    world: World, monkeypatch: pytest.MonkeyPatch,
) -> None:
    world.bill(*RUNS[0])
    number = world.numbers("customer")[0]
    with world.factory() as session:
        subscription_id = session.scalars(select(Subscription.id).where(
            Subscription.partner_id == world.partner_id)).first()
    requests = [(f"/api/v4/customerinvoices/{number}", {"format": fmt})
                for fmt in ("ubl", "pdf", "xml", "json")]
    requests += [("/api/v4/customerinvoices", {"format": "ubl", **ALL}),
                 ("/api/v4/customerinvoices", {"format": "ubl", "embedPdf": "true", **ALL}),
                 ("/api/v4/subscriptiondetails", {"subscriptionId": str(subscription_id)}),
                 ("/api/v3/subscriptiondetails", {"subscriptionId": str(subscription_id)})]
    tags = set()
    for path, params in requests:
        first = world.get(path, **params)
        assert first.status_code == 200, (path, params, first.text)
        tag = first.headers["etag"]
        assert first.headers["cache-control"] == "private, no-cache"
        assert "last-modified" in first.headers
        repeat = world.get(path, {"If-None-Match": tag}, **params)
        assert repeat.status_code == 304 and repeat.content == b"", (path, params)
        assert repeat.headers["etag"] == tag
        tags.add(tag)
    assert len(tags) == len(requests)
    one = world.get(f"/api/v4/customerinvoices/{number}", format="ubl")
    with recorded_statements(monkeypatch) as statements:
        repeat = world.get(f"/api/v4/customerinvoices/{number}",
                           {"If-None-Match": one.headers["etag"]}, format="ubl")
    assert repeat.status_code == 304
    # Authentication, then one statement on the invoice's number: no price line.
    assert _reads(statements, "invoices") == 1 and _reads(statements, "price_lines") == 0
    missing = world.get("/api/v4/customerinvoices/NOPE-1", {"If-None-Match": "*"},
                        format="ubl")
    assert missing.status_code == 404


def test_a_party_change_changes_the_ubl_tag_only_where_the_snapshot_lacks_it(
    world: World, tmp_path: Path,
) -> None:
    """E-invoices complete an old snapshot (billed before the Peppol fields existed) from the
    customer's current row: an import that changes that row changes that UBL, and only it."""
    world.bill(*RUNS[0])
    old, current = world.numbers("customer")[:2]
    with transaction(world.factory) as session:
        invoice = session.scalars(select(Invoice).where(Invoice.invoice_number == old,
                                                        Invoice.kind == "customer")).one()
        receiver = dict(invoice.receiver)
        receiver.pop("EndpointID")  # as billed before the field existed
        invoice.receiver = receiver
        customer = session.get_one(Customer, invoice.customer_id)
        row = {"partner": "Northwind IT Services BV", "environment": "production",
               "customer_number": customer.customer_number,
               "company_name": customer.company_name, "country_code": customer.country_code,
               "endpoint_id": "sync-test-endpoint", "endpoint_scheme": customer.endpoint_scheme}
    tags = {n: world.get(f"/api/v4/customerinvoices/{n}", format="ubl").headers["etag"]
            for n in (old, current)}
    path = tmp_path / "customers.json"
    path.write_text(json.dumps({"customers": [row]}), encoding="utf-8")
    with transaction(world.factory) as session:
        import_files(session, [path])
    changed = world.get(f"/api/v4/customerinvoices/{old}", {"If-None-Match": tags[old]},
                        format="ubl")
    assert changed.status_code == 200 and changed.headers["etag"] != tags[old]
    assert b"sync-test-endpoint" in changed.content
    same = world.get(f"/api/v4/customerinvoices/{current}", {"If-None-Match": tags[current]},
                     format="ubl")
    assert same.status_code == 304


# --- docs/sync.md, as written ------------------------------------------------------------------

DOC = Path(__file__).resolve().parent.parent / "docs" / "sync.md"


def _shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def test_the_curl_loop_of_the_docs_works_as_written(world: World, tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        skip_or_fail("curl is not installed (scripts/install-system-deps installs it)")
    initial, daily, revalidate = _shell_blocks()
    prelude = f"KEY='{world.secrets['production']}'\nAPI='{world.base}/api/v4'\n"
    initial = "\n".join(line for line in initial.splitlines()
                        if not line.startswith(("KEY=", "API=")))

    def run(block: str) -> str:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + block],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def ids(name: str) -> list[str]:
        return sorted(re.findall(r"<InvoiceID>([^<]*)</InvoiceID>",
                                 (tmp_path / name).read_text(encoding="utf-8")))

    world.bill(*RUNS[0])
    run(initial)
    assert ids("invoices-initial.xml") == world.numbers("purchase", 1)
    first_cursor = (tmp_path / "cursor.txt").read_text().strip()
    world.bill(*RUNS[1])
    run(daily)
    second_cursor = (tmp_path / "cursor.txt").read_text().strip()
    assert second_cursor != first_cursor
    assert ids(f"invoices-since-{first_cursor}.xml") == world.numbers("purchase", 2)
    run(daily)  # nothing new: an empty document of its own, the cursor stays
    assert ids(f"invoices-since-{second_cursor}.xml") == []
    assert ids(f"invoices-since-{first_cursor}.xml") == world.numbers("purchase", 2)
    assert (tmp_path / "cursor.txt").read_text().strip() == second_cursor
    assert cursor.decode(second_cursor, world.partner_id, "production").position == 2
    assert run(revalidate).startswith("HTTP/1.1 304")
