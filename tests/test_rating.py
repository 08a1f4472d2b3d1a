"""The line formula and cycle arithmetic on hand-computed cases."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing_api.billing.rating import (
    add_months,
    cycle_containing,
    cycle_duration,
    cycle_starts_in,
    extended_price,
    extended_units,
    parse_period,
    round_cents,
    vat_amount,
    vat_units,
)
from billing_api.billing.rowhash import line_uid, row_hash
from billing_api.db import to_units

D = Decimal


@pytest.mark.parametrize(
    ("quantity", "unit", "discount", "duration", "expected"),
    [
        ("3", "8.00", "0", "1", "24.00"),
        ("2", "12.345", "0", "1", "24.69"),
        ("1", "0.005", "0", "1", "0.01"),  # half rounds away from zero
        ("-1", "0.005", "0", "1", "-0.01"),
        ("10", "9.95", "5.00", "12", "1134.00"),  # (99.50 - 5.00) × 12
        ("-6", "8", "0", "0.5161", "-24.77"),
        ("1", "-12.345", "0", "1", "-12.35"),
    ],
)
def test_extended_price(
    quantity: str, unit: str, discount: str, duration: str, expected: str
) -> None:
    assert extended_price(D(quantity), D(unit), D(discount), D(duration)) == D(expected)


def test_rounding_is_half_away_from_zero() -> None:
    assert round_cents(D("-12.345")) == D("-12.35")
    assert round_cents(D("12.345")) == D("12.35")
    assert vat_amount(D("10.05"), D("21")) == D("2.11")  # 2.1105


def test_parse_period_names_the_expected_form() -> None:
    assert parse_period("2024-02") == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))
    for bad in ("2024-13", "24-02", "2024/02", "2024-2", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            parse_period(bad)


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(dt.date(2026, 1, 31), 1) == dt.date(2026, 2, 28)
    assert add_months(dt.date(2024, 2, 29), 12) == dt.date(2025, 2, 28)
    assert add_months(dt.date(2026, 11, 15), -11) == dt.date(2025, 12, 15)


def test_monthly_cycles_follow_calendar_months() -> None:
    start = dt.date(2026, 9, 16)
    assert cycle_starts_in(start, 1, dt.date(2026, 9, 1), dt.date(2026, 9, 30)) == [start]
    assert cycle_starts_in(start, 1, dt.date(2026, 10, 1), dt.date(2026, 10, 31)) == [
        dt.date(2026, 10, 1)
    ]
    assert cycle_starts_in(start, 1, dt.date(2026, 8, 1), dt.date(2026, 8, 31)) == []
    assert cycle_containing(start, 1, dt.date(2026, 9, 20)) == (start, dt.date(2026, 9, 30))
    assert cycle_duration(1, start, dt.date(2026, 9, 30), start) == D("0.5")


def test_yearly_cycles_follow_anniversaries() -> None:
    start = dt.date(2025, 10, 10)
    assert cycle_starts_in(start, 12, dt.date(2026, 10, 1), dt.date(2026, 10, 31)) == [
        dt.date(2026, 10, 10)
    ]
    assert cycle_starts_in(start, 12, dt.date(2026, 11, 1), dt.date(2026, 11, 30)) == []
    first, last = cycle_containing(start, 12, dt.date(2026, 3, 1))
    assert (first, last) == (dt.date(2025, 10, 10), dt.date(2026, 10, 9))
    # From 1 Apr 2026 to 9 Oct 2026 is 192 of 365 days: 12 × 192/365 = 6.3123 months.
    assert cycle_duration(12, first, last, dt.date(2026, 4, 1)) == D("6.3123")
    assert cycle_duration(12, first, last, first) == D(12)


def test_row_hash_depends_on_every_part_of_the_identity() -> None:
    base = dict(
        environment="production",
        subscription_id=1,
        resource_rate_id=2,
        charge_type="Cycle Fee",
        start=dt.date(2026, 10, 1),
        end=dt.date(2026, 10, 31),
        rate_period_id=None,
        source="cycle",
    )
    reference = row_hash(**base)  # type: ignore[arg-type]
    assert reference == row_hash(**base)  # type: ignore[arg-type]
    variants = [
        ("environment", "sandbox"),
        ("subscription_id", 9),
        ("resource_rate_id", 9),
        ("charge_type", "Correction"),
        ("start", dt.date(2026, 10, 2)),
        ("end", dt.date(2026, 10, 30)),
        ("rate_period_id", 4),
        ("source", "change:1"),
    ]
    hashes = {row_hash(**(base | {k: v})) for k, v in variants}  # type: ignore[arg-type]
    assert len(hashes) == len(variants) and reference not in hashes


# The run prices lines in integer units (``extended_units``, ``vat_units``) for speed; the
# Decimal functions above state the rule. They must agree on every amount the run can meet.
four_places = st.decimals(min_value=-10**6, max_value=10**6, places=4)
eight_places = st.decimals(min_value=-10**6, max_value=10**6, places=8)


@given(quantity=four_places, unit=four_places, discount=eight_places,
       duration=st.decimals(min_value=0, max_value=100, places=4))
@settings(max_examples=2000)
def test_integer_line_formula_equals_the_decimal_rule(
    quantity: Decimal, unit: Decimal, discount: Decimal, duration: Decimal
) -> None:
    expected = extended_price(quantity, unit, discount, duration)
    got = extended_units(to_units(quantity), to_units(unit), int(discount.scaleb(8)),
                         to_units(duration))
    assert got == to_units(expected)


@given(extended=four_places.map(round_cents),
       percentage=st.decimals(min_value=0, max_value=100, places=4))
@settings(max_examples=2000)
def test_integer_vat_equals_the_decimal_rule(extended: Decimal, percentage: Decimal) -> None:
    assert vat_units(to_units(extended), to_units(percentage)) == to_units(
        vat_amount(extended, percentage))


@given(st.binary(min_size=1, max_size=40).map(bytes.hex))
def test_line_uid_is_a_version_4_uuid_of_the_hash(hash_hex: str) -> None:
    # line_uid spells out uuid.UUID's formatting for speed; the library is the reference.
    import hashlib
    import uuid

    digest = hashlib.sha256(f"purchase:{hash_hex}".encode()).digest()
    assert line_uid("purchase", hash_hex) == str(uuid.UUID(bytes=digest[:16], version=4))
