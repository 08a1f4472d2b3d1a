"""The monthly billing run against a real database: lines, invoices, VAT, idempotency."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.billing.models import BillingRun, Invoice, PriceLine
from billing_api.billing.run import bill_partner
from billing_api.customers.models import SubscriptionChange

from . import factories as f

D = Decimal
INVOICE_DAY = dt.date(2026, 11, 23)


def _world(session: Session):
    f.distributor(session)
    partner = f.partner(session)
    vendor = f.vendor(session, "Microsoft")
    _, period, rate = f.plan(session, vendor)
    customer = f.customer(session, partner)
    return partner, vendor, period, rate, customer


def _lines(session: Session, **where: object) -> list[PriceLine]:
    stmt = select(PriceLine).order_by(PriceLine.kind, PriceLine.id)
    for key, value in where.items():
        stmt = stmt.where(getattr(PriceLine, key) == value)
    return list(session.scalars(stmt))


def test_first_month_bills_purchase_fee_on_both_sides(session: Session) -> None:
    partner, _, period, rate, customer = _world(session)
    f.subscription(session, customer, period, rate, amount=D(3), start=dt.date(2026, 10, 1))
    summary = bill_partner(session, partner.id, "production", "2026-10", INVOICE_DAY)

    assert summary.lines == 2 and summary.invoices == 2
    purchase, sale = (
        _lines(session, charge_type="Purchase Fee")[::-1]
        if False
        else (_lines(session, kind="purchase")[0], _lines(session, kind="customer")[0])
    )
    assert purchase.extended_price == D("24.00")  # 3 × 8.00 × 1
    assert purchase.vat == D("5.04")  # domestic NL 21 %
    assert sale.extended_price == D("30.00")
    assert purchase.row_hash == sale.row_hash
    assert purchase.uid != sale.uid
    assert (purchase.start_date, purchase.end_date) == (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


def test_mid_month_start_is_prorated_by_days(session: Session) -> None:
    partner, _, period, rate, customer = _world(session)
    # 16 Sep → 30 Sep is 15 of 30 days.
    f.subscription(session, customer, period, rate, amount=D(2), start=dt.date(2026, 9, 16))
    bill_partner(session, partner.id, "production", "2026-09", INVOICE_DAY)
    (line,) = _lines(session, kind="purchase")
    assert line.duration == D("0.5")
    assert line.extended_price == D("8.00")  # 2 × 8.00 × 0.5


def test_rerun_of_a_billed_period_changes_nothing(session: Session) -> None:
    partner, _, period, rate, customer = _world(session)
    f.subscription(session, customer, period, rate)
    first = bill_partner(session, partner.id, "production", "2026-10", INVOICE_DAY)
    again = bill_partner(session, partner.id, "production", "2026-10", INVOICE_DAY)
    assert not first.already_billed and again.already_billed
    assert session.scalar(select(func.count()).select_from(PriceLine)) == 2
    assert session.scalar(select(func.count()).select_from(BillingRun)) == 1


def test_invoice_totals_equal_line_sums_and_numbers_are_gap_free(session: Session) -> None:
    partner, _, period, rate, customer = _world(session)
    other = f.customer(session, partner, country_code="DE", vat_number="DE136695976")
    f.subscription(session, customer, period, rate, amount=D(5))
    f.subscription(session, other, period, rate, amount=D(7))
    bill_partner(session, partner.id, "production", "2026-10", INVOICE_DAY)
    bill_partner(session, partner.id, "production", "2026-11", dt.date(2026, 12, 23))
    for invoice in session.scalars(select(Invoice)):
        lines = _lines(session, invoice_id=invoice.id)
        assert invoice.total_excluding_vat == sum(line.extended_price for line in lines)
        assert invoice.total_vat == sum(line.vat for line in lines)
        assert invoice.total_including_vat == invoice.total_excluding_vat + invoice.total_vat
    numbers = sorted(
        session.scalars(select(Invoice.invoice_number).where(Invoice.kind == "customer"))
    )
    assert numbers == [f"{partner.invoice_prefix}-{n:07d}" for n in range(1, 5)]


def test_downgrade_mid_month_bills_a_negative_correction_next_run(session: Session) -> None:
    partner, _, period, rate, customer = _world(session)
    _, sr = f.subscription(session, customer, period, rate, amount=D(10), start=dt.date(2026, 9, 1))
    bill_partner(session, partner.id, "production", "2026-09", INVOICE_DAY)
    # Down from 10 to 4 seats from 16 Oct: the rest of October (16 of 31 days) is credited.
    sr.amount = D(4)
    session.add(
        SubscriptionChange(
            subscription_id=sr.subscription_id,
            resource_rate_id=rate.id,
            effective_date=dt.date(2026, 10, 16),
            old_amount=D(10),
            new_amount=D(4),
        )
    )
    session.flush()
    bill_partner(session, partner.id, "production", "2026-10", INVOICE_DAY)
    cycle = _lines(session, kind="purchase", charge_type="Cycle Fee")
    assert [c.quantity for c in cycle] == [D(10)]  # October was billed at its first day's amount
    (correction,) = _lines(session, kind="purchase", charge_type="Correction")
    assert correction.quantity == D(-6)
    assert correction.duration == D("0.5161")  # 16/31
    assert correction.extended_price == D("-24.77")  # -6 × 8 × 0.5161 = -24.7728
    assert (correction.start_date, correction.end_date) == (
        dt.date(2026, 10, 16),
        dt.date(2026, 10, 31),
    )
    bill_partner(session, partner.id, "production", "2026-11", INVOICE_DAY)
    november = _lines(session, kind="purchase", charge_type="Cycle Fee")[-1]
    assert november.quantity == D(4)
    assert len(_lines(session, kind="purchase", charge_type="Correction")) == 1


def test_yearly_plan_bills_once_a_year_with_duration_twelve(session: Session) -> None:
    f.distributor(session)
    partner = f.partner(session)
    _, period, rate = f.plan(session, f.vendor(session), billing_period_type="year")
    customer = f.customer(session, partner)
    f.subscription(session, customer, period, rate, amount=D(2), start=dt.date(2025, 10, 10))
    for month in ("2026-09", "2026-10", "2026-11"):
        bill_partner(session, partner.id, "production", month, INVOICE_DAY)
    (line,) = _lines(session, kind="purchase")
    assert line.charge_type == "Cycle Fee" and line.billing_frequency == "Yearly"
    assert (line.start_date, line.end_date) == (dt.date(2026, 10, 10), dt.date(2027, 10, 9))
    assert line.duration == D(12)
    assert line.extended_price == D("192.00")


def test_vat_cases(session: Session) -> None:
    f.distributor(session)  # NL
    partner = f.partner(session)  # NL with VAT number
    vendor = f.vendor(session)
    _, period, rate = f.plan(session, vendor)
    _, tperiod, trate = f.plan(session, f.vendor(session, "Telco"), telecom=True)
    cases = {
        "domestic": (f.customer(session, partner, country_code="NL"), period, rate),
        "eu_b2b": (
            f.customer(session, partner, country_code="BE", vat_number="BE0123456749"),
            period,
            rate,
        ),
        "eu_b2c": (f.customer(session, partner, country_code="DE"), period, rate),
        "non_eu": (f.customer(session, partner, country_code="US"), period, rate),
        "telecom_resold": (f.customer(session, partner, country_code="NL"), tperiod, trate),
        "telecom_own_use": (
            f.customer(session, partner, country_code="NL", is_partner_itself=True),
            tperiod,
            trate,
        ),
    }
    for customer, p, r in cases.values():
        f.subscription(session, customer, p, r, amount=D(1))
    bill_partner(session, partner.id, "production", "2026-10", INVOICE_DAY)

    def line(kind: str, case: str) -> PriceLine:
        return _lines(session, kind=kind, customer_id=cases[case][0].id)[0]

    # Sales side: partner (NL) → customer.
    assert line("customer", "domestic").tax_percentage == D(21)
    assert line("customer", "eu_b2b").tax_zone_id == f.zone_id(session, "RC")
    assert line("customer", "eu_b2b").vat == D(0)
    assert line("customer", "eu_b2c").tax_percentage == D(19)  # destination rate (OSS)
    assert line("customer", "non_eu").tax_zone_id == f.zone_id(session, "NON-EU")
    assert line("customer", "telecom_resold").tax_percentage == D(21)  # end user pays VAT
    # Purchase side: distributor (NL) → partner (NL).
    assert line("purchase", "domestic").tax_percentage == D(21)
    assert line("purchase", "telecom_resold").tax_zone_id == f.zone_id(session, "RC")
    assert line("purchase", "telecom_resold").vat == D(0)
    assert line("purchase", "telecom_own_use").tax_percentage == D(21)
    assert line("purchase", "telecom_own_use").vat == D("1.68")
    # The partner does not invoice itself.
    assert _lines(session, kind="customer", customer_id=cases["telecom_own_use"][0].id) == []


def test_sandbox_run_sees_only_sandbox_subscriptions(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        partner, _, period, rate, customer = _world(session)
        sandbox_customer = f.customer(session, partner, environment="sandbox")
        f.subscription(session, customer, period, rate)
        f.subscription(session, sandbox_customer, period, rate, amount=D(2))
        partner_id = partner.id
    with factory() as session, session.begin():
        summary = bill_partner(session, partner_id, "sandbox", "2026-10", INVOICE_DAY)
    with factory() as session:
        assert summary.lines == 2
        assert {line.environment for line in _lines(session)} == {"sandbox"}
        numbers = set(session.scalars(select(Invoice.invoice_number)))
        assert all("-SBX-" in n for n in numbers)
