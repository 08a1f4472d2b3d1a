"""``billing-api import``: JSON and CSV files into the database, all rows or none."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import Company
from billing_api.billing.models import PriceLine, TaxZone
from billing_api.billing.run import bill_partner
from billing_api.catalog.models import RatePeriod, ResourceRate
from billing_api.cli.importer import CsvTable
from billing_api.customers.models import Customer, Subscription, SubscriptionResource, UsageRecord
from billing_api.db import Base, make_engine
from billing_api.demo.generator import demo_vat_number
from billing_api.environments import Environment
from billing_api.errors import InvalidInput
from billing_api.importer import ImportRejected, ImportSummary, import_files
from billing_api.importer.fields import EnvironmentName
from billing_api.importer.schema import CSV_TABLES, CustomerRow

from . import factories as f

D = Decimal
EXAMPLES = Path(__file__).resolve().parent.parent / "docs" / "examples"
EXAMPLE_JSON = EXAMPLES / "import-example.json"
PARTNER = "Northwind IT Services BV"
Factory = sessionmaker[Session]


def _import(factory: Factory, *paths: Path, table: str | None = None) -> ImportSummary:
    """One import in one transaction: committed, or rolled back when it raises."""
    with factory.begin() as session:
        return import_files(session, list(paths), table=table)


def _rejected(factory: Factory, *paths: Path, table: str | None = None) -> list[str]:
    with pytest.raises(ImportRejected) as caught:
        _import(factory, *paths, table=table)
    return [str(e) for e in caught.value.errors]


def _row_counts(factory: Factory) -> dict[str, int]:
    with factory() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) or 0
                for t in Base.metadata.sorted_tables}


def _write(path: Path, document: Any) -> Path:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _customer(number: str = "N-1", **fields: Any) -> dict[str, Any]:
    return {"partner": PARTNER, "environment": "production", "customer_number": number,
            "company_name": f"Customer {number}", "country_code": "NL"} | fields


def _subscription(number: str = "CUST-000001", **fields: Any) -> dict[str, Any]:
    return {"partner": PARTNER, "environment": "production", "customer_number": number,
            "plan": "VMware Cloud Director vDC", "name": "vDC", "start_date": "2026-03-01",
            "resources": [{"resource": "vCPU", "amount": 4}]} | fields


# --- the example -------------------------------------------------------------------------


def test_the_example_imports_and_bills(factory: Factory) -> None:
    summary = _import(factory, EXAMPLE_JSON, EXAMPLES / "customers.csv", EXAMPLES / "usage.csv")
    assert summary.tables["companies"].created == 2
    assert summary.tables["customers"].created == 6
    assert summary.tables["subscriptions"].created == 2
    assert summary.tables["usage_records"].created == 3

    with factory.begin() as session:
        partner_id = session.scalars(select(Company.id).where(Company.name == PARTNER)).one()
        run = bill_partner(session, partner_id, Environment.PRODUCTION, "2026-01",
                           dt.date(2026, 2, 1))
        assert run.lines > 0 and run.invoices > 0
        charges = set(session.scalars(select(PriceLine.charge_type)))
        assert {"Purchase Fee", "Usage Fee"} <= charges
        # Globex (DE, with a VAT number) is reverse-charged on the partner's invoice to it.
        rc = session.scalars(select(TaxZone.id).where(TaxZone.code == "RC")).one()
        globex = session.scalars(select(PriceLine).where(
            PriceLine.kind == "customer", PriceLine.consumer_company_name == "Globex GmbH")).all()
        assert globex and all(line.tax_zone_id == rc for line in globex)


def test_importing_the_same_files_again_changes_nothing(factory: Factory) -> None:
    files = (EXAMPLE_JSON, EXAMPLES / "customers.csv", EXAMPLES / "usage.csv")
    _import(factory, *files)
    before = _row_counts(factory)
    again = _import(factory, *files)
    assert again.created == 0 and again.updated == 0
    assert again.tables["subscriptions"].unchanged == 2
    assert _row_counts(factory) == before


# --- rejection: every error, nothing written ---------------------------------------------

BAD_FILE = """{
  "partners": [{"name": "Northwind IT Services BV", "country_code": "NL", "city": "Gouda"}],
  "service_plans": [{"name": "Plan X", "vendor": "VMware", "category": "Infrastructure",
    "periods": [{}],
    "rates": [{"resource": "vCPU", "recurring_price": 12.34567, "overuse_price": 1.5e2}]}],
  "customers": [
    {"partner": "Northwind IT Services BV", "environment": "production",
     "customer_number": "N-1", "company_name": "One", "country_code": "NL"},
    {"partner": "Northwind IT Services BV", "environment": "production",
     "customer_number": "N-1", "company_name": "Two", "country_code": "NL"}],
  "subscriptions": [
    {"partner": "Northwind IT Services BV", "environment": "production",
     "customer_number": "CUST-000001", "plan": "VMware Cloud Director vDC", "name": "a",
     "start_date": "2026-02-30", "resources": [{"resource": "vCPU", "amount": 1}]},
    {"partner": "Northwind IT Services BV", "environment": "production",
     "customer_number": "CUST-000001", "plan": "No Such Plan", "name": "b",
     "start_date": "2026-03-01", "resources": [{"resource": "vCPU", "amount": 1}]},
    {"partner": "Northwind IT Services BV", "environment": "production",
     "customer_number": "CUST-000001", "plan": "VMware Cloud Director vDC", "name": "c",
     "start_date": "2026-03-01", "resources": [{"resource": "vCPU", "amount": 0.30000000000000004}]}
  ]
}"""
BAD_FILE_ERRORS = {
    (".service_plans[0]", "rates[0].recurring_price", "has more than 4 decimal places"),
    (".service_plans[0]", "rates[0].overuse_price", "is written with an exponent"),
    (".customers[1]", "customer_number", "duplicate of"),
    (".subscriptions[0]", "start_date", "is not a calendar date"),
    (".subscriptions[1]", "plan", "unknown plan 'No Such Plan'"),
    (".subscriptions[2]", "resources[0].amount", "has more than 4 decimal places"),
}


def test_a_bad_file_is_rejected_with_every_error_and_nothing_is_written(
    factory: Factory, tmp_path: Path,
) -> None:
    _import(factory, EXAMPLE_JSON)
    before = _row_counts(factory)
    path = _write(tmp_path / "bad.json", BAD_FILE)

    with pytest.raises(ImportRejected) as caught:
        _import(factory, path)

    errors = caught.value.errors
    assert isinstance(caught.value, InvalidInput)
    assert len(errors) == len(BAD_FILE_ERRORS)
    for (row, field, message), error in zip(sorted(BAD_FILE_ERRORS), sorted(
            errors, key=lambda e: (e.row, e.field)), strict=True):
        assert (error.file, error.row, error.field) == (str(path), row, field)
        assert message in error.message
        assert str(error) == f"{path}:{row}: {field}: {error.message}"
    assert _row_counts(factory) == before
    with factory() as session:  # the valid partner update in the same file did not land
        assert session.scalars(select(Company.city).where(Company.name == PARTNER)).one() \
            == "Utrecht"


def test_prices_and_quantities_are_exact(factory: Factory, tmp_path: Path) -> None:
    # As a binary float, 1234567.8901 has more than 4 decimal places: the import must not
    # go through float at all.
    assert D(1234567.8901) != D("1234567.8901")
    path = _write(tmp_path / "exact.json", """{
      "vendors": [{"name": "V"}], "resources": [{"name": "R"}],
      "service_plans": [{"name": "P", "vendor": "V", "category": "C", "periods": [{}],
        "rates": [{"resource": "R", "recurring_cost": 1234567.8901, "recurring_price": "0.10",
                   "overuse_price": 0.10, "included_value": "922337203685477.5807",
          "rate_periods": [{"sku": "S", "recurring_cost": "1234567.8901",
                            "recurring_price": 0.1}]}]}]}""")
    _import(factory, path)
    with factory() as session:
        rate = session.scalars(select(ResourceRate)).one()
        assert rate.recurring_cost == D("1234567.8901")
        assert rate.recurring_price == D("0.10") == rate.overuse_price
        assert rate.included_value == D("922337203685477.5807")
        period = session.scalars(select(RatePeriod)).one()
        assert (period.recurring_cost, period.recurring_price) == (D("1234567.8901"), D("0.1"))


@pytest.mark.parametrize(("value", "message"), [
    ("12.50", None), (12, None), ("0.0001", None), ("-0", None), ("1.50000", None),
    ("12.34567", "has more than 4 decimal places"),
    ("-1", "must not be negative"),
    ("1e3", "must be a decimal number such as 12.50"),
    ("12,50", "must be a decimal number such as 12.50"),
    ("1 000", "must be a decimal number such as 12.50"),
    ("NaN", "must be a decimal number such as 12.50"),
    (True, "must be a decimal number, not true/false"),
    ("922337203685477.5808", "is too large to store"),
    ("", "must be a decimal number"),
])
def test_money_values(factory: Factory, tmp_path: Path, value: Any,
                      message: str | None) -> None:
    document = {"vendors": [{"name": "V"}], "resources": [{"name": "R"}],
                "service_plans": [{"name": "P", "vendor": "V", "category": "C", "periods": [{}],
                                   "rates": [{"resource": "R", "recurring_price": value}]}]}
    path = _write(tmp_path / "money.json", document)
    if message is None:
        _import(factory, path)
        return
    (error,) = _rejected(factory, path)
    assert error.startswith(f"{path}:.service_plans[0]: rates[0].recurring_price: {message}")


def test_json_syntax_sections_and_repeated_keys(factory: Factory, tmp_path: Path) -> None:
    broken = _write(tmp_path / "broken.json", '{"vendors": [\n  {"name": "V"},\n]}')
    (error,) = _rejected(factory, broken)
    assert error.startswith(f"{broken}:3: -: invalid JSON")
    odd = _write(tmp_path / "odd.json", '{"vendor": [], "vendors": [{"name": "A", "name": "B"},'
                 ' 7], "partners": {"name": "P"}, "usage": [{"amount": NaN}]}')
    errors = _rejected(factory, odd)
    assert f"{odd}:.vendor: -: unknown section 'vendor'" in errors[0]
    assert f"{odd}:.vendors[0]: name: is given twice" in errors
    assert f"{odd}:.vendors[1]: -: must be an object" in errors
    assert f"{odd}:.partners: -: must be a list of objects" in errors
    assert f"{odd}:.usage[0]: amount: is not a known field" in errors
    digits = "1" + "0" * 5000  # more digits than Python turns into an int
    huge = _write(tmp_path / "huge.json", '{"resources": [{"name": "R", "names": {"en": '
                  + digits + '}}], "usage": [{"quantity": ' + digits + "}]}")
    errors = _rejected(factory, huge)
    assert errors[0].startswith(f"{huge}:.resources[0]: names.en: must be text")
    assert any(e.startswith(f"{huge}:.usage[0]: quantity: is too large to store")
               for e in errors)


def test_a_partner_cannot_turn_its_api_on_by_import(factory: Factory, tmp_path: Path) -> None:
    path = _write(tmp_path / "p.json", {"partners": [
        {"name": "P", "country_code": "NL", "api_enabled": True}]})
    assert _rejected(factory, path) == [f"{path}:.partners[0]: api_enabled: is not a known field"]


# --- CSV -----------------------------------------------------------------------------------


def test_csv_customers_are_created_then_updated(factory: Factory, tmp_path: Path) -> None:
    _import(factory, EXAMPLE_JSON)
    summary = _import(factory, EXAMPLES / "customers.csv")
    assert summary.tables["customers"].created == 4
    with factory() as session:
        zones = {id_: code for id_, code in session.execute(select(TaxZone.id, TaxZone.code))}
        rows = {c.customer_number: c for c in session.scalars(select(Customer))}
    assert zones[rows["CUST-000003"].tax_zone_id] == "BE"
    assert zones[rows["CUST-000004"].tax_zone_id] == "NON-EU"
    assert rows["CUST-000004"].company_name == "Wonka & Co Ltd"
    assert rows["CUST-000005"].is_partner_itself is True
    assert rows["SBX-000001"].environment == "sandbox"

    # Semicolons (a spreadsheet's CSV), a BOM, a header in another order; an empty cell means
    # "keep the current value".
    update = tmp_path / "update.csv"
    update.write_text("\ufeffcustomer_number;partner;environment;company_name;country_code;city;"
                      "email\nCUST-000003;Northwind IT Services BV;production;Initech NV;be;"
                      "Gent;\n", encoding="utf-8")
    summary = _import(factory, update)
    assert (summary.tables["customers"].updated, summary.tables["customers"].created) == (1, 0)
    with factory() as session:
        initech = session.scalars(select(Customer).where(
            Customer.customer_number == "CUST-000003")).one()
    assert (initech.city, initech.email, initech.country_code) == (
        "Gent", "ap@initech.example", "BE")


@pytest.mark.parametrize(("header", "table", "expected"), [
    ("name,measure_unit", None, None),  # resources: the only table with measure_unit
    ("name", None, "the header fits vendors, resources: say which with --table"),
    ("name", "vendors", None),
    ("name,colour", "vendors", "colour: is not a column of vendors"),
    ("foo,bar", None, "the header fits no table"),
    ("name,name", "vendors", "name: is a column twice"),
    ("name,names,names.en", "resources", "names.en: cannot go with a column names"),
])
def test_csv_table_by_header_or_option(factory: Factory, tmp_path: Path, header: str,
                                       table: str | None, expected: str | None) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"{header}\n" + ",".join("x" for _ in header.split(",")) + "\n")
    if expected is None:
        _import(factory, path, table=table)
        return
    (error,) = _rejected(factory, path, table=table)
    assert error.startswith(f"{path}:1: ") and expected in error


def test_csv_rows_report_their_line_numbers(factory: Factory, tmp_path: Path) -> None:
    _import(factory, EXAMPLE_JSON)
    path = tmp_path / "c.csv"
    path.write_text("partner,environment,customer_number,company_name,country_code\n"
                    f"{PARTNER},production,A,\"Two\nlines\",NL\n\n"
                    f"{PARTNER},staging,B,B,NL\n{PARTNER},production,C,C\n")
    assert _rejected(factory, path) == [
        f"{path}:2: company_name: contains the control character U+000A; fields are one line "
        "of printable text (got 'Two\\nlines')",
        f"{path}:5: environment: must be 'production' or 'sandbox' (got 'staging')",
        f"{path}:6: -: has 4 cells but the header has 5 columns",
    ]


def test_csv_tables_are_the_cli_choices() -> None:
    assert tuple(t.value for t in CsvTable) == CSV_TABLES
    assert set(get_args(EnvironmentName)) == {e.value for e in Environment}


def test_ten_thousand_customers_import_in_seconds(factory: Factory, tmp_path: Path) -> None:
    _import(factory, EXAMPLE_JSON)
    path = tmp_path / "many.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["partner", "environment", "customer_number", "company_name",
                         "country_code", "vat_number", "email"])
        for n in range(10_000):
            country = ("NL", "DE", "US")[n % 3]
            vat_number = demo_vat_number(country, 10**8 + n) if n % 2 and n % 3 < 2 else ""
            writer.writerow([PARTNER, "production", f"M-{n:06d}", f"Customer {n}", country,
                             vat_number, f"c{n}@example.com"])
    started = time.perf_counter()
    summary = _import(factory, path)
    elapsed = time.perf_counter() - started
    assert summary.tables["customers"].created == 10_000
    assert elapsed < 30, f"10,000 customers took {elapsed:.1f} s"


# --- subscriptions and usage ---------------------------------------------------------------


def test_a_subscription_is_never_changed_by_a_second_import(
    factory: Factory, tmp_path: Path,
) -> None:
    _import(factory, EXAMPLE_JSON)
    same = _write(tmp_path / "same.json", {"subscriptions": [_subscription()]})
    assert _import(factory, same).tables["subscriptions"].created == 1
    assert _import(factory, same).tables["subscriptions"].unchanged == 1
    changed = _write(tmp_path / "changed.json", {"subscriptions": [_subscription(
        resources=[{"resource": "vCPU", "amount": 5}])]})
    (error,) = _rejected(factory, changed)
    assert error.startswith(f"{changed}:.subscriptions[0]: resources: differs from subscription")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Subscription)) == 3
        assert session.scalars(select(SubscriptionResource.amount)
                               .where(SubscriptionResource.amount == 4)).one() == D(4)


def test_a_plan_with_two_periods_needs_a_period_selector(factory: Factory, tmp_path: Path) -> None:
    _import(factory, EXAMPLE_JSON)
    plan = _write(tmp_path / "plan.json", {"service_plans": [{
        "name": "VMware Cloud Director vDC", "vendor": "VMware", "category": "Infrastructure",
        "periods": [{"period": 1, "period_type": "year", "billing_period": 1,
                     "billing_period_type": "year"}]}]})
    summary = _import(factory, plan)
    assert summary.tables["plan_periods"].created == 1
    assert summary.tables["service_plans"].unchanged == 1
    ambiguous = _write(tmp_path / "a.json", {"subscriptions": [_subscription()]})
    (error,) = _rejected(factory, ambiguous)
    assert "has 2 such periods" in error and ": billing_period_type: " in error
    missing = _write(tmp_path / "m.json", {"subscriptions": [_subscription(period=3)]})
    (error,) = _rejected(factory, missing)
    assert ": period: plan 'VMware Cloud Director vDC' has no such period" in error
    yearly = _write(tmp_path / "y.json", {"subscriptions": [_subscription(
        billing_period_type="year")]})
    assert _import(factory, yearly).tables["subscriptions"].created == 1


def test_usage_of_a_billed_month_cannot_change(factory: Factory, tmp_path: Path) -> None:
    _import(factory, EXAMPLE_JSON)
    with factory.begin() as session:
        partner_id = session.scalars(select(Company.id).where(Company.name == PARTNER)).one()
        bill_partner(session, partner_id, "production", "2026-01", dt.date(2026, 2, 1))
    usage = {"partner": PARTNER, "environment": "production", "customer_number": "CUST-000002",
             "subscription": "vDC Globex", "resource": "Storage", "period": "2026-01"}
    same = _write(tmp_path / "same.json", {"usage": [usage | {"quantity": "1250.5000"}]})
    assert _import(factory, same).tables["usage_records"].unchanged == 1
    changed = _write(tmp_path / "changed.json", {"usage": [usage | {"quantity": "1300"}]})
    (error,) = _rejected(factory, changed)
    assert error == (f"{changed}:.usage[0]: period: is billed already for {PARTNER} in "
                     "production: usage of a billed month cannot change")
    not_a_resource = _write(tmp_path / "r.json", {"usage": [
        usage | {"period": "2026-02", "resource": "Business Standard licence", "quantity": 1}]})
    (error,) = _rejected(factory, not_a_resource)
    assert ": resource: subscription 'vDC Globex' has no resource" in error
    twice = _write(tmp_path / "twice.json", {"usage": [
        usage | {"period": "2026-02", "quantity": 1},
        usage | {"period": "2026-02", "quantity": 2, "subscription_start_date": "2026-01-15"}]})
    (error,) = _rejected(factory, twice)
    assert error.startswith(f"{twice}:.usage[1]: period: duplicate of {twice}:.usage[0]")
    with factory() as session:
        assert session.scalars(select(UsageRecord.quantity)).one() == D("1250.5")


def test_rows_may_refer_to_rows_of_another_file(factory: Factory, tmp_path: Path) -> None:
    catalog = json.loads(EXAMPLE_JSON.read_text())
    subscriptions = catalog.pop("subscriptions")
    customers = catalog.pop("customers")
    catalog.pop("usage")
    first = _write(tmp_path / "catalog.json", catalog)
    second = _write(tmp_path / "customers.json", {"customers": customers,
                                                   "subscriptions": subscriptions})
    summary = _import(factory, second, first)
    assert summary.tables["subscriptions"].created == 2


# --- the command ---------------------------------------------------------------------------


def _cli(database: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BILLING_API_DATABASE_URL": f"sqlite:///{database}",
           "COLUMNS": "200"}
    command = [sys.executable, "-c", "from billing_api.cli import main; main()", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_the_command_exits_1_printing_file_row_field_message(tmp_path: Path) -> None:
    database = tmp_path / "cli.db"
    assert _cli(database, "db", "upgrade").returncode == 0
    engine = make_engine(f"sqlite:///{database}")
    try:
        dry = _cli(database, "import", "--dry-run", str(EXAMPLE_JSON))
        assert dry.returncode == 0 and "nothing was written" in dry.stderr
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Company)) == 0
        done = _cli(database, "import", str(EXAMPLE_JSON), str(EXAMPLES / "customers.csv"))
        assert done.returncode == 0, done.stderr
        assert "customers: 6 created, 0 updated, 0 unchanged" in done.stderr

        bad = _write(tmp_path / "bad.json", BAD_FILE)
        rejected = _cli(database, "import", str(bad))
        assert rejected.returncode == 1, rejected.stderr
        assert "Traceback" not in rejected.stderr
        *lines, last = rejected.stderr.strip().splitlines()
        assert last == f"import rejected: {len(BAD_FILE_ERRORS)} errors, nothing was imported"
        pattern = re.compile(rf"{re.escape(str(bad))}:(\.[a-z_]+\[\d+\]): ([\w.\[\]]+): (.+)")
        matches = [pattern.fullmatch(line) for line in lines]
        assert all(matches), lines
        assert {(m[1], m[2]) for m in matches if m} == {(r, f) for r, f, _ in BAD_FILE_ERRORS}
        with engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(Customer)) == 6
            assert conn.scalar(select(Company.city).where(Company.name == PARTNER)) == "Utrecht"
    finally:
        engine.dispose()


# --- junk in any field: an error naming it, never a crash ----------------------------------

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.decimals(allow_nan=False, places=6),
    st.text(max_size=250), st.sampled_from(["", " ", "NL", "nl", "RC", "2026-01-01", "1e3",
                                            "true", "sandbox", "x" * 201, "\x00", "\ud800"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=2),
)
CUSTOMER_FIELDS = sorted(CustomerRow.model_fields)


def _outcome(factory: Factory, path: Path, table: str | None = None) -> ImportRejected | None:
    """Import, then roll back whatever happened; any exception but a rejection propagates."""
    with factory() as session:
        session.begin()
        try:
            import_files(session, [path], table=table)
        except ImportRejected as exc:
            return exc
        finally:
            session.rollback()
    return None


def _encode(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def test_junk_in_one_customer_field_is_an_error_naming_that_field(
    factory: Factory, tmp_path: Path,
) -> None:
    with factory.begin() as session:
        f.partner(session, name=PARTNER)

    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(field=st.sampled_from(CUSTOMER_FIELDS), junk=JUNK)
    def check(field: str, junk: Any) -> None:
        row = _customer() | {field: _encode(junk)}
        path = _write(tmp_path / "junk.json", json.dumps({"customers": [row]}))
        rejected = _outcome(factory, path)
        if rejected is not None:
            assert rejected.errors
            for error in rejected.errors:
                assert (error.file, error.row, error.field) == (str(path), ".customers[0]", field)

    check()


def test_junk_in_one_csv_cell_is_an_error_naming_that_column(
    factory: Factory, tmp_path: Path,
) -> None:
    with factory.begin() as session:
        f.partner(session, name=PARTNER)

    @settings(max_examples=50, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(field=st.sampled_from(CUSTOMER_FIELDS), junk=st.text(max_size=250))
    def check(field: str, junk: str) -> None:
        row = _customer() | {field: junk}
        path = tmp_path / "junk.csv"
        with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as out:
            writer = csv.DictWriter(out, fieldnames=list(row))
            writer.writeheader()
            writer.writerow(row)
        rejected = _outcome(factory, path, table="customers")
        if rejected is not None:
            for error in rejected.errors:
                assert (error.row, error.field) == ("2", field), str(error)

    check()
