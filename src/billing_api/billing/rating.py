"""The line formula and the calendar arithmetic of billing cycles. Pure functions, no I/O.

``ExtendedPrice = (Quantity × UnitPrice − Discount) × Duration``, rounded once to cents,
half away from zero; VAT per line is rounded the same way.
"""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
DURATION_QUANTUM = Decimal("0.0001")
ZERO = Decimal(0)
HUNDRED = Decimal(100)


def round_cents(amount: Decimal) -> Decimal:
    """Round to cents, half away from zero (−12.345 → −12.35)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def extended_price(
    quantity: Decimal, unit_price: Decimal, discount: Decimal, duration: Decimal
) -> Decimal:
    return round_cents((quantity * unit_price - discount) * duration)


def vat_amount(extended: Decimal, percentage: Decimal) -> Decimal:
    return round_cents(extended * percentage / HUNDRED)


def extended_units(quantity: int, unit_price: int, discount: int, duration: int) -> int:
    """``extended_price`` in integer units of 1/10,000 (``db.to_units``), exactly: the run's
    per-line path, as Decimal arithmetic costs several times more. ``discount`` is in
    1/10^8 (a quantity times a per-unit discount, both in units)."""
    # (quantity × price − discount) × duration is in 1/10^12; a cent is 10^10 of those.
    cents = round_half_away((quantity * unit_price - discount) * duration, 10**10)
    return cents * 100


def vat_units(extended: int, percentage: int) -> int:
    """``vat_amount`` in integer units: ``extended`` and ``percentage`` in 1/10,000."""
    # extended × percentage / 100 is in 1/10^10; a cent is 10^8 of those.
    return round_half_away(extended * percentage, 10**8) * 100


def round_half_away(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded to an integer, half away from zero, like
    ``round_cents``."""
    whole, rest = divmod(abs(numerator), denominator)
    if 2 * rest >= denominator:
        whole += 1
    return whole if numerator >= 0 else -whole


def parse_period(period: str) -> tuple[dt.date, dt.date]:
    """``"2026-10"`` → (first day, last day). Raises ``ValueError`` naming the expected form."""
    try:
        year_text, month_text = period.split("-")
        if len(year_text) != 4 or len(month_text) != 2:
            raise ValueError
        year, month = int(year_text), int(month_text)
        first = dt.date(year, month, 1)
    except ValueError:
        raise ValueError(f"period {period!r} is not of the form YYYY-MM (e.g. 2026-10)") from None
    return first, month_end(first)


def month_end(day: dt.date) -> dt.date:
    return dt.date(day.year, day.month, days_in_month(day.year, day.month))


_MONTH_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def days_in_month(year: int, month: int) -> int:
    """``calendar.monthrange(year, month)[1]`` without the weekday it also works out: the run
    asks this several times per charge."""
    if month == 2 and calendar.isleap(year):
        return 29
    return _MONTH_DAYS[month]


def add_months(day: dt.date, months: int) -> dt.date:
    """Same day ``months`` later, clamped to the month's last day (31 Jan + 1 → 28/29 Feb)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    last = days_in_month(year, month + 1)
    return dt.date(year, month + 1, min(day.day, last))


def first_of_next_month(day: dt.date) -> dt.date:
    return month_end(day) + dt.timedelta(days=1)


def cycle_containing(
    start_date: dt.date, cycle_months: int, day: dt.date
) -> tuple[dt.date, dt.date]:
    """The billing cycle (first day, last day) of a subscription that contains ``day``.

    Monthly subscriptions follow calendar months, the first one running from the start date to
    the month's end; longer cycles run from the start date's anniversaries.
    """
    if cycle_months == 1:
        first = max(start_date, dt.date(day.year, day.month, 1))
        return first, month_end(day)
    k = ((day.year - start_date.year) * 12 + day.month - start_date.month) // cycle_months
    k = max(k, 0)
    while add_months(start_date, k * cycle_months) > day:
        k -= 1
    while add_months(start_date, (k + 1) * cycle_months) <= day:
        k += 1
    begin = add_months(start_date, k * cycle_months)
    return begin, add_months(start_date, (k + 1) * cycle_months) - dt.timedelta(days=1)


def cycle_starts_in(
    start_date: dt.date, cycle_months: int, first: dt.date, last: dt.date
) -> list[dt.date]:
    """Every cycle start that falls between ``first`` and ``last`` (inclusive)."""
    starts: list[dt.date] = []
    if cycle_months == 1:
        day = start_date if start_date >= first else dt.date(first.year, first.month, 1)
        if day < first:
            day = first_of_next_month(day)
        while day <= last:
            if day >= start_date:
                starts.append(day)
            day = first_of_next_month(day)
        return starts
    k = 0
    while (day := add_months(start_date, k * cycle_months)) <= last:
        if day >= first:
            starts.append(day)
        k += 1
    return starts


def cycle_duration(
    cycle_months: int, cycle_first: dt.date, cycle_last: dt.date, from_day: dt.date
) -> Decimal:
    """Months of the cycle covered from ``from_day`` to its end, to 4 decimals.

    A whole cycle is exactly ``cycle_months``; a part is pro rata by days. For monthly cycles
    the part is measured against the calendar month, so a first month that starts on the 16th
    of a 30-day month is 0.5.
    """
    if cycle_months == 1:
        month_days = days_in_month(cycle_last.year, cycle_last.month)
        covered = (cycle_last - from_day).days + 1
        if covered == month_days:
            return Decimal(1)
        return (Decimal(covered) / Decimal(month_days)).quantize(DURATION_QUANTUM, ROUND_HALF_UP)
    total = (cycle_last - cycle_first).days + 1
    covered = (cycle_last - from_day).days + 1
    if covered == total:
        return Decimal(cycle_months)
    return (Decimal(cycle_months) * covered / total).quantize(DURATION_QUANTUM, ROUND_HALF_UP)


def billing_frequency(cycle_months: int) -> str:
    if cycle_months == 1:
        return "Monthly"
    if cycle_months == 12:
        return "Yearly"
    return f"Every {cycle_months} months"
