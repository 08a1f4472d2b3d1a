"""VAT numbers: checked by country format and check digits, refused on import with the row and
the reason, reverse-charged only when valid and of another EU country than the seller's, and
listed by ``billing-api customers check-vat`` when bad ones are stored already (issue 16, 1)."""

from __future__ import annotations

import datetime as dt
import os
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access.models import Company
from billing_api.billing.models import PriceLine
from billing_api.billing.run import bill_partner
from billing_api.billing.vat import EU_COUNTRIES, REVERSE_CHARGE_ZONE, Sale, zone_code_for
from billing_api.billing.vat_numbers import (
    EU_FORMATS,
    EU_VAT_COUNTRIES,
    check_vat_number,
    is_valid_vat_number,
    vat_prefix,
)
from billing_api.catalog.models import PlanPeriod, ResourceRate
from billing_api.customers.models import Customer
from billing_api.customers.vat_check import stored_vat_numbers
from billing_api.demo.generator import build_demo
from billing_api.importer import ImportRejected, import_files

from . import factories as f

D = Decimal
EXAMPLE_JSON = Path(__file__).resolve().parent.parent / "docs" / "examples" / "import-example.json"
PARTNER = "Northwind IT Services BV"  # the example's partner, in NL
# The issue's cases: on a German customer of a Dutch partner, each of these was reverse-charged.
BAD_ON_A_GERMAN_CUSTOMER = ["NOT-A-VAT!!", "n/a", "-", "NL004495445B01"]
VALID_DE = "DE136695976"
VALID_NL = "NL004495445B01"
PERIOD, INVOICE_DAY = "2026-10", dt.date(2026, 11, 23)


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"BILLING_API_DATABASE_URL": database_url, "NO_COLOR": "1",
                        "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "billing_api", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


# --- the import ----------------------------------------------------------------------------


def test_import_refuses_the_issues_placeholders_and_a_foreign_number_with_row_and_reason(
    factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    with factory.begin() as session:
        import_files(session, [EXAMPLE_JSON])
    path = tmp_path / "customers.csv"
    lines = ["partner,environment,customer_number,company_name,country_code,vat_number"]
    lines += [f'{PARTNER},production,DE-{n},Kunde {n} GmbH,DE,"{number}"'
              for n, number in enumerate(BAD_ON_A_GERMAN_CUSTOMER, start=1)]
    lines.append(f"{PARTNER},production,DE-5,Kunde 5 GmbH,DE,{VALID_DE}")
    path.write_text("\n".join(lines) + "\n")
    with factory() as session:
        before = session.scalar(select(func.count()).select_from(Customer))
        with pytest.raises(ImportRejected) as caught:
            import_files(session, [path])
        session.rollback()
    errors = caught.value.errors
    # One error per bad row (CSV line = data row + 1), on the vat_number field; the valid row
    # is not mentioned.
    assert [(e.file, e.row, e.field) for e in errors] == [
        (str(path), str(line), "vat_number") for line in (2, 3, 4, 5)]
    not_de = "is not a valid DE VAT number: it has the wrong format (expected DE + 9 digits)"
    assert errors[0].message.startswith(not_de) and "(got 'NOT-A-VAT!!')" in errors[0].message
    assert errors[1].message.startswith(not_de) and "(got 'n/a')" in errors[1].message
    assert errors[2].message.startswith("is not a VAT number (no letters or digits)")
    assert errors[3].message.startswith(
        "is a valid NL VAT number, but country_code is DE: give the DE number, correct "
        "country_code, or leave it empty if there is none (VAT is then charged)")
    assert all("leave it empty" in e.message for e in errors)
    with factory() as session:  # all or nothing: not even the valid row was written
        assert session.scalar(select(func.count()).select_from(Customer)) == before


def test_import_stores_the_compact_form_with_the_country_prefix(
    factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    path = tmp_path / "customers.csv"
    path.write_text(
        "partner,environment,customer_number,company_name,country_code,vat_number\n"
        f"{PARTNER},production,G-1,Alpha AE,GR,094259216\n"  # no prefix: Greece's is EL
        f"{PARTNER},production,G-2,Beta AE,GR,GR 094 259 216\n"  # ISO code as prefix
        f"{PARTNER},production,D-1,Gamma GmbH,de,de 136.695.976\n"
        f"{PARTNER},production,B-1,Delta NV,BE,BE 697.449.992\n"  # old 9-digit form
        f"{PARTNER},production,U-1,Epsilon Inc,US,12-3456789\n"  # no format known: kept
        f"{PARTNER},production,N-1,Zeta BV,NL,\n")
    with factory.begin() as session:
        import_files(session, [EXAMPLE_JSON, path])
    with factory() as session:
        stored = {number: vat for number, vat in session.execute(
            select(Customer.customer_number, Customer.vat_number))}
        partner_number = session.scalars(
            select(Company.vat_number).where(Company.name == PARTNER)).one()
    assert stored["G-1"] == stored["G-2"] == "EL094259216"
    assert (stored["D-1"], stored["B-1"], stored["U-1"]) == (VALID_DE, "BE0697449992",
                                                            "12-3456789")
    assert stored["N-1"] == ""
    assert partner_number == "NL987654329B01"  # companies' numbers are checked the same way


def test_import_refuses_a_partners_number_of_another_country(
    factory: sessionmaker[Session], tmp_path: Path,
) -> None:
    path = tmp_path / "partners.csv"
    path.write_text(f"name,country_code,vat_number\nSüd GmbH,DE,{VALID_NL}\n")
    with factory() as session, pytest.raises(ImportRejected) as caught:
        import_files(session, [path])
    (error,) = caught.value.errors
    assert (error.row, error.field) == ("2", "vat_number")
    assert error.message.startswith("is a valid NL VAT number, but country_code is DE")


# --- the run -------------------------------------------------------------------------------


def _world(session: Session, *, partner_country: str = "NL", partner_vat: str = VALID_NL,
           ) -> tuple[Company, PlanPeriod, ResourceRate]:
    """Distributor in NL, one partner, a plan sold at 55.00 a month (cost 40.00)."""
    f.distributor(session, vat_number="NL123456782B01")
    partner = f.partner(session, country_code=partner_country, vat_number=partner_vat)
    _, period, rate = f.plan(session, f.vendor(session), recurring_cost=D("40.00"),
                             recurring_price=D("55.00"))
    return partner, period, rate


def _customer_line(session: Session, customer: Customer) -> PriceLine:
    return session.scalars(select(PriceLine).where(
        PriceLine.kind == "customer", PriceLine.customer_id == customer.id)).one()


def _purchase_lines(session: Session) -> list[PriceLine]:
    return list(session.scalars(select(PriceLine).where(PriceLine.kind == "purchase")))


def test_a_valid_german_number_with_a_dutch_seller_is_reverse_charged(session: Session) -> None:
    partner, period, rate = _world(session)
    valid = f.customer(session, partner, country_code="DE", vat_number=VALID_DE)
    blank = f.customer(session, partner, country_code="DE")
    for customer in (valid, blank):
        f.subscription(session, customer, period, rate)
    summary = bill_partner(session, partner.id, "production", PERIOD, INVOICE_DAY)
    line = _customer_line(session, valid)
    assert (line.extended_price, line.vat) == (D("55.00"), D("0.00"))
    assert line.tax_zone_id == f.zone_id(session, REVERSE_CHARGE_ZONE)
    line = _customer_line(session, blank)
    assert (line.extended_price, line.vat, line.tax_percentage) == (D("55.00"), D("10.45"), 19)
    assert summary.ignored_vat_numbers == 0


def test_each_invoice_uses_its_own_sellers_country(session: Session) -> None:
    # A German partner: its purchase invoice comes from the Dutch distributor (cross-border,
    # valid DE number: reverse-charged); its invoice to a German customer with a valid German
    # number is domestic (German VAT, not reverse-charged).
    partner, period, rate = _world(session, partner_country="DE", partner_vat=VALID_DE)
    customer = f.customer(session, partner, country_code="DE", vat_number=VALID_DE)
    f.subscription(session, customer, period, rate)
    bill_partner(session, partner.id, "production", PERIOD, INVOICE_DAY)
    (purchase,) = _purchase_lines(session)
    assert (purchase.extended_price, purchase.vat) == (D("40.00"), D("0.00"))
    assert purchase.tax_zone_id == f.zone_id(session, REVERSE_CHARGE_ZONE)
    line = _customer_line(session, customer)
    assert (line.vat, line.tax_percentage) == (D("10.45"), 19)
    assert line.tax_zone_id == f.zone_id(session, "DE")


def test_a_partners_bad_number_is_not_reverse_charged_on_its_purchase_invoice(
    session: Session,
) -> None:
    partner, period, rate = _world(session, partner_country="DE", partner_vat="n/a")
    f.subscription(session, f.customer(session, partner, country_code="DE"), period, rate)
    summary = bill_partner(session, partner.id, "production", PERIOD, INVOICE_DAY)
    (purchase,) = _purchase_lines(session)
    assert (purchase.vat, purchase.tax_percentage) == (D("7.60"), 19)  # 19 % of 40.00
    assert summary.ignored_vat_numbers == 1


def test_bad_numbers_already_stored_are_billed_with_vat_warned_and_listed(
    session: Session, database_url: str,
) -> None:
    partner, period, rate = _world(session)
    bad = [f.customer(session, partner, country_code="DE", vat_number=number)
           for number in BAD_ON_A_GERMAN_CUSTOMER]
    good = f.customer(session, partner, country_code="DE", vat_number=VALID_DE)
    for customer in (*bad, good):
        f.subscription(session, customer, period, rate)
    names = {c.id: (c.customer_number, c.company_name) for c in (*bad, good)}
    partner_name = partner.name
    session.commit()

    billed = _cli(database_url, "bill", "--period", PERIOD, "--invoice-date",
                  INVOICE_DAY.isoformat(), "--environment", "production")
    assert billed.returncode == 0, billed.stderr
    assert (f"warning: {partner_name} production: 4 VAT number(s) fail the check and were "
            "billed as no number") in " ".join(billed.stderr.split())
    for customer in bad:
        line = _customer_line(session, customer)
        assert (line.extended_price, line.vat) == (D("55.00"), D("10.45"))  # was 0.00
    assert _customer_line(session, good).vat == D("0.00")

    listed = _cli(database_url, "customers", "check-vat")
    assert listed.returncode == 1, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [row[:6] for row in rows] == [
        [partner_name, "production", *names[c.id], "DE", c.vat_number] for c in bad]
    assert all(len(row) == 7 and row[6].startswith("is ") for row in rows)
    assert "4 of 7 stored VAT numbers fail the check" in listed.stderr  # 5 + partner + distr.
    only = _cli(database_url, "customers", "check-vat", "--company", partner_name)
    assert (only.returncode, only.stdout) == (1, listed.stdout)
    unknown = _cli(database_url, "customers", "check-vat", "--company", "No Such BV")
    assert (unknown.returncode, unknown.stdout) == (2, "")


def test_check_vat_exits_0_when_every_number_passes(session: Session, database_url: str) -> None:
    partner, _, _ = _world(session)
    f.customer(session, partner, country_code="DE", vat_number=VALID_DE)
    f.customer(session, partner, country_code="DE")
    session.commit()
    result = _cli(database_url, "customers", "check-vat")
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert "0 of 3 stored VAT numbers fail the check" in result.stderr


def test_the_demos_vat_numbers_all_pass(factory: sessionmaker[Session]) -> None:
    build_demo(factory, customers=24, months=1, bill=False)
    with factory() as session:
        numbers = list(stored_vat_numbers(session))
    assert len(numbers) > 20  # the companies' and most customers' (consumers have none)
    assert [(n.customer_number, n.vat_number, n.problem) for n in numbers if n.problem] == []


# --- the check itself ----------------------------------------------------------------------

# The national part of each EU country's numbers, as a template: "9" is any digit, "A" any
# letter, anything else itself.
_TEMPLATES = {
    "AT": "U99999999", "BE": "0999999999", "BG": "999999999", "CY": "09999999A",
    "CZ": "99999999", "DE": "199999999", "DK": "19999999", "EE": "109999999",
    "EL": "999999999", "ES": "A9999999A", "FI": "99999999", "FR": "99999999999",
    "HR": "99999999999", "HU": "19999999", "IE": "1999999A", "IT": "99999999999",
    "LT": "999999999", "LU": "19999999", "LV": "49999999999", "MT": "19999999",
    "NL": "999999999B01", "PL": "1999999999", "PT": "199999999", "RO": "19999999",
    "SE": "999999999901", "SI": "19999999", "SK": "1999999999",
}
_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"


def _fill(template: str, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("0123456789") if c == "9" else rng.choice(_LETTERS) if c == "A"
                   else c for c in template)


def _valid_number(prefix: str, seed: int) -> str:
    """The first number of the template drawn from seed, seed + 1, … that passes."""
    for step in range(20_000):
        number = prefix + _fill(_TEMPLATES[prefix], seed + step)
        if is_valid_vat_number(number, "GR" if prefix == "EL" else prefix):
            return number
    raise AssertionError(f"no valid {prefix} number found from {seed}")


def test_the_eu_lists_agree() -> None:
    assert EU_VAT_COUNTRIES == EU_COUNTRIES
    assert set(_TEMPLATES) == set(EU_FORMATS) == {vat_prefix(c) for c in EU_COUNTRIES}


@settings(max_examples=150, deadline=None)
@given(country=st.sampled_from(sorted(EU_COUNTRIES)), seed=st.integers(10**11, 10**12))
def test_every_valid_number_of_each_eu_country_passes_and_decides_reverse_charge(
    country: str, seed: int,
) -> None:
    prefix = vat_prefix(country)
    number = _valid_number(prefix, seed)
    checked = check_vat_number(number, country)
    assert checked.valid and checked.number.startswith(prefix)
    # The stored form is a fixed point, and typing variants and the bare national part
    # come to the same stored form.
    assert check_vat_number(checked.number, country).number == checked.number
    national = checked.number[len(prefix):]
    spaced = f" {prefix.lower()} {national[:3]}.{national[3:]} "
    for variant in (national, spaced, f"{country}{national}"):
        assert check_vat_number(variant, country).number == checked.number, variant
    # Valid for its own country only, and reverse-charged only across a border.
    other = sorted(EU_COUNTRIES - {country})[seed % (len(EU_COUNTRIES) - 1)]
    assert not is_valid_vat_number(checked.number, other)
    assert "but country_code is " + other in check_vat_number(checked.number, other).problem
    assert zone_code_for(Sale(other, country, checked.number, False, False)) == "RC"
    assert zone_code_for(Sale(country, country, checked.number, False, False)) == country
    assert zone_code_for(Sale(other, country, checked.number + "!", False, False)) == country
    assert zone_code_for(Sale(other, other, checked.number, False, False)) == other


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), country=st.sampled_from(sorted(EU_COUNTRIES | {"US", "GB",
                                                                           "CH", "NO"})))
def test_any_text_gets_a_verdict_never_an_exception(text: str, country: str) -> None:
    checked = check_vat_number(text, country)
    if not text.strip():
        assert checked == check_vat_number("", country) and checked.valid
    elif checked.valid:
        assert check_vat_number(checked.number, country).number == checked.number
    else:
        assert checked.problem and "leave it empty" in checked.problem
        assert zone_code_for(Sale("NL", country, text, False, False)) != "RC"
