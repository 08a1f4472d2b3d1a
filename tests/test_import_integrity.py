"""Import integrity and scale: cut files, invisible characters, NFC, manifests, the error cap
and the chunked path (issue 16, problems 2-4). Real SQLite or PostgreSQL, real files."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.customers.models import Customer, Subscription, UsageRecord
from billing_api.importer import ImportRejected, ImportSummary, import_files

EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
EXAMPLE_JSON = EXAMPLES / "import-example.json"
PARTNER = "Northwind IT Services BV"
USAGE_HEADER = "partner,environment,customer_number,subscription,resource,period,quantity\n"
USAGE_ROW = f"{PARTNER},production,CUST-000002,vDC Globex,Storage,2026-04,"
CUSTOMER_HEADER = "partner,environment,customer_number,company_name,country_code\n"
Factory = sessionmaker[Session]


def _import(factory: Factory, *paths: Path, **options: Any) -> ImportSummary:
    with factory.begin() as session:
        return import_files(session, list(paths), **options)


def _rejected(factory: Factory, *paths: Path, **options: Any) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        _import(factory, *paths, **options)
    return caught.value


def _count(factory: Factory, model: Any) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


@pytest.fixture
def example(factory: Factory) -> Factory:
    _import(factory, EXAMPLE_JSON)
    return factory


# --- problem 2: a cut file is refused, naming the file and what to fix -------------------

@pytest.mark.parametrize(("tail", "message"), [
    ("499", "does not end with a line break, so its last row may be cut short"),  # 499.25 cut
    ('"499.25\n', 'ends inside a quoted cell (a " without its closing "): it is cut short'),
    ('"499.25', 'ends inside a quoted cell'),
    ("499.25", "does not end with a line break"),  # complete but no final newline: refused too
])
def test_a_cut_csv_is_refused_and_nothing_is_written(example: Factory, tmp_path: Path,
                                                     tail: str, message: str) -> None:
    before = _count(example, UsageRecord)
    path = tmp_path / "usage.csv"
    path.write_text(USAGE_HEADER + USAGE_ROW + "12.5\n" + USAGE_ROW.replace("2026-04", "2026-05")
                    + tail)
    errors = [str(e) for e in _rejected(example, path).errors]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}:3: -: ") and message in errors[0], errors
    assert _count(example, UsageRecord) == before  # not even the complete first row


def test_a_csv_ending_with_a_line_break_imports(example: Factory, tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(USAGE_HEADER + USAGE_ROW + "499.25\r\n")
    _import(example, path)
    with example() as session:
        assert session.scalars(select(UsageRecord.quantity).where(
            UsageRecord.period == "2026-04")).one() == pytest.approx(499.25)


@pytest.mark.parametrize("cut", [10, 30, -3, -1])
def test_a_json_file_cut_short_is_refused(factory: Factory, tmp_path: Path, cut: int) -> None:
    text = EXAMPLE_JSON.read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[:cut] if cut > 0 else text.rstrip()[:cut])
    errors = [str(e) for e in _rejected(factory, path).errors]
    assert any(f"{path}:" in e and "invalid JSON" in e for e in errors), errors
    assert _count(factory, Customer) == 0


# --- problem 4: invisible and line-breaking characters; NFC ---------------------------------

INVISIBLE = ["\u2028", "\u2029", "\u0085", "\u202e", "\u200b", "\ufeff"]


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_characters_in_a_name_are_refused(example: Factory, tmp_path: Path,
                                                     char: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMER_HEADER + f"{PARTNER},production,X-1,Acme{char}moc,NL\n",
                    encoding="utf-8")
    document = tmp_path / "c.json"
    document.write_text(json.dumps({"partners": [{"name": f"Evil{char}Corp",
                                                  "country_code": "NL"}]}))
    for file, row, field in ((path, "2", "company_name"), (document, ".partners[0]", "name")):
        (error,) = _rejected(example, file).errors
        assert (error.file, error.row, error.field) == (str(file), row, field)
        assert error.message.startswith("contains ") and f"U+{ord(char):04X}" in error.message
    assert _count(example, Customer) == 2


def test_a_byte_order_mark_at_the_start_of_a_csv_is_fine(example: Factory,
                                                         tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (CUSTOMER_HEADER + f"{PARTNER},production,X-1,A,NL\n")
                     .encode())
    assert _import(example, path).tables["customers"].created == 1


def test_text_is_stored_in_normal_form_c(example: Factory, tmp_path: Path) -> None:
    decomposed = "Cafe\u0301 Ame\u0301lie"
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMER_HEADER + f"{PARTNER},production,X-1,{decomposed},FR\n")
    _import(example, path)
    with example() as session:
        name = session.scalars(select(Customer.company_name).where(
            Customer.customer_number == "X-1")).one()
    assert name == unicodedata.normalize("NFC", decomposed) == "Café Amélie"
    assert len(name) == len(decomposed) - 2


# --- manifest ----------------------------------------------------------------------------

def _manifest(folder: Path, entries: dict[str, tuple[int, str]]) -> Path:
    path = folder / "manifest.json"
    path.write_text(json.dumps({"files": {name: {"rows": rows, "sha256": digest}
                                          for name, (rows, digest) in entries.items()}}))
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_manifest_is_verified(example: Factory, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMER_HEADER + f"{PARTNER},production,X-1,A,NL\n\n"
                    f"{PARTNER},production,X-2,B,NL\n")
    good = _manifest(tmp_path, {"c.csv": (2, _digest(path))})
    assert _import(example, path, manifest=good).tables["customers"].created == 2

    wrong_count = _manifest(tmp_path, {"c.csv": (3, _digest(path))})
    (error,) = _rejected(example, path, manifest=wrong_count).errors
    assert str(error) == f"{path}:.: -: has 2 rows but the manifest says 3"

    wrong_digest = _manifest(tmp_path, {"c.csv": (2, "0" * 64), "other.csv": (1, "1" * 64)})
    errors = [str(e) for e in _rejected(example, path, manifest=wrong_digest).errors]
    assert any(e.startswith(f"{path}:.: -: has SHA-256 {_digest(path)} but the manifest "
                            "says 0000") for e in errors), errors
    assert f"{wrong_digest}:.: files.other.csv: is listed in the manifest but not imported" \
        in errors

    unlisted = _manifest(tmp_path, {})
    (error,) = _rejected(example, path, manifest=unlisted).errors
    assert "is not listed in the manifest" in str(error)
    with example() as session:  # the first import only
        assert session.scalar(select(func.count()).select_from(Customer)) == 4


# --- the error cap -----------------------------------------------------------------------

def test_errors_are_capped_at_a_hundred_then_counted(example: Factory, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMER_HEADER + "".join(f"{PARTNER},production,B-{n},B,NLD\n"
                                              for n in range(150)))
    rejected = _rejected(example, path)
    assert (len(rejected.errors), rejected.more, rejected.total) == (100, 50, 150)
    assert [e.row for e in rejected.errors] == [str(n) for n in range(2, 102)]
    assert rejected.errors[0].field == "country_code"

    database = tmp_path / "cli.db"
    env = {**os.environ, "BILLING_API_DATABASE_URL": f"sqlite:///{database}"}
    command = [sys.executable, "-m", "billing_api"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    done = subprocess.run([*command, "import", str(path), "--table", "customers"], env=env,
                          capture_output=True, text=True, check=False, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert lines[-2:] == ["and 50 more", "import rejected: 150 errors, nothing was imported"]
    assert len([line for line in lines if line.startswith(f"{path}:")]) == 100


# --- the chunked path --------------------------------------------------------------------

def _files(folder: Path, count: int) -> list[Path]:
    customers, subscriptions, usage = (folder / "c.csv", folder / "s.json", folder / "u.csv")
    with customers.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CUSTOMER_HEADER.strip().split(","))
        writer.writerows([PARTNER, "production", f"K-{n:05d}", f"K {n}", "DE"]
                         for n in range(count))
    subscriptions.write_text(json.dumps({"subscriptions": [
        {"partner": PARTNER, "environment": "production", "customer_number": f"K-{n:05d}",
         "plan": "VMware Cloud Director vDC", "name": "vDC", "start_date": "2026-03-01",
         "resources": [{"resource": "vCPU", "amount": 2}, {"resource": "Storage", "amount": 0}],
         "attributes": [{"attribute": "Datacenter", "value": "AMS-1"}]}
        for n in range(count)]}, indent=1))
    with usage.open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(USAGE_HEADER.strip().split(","))
        writer.writerows([PARTNER, "production", f"K-{n:05d}", "vDC", "Storage", "2026-04",
                          f"{n}.25"] for n in range(count))
    return [customers, subscriptions, usage]


def test_a_large_import_goes_through_many_chunks(example: Factory, tmp_path: Path) -> None:
    files = _files(tmp_path, 5000)  # 20,000 rows with the subscriptions' resources
    summary = _import(example, *reversed(files), chunk_size=700)  # the order does not matter
    counts = {name: (c.created, c.updated, c.unchanged) for name, c in summary.tables.items()}
    assert counts["customers"] == (5000, 0, 0)
    assert counts["subscriptions"] == (5000, 0, 0)
    assert counts["subscription_resources"] == (10000, 0, 0)
    assert counts["usage_records"] == (5000, 0, 0)
    with example() as session:
        assert session.scalar(select(func.sum(UsageRecord.quantity)).where(
            UsageRecord.period == "2026-04")) == pytest.approx(sum(range(5000)) + 5000 * 0.25)

    again = _import(example, *files, chunk_size=700)
    counts = {name: (c.created, c.updated, c.unchanged) for name, c in again.tables.items()}
    assert counts["customers"] == (0, 0, 5000)
    assert counts["subscriptions"] == (0, 0, 5000)
    assert counts["usage_records"] == (0, 0, 5000)
    assert _count(example, Subscription) == 5002


def test_duplicates_are_found_across_chunks(example: Factory, tmp_path: Path) -> None:
    customers, subscriptions, usage = _files(tmp_path, 4)
    for path in (customers, usage):  # the first data row once more, at the end
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join([*lines, lines[1]]))
    document = json.loads(subscriptions.read_text())
    document["subscriptions"].append(document["subscriptions"][0])
    subscriptions.write_text(json.dumps(document))
    errors = [str(e) for e in _rejected(example, customers, subscriptions, usage,
                                        chunk_size=2).errors]
    assert errors == [
        f"{customers}:6: customer_number: duplicate of {customers}:2",
        f"{subscriptions}:.subscriptions[4]: start_date: duplicate of "
        f"{subscriptions}:.subscriptions[0]",
        f"{usage}:6: period: duplicate of {usage}:2 (the same subscription, resource and "
        "month)",
    ]
    assert _count(example, Customer) == 2


def test_a_row_referring_to_a_refused_row_reports_nothing_more(
        example: Factory, tmp_path: Path) -> None:
    partners = tmp_path / "p.json"
    partners.write_text(json.dumps({"partners": [{"name": "New BV", "country_code": "NLD"}]}))
    customers = tmp_path / "c.csv"
    customers.write_text(CUSTOMER_HEADER + "New BV,production,Z-1,Z,NL\n")
    subscriptions = tmp_path / "s.json"
    subscriptions.write_text(json.dumps({"subscriptions": [{
        "partner": "New BV", "environment": "production", "customer_number": "Z-1",
        "plan": "VMware Cloud Director vDC", "name": "vDC", "start_date": "2026-03-01",
        "resources": [{"resource": "vCPU", "amount": 1}]}]}))
    errors = [str(e) for e in _rejected(example, customers, subscriptions, partners,
                                        chunk_size=1).errors]
    assert len(errors) == 1 and errors[0].startswith(f"{partners}:.partners[0]: country_code")
    assert _count(example, Customer) == 2


class _Recorder:
    def __init__(self) -> None:
        self.phases: list[tuple[str, int]] = []
        self.reads: dict[str, list[int]] = {}

    def phase(self, name: str, total_bytes: int) -> None:
        self.phases.append((name, total_bytes))
        self.reads[name] = []

    def read(self, done_bytes: int) -> None:
        self.reads[self.phases[-1][0]].append(done_bytes)


def test_progress_is_reported_per_phase_in_bytes(example: Factory, tmp_path: Path) -> None:
    files = _files(tmp_path, 300)
    recorder = _Recorder()
    _import(example, *files, chunk_size=50, progress=recorder)
    sizes = [p.stat().st_size for p in files]
    assert recorder.phases == [("catalog", sizes[1]), ("customers", sizes[0]),
                               ("subscriptions", sizes[1]), ("usage", sizes[2])]
    for name, total in recorder.phases:
        reads = recorder.reads[name]
        assert reads == sorted(reads) and reads[-1] == total, (name, reads, total)


def test_a_file_that_is_not_utf8_is_refused(example: Factory, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes((CUSTOMER_HEADER + f"{PARTNER},production,X-1,Caf").encode()
                     + b"\xe9,FR\n")
    (error,) = _rejected(example, path).errors
    assert str(error).startswith(f"{path}:.: -: is not UTF-8 text")
    assert _count(example, Customer) == 2
