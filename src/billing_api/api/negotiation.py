"""Request parameters of the document endpoints: format, dates, subscription id.

Every refusal names the parameter and says what to send instead.
"""

from __future__ import annotations

import datetime as dt
import re

from starlette.requests import Request

from billing_api.api.errors import NotAcceptable
from billing_api.billing.rating import add_months
from billing_api.errors import InvalidInput
from billing_api.export.source import Scope

XML_TYPES = ("application/xml", "text/xml")
JSON_TYPE = "application/json"
DEFAULT_WINDOW_MONTHS = 3
EARLIEST_DEFAULT_END = dt.date(1, 1 + DEFAULT_WINDOW_MONTHS, 1)
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def choose_format(request: Request) -> str:
    """``xml`` or ``json``: ``format=`` wins, then ``Accept`` (no header or ``*/*``: XML)."""
    explicit = request.query_params.get("format")
    if explicit is not None:
        if explicit.lower() not in ("xml", "json"):
            raise InvalidInput(
                f"format={explicit!r} is not supported: use format=xml or format=json",
                field="format",
            )
        return explicit.lower()
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return "xml"
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        quality = _quality(params)
        if quality <= 0:
            continue
        if media in XML_TYPES or media in ("*/*", "application/*", "text/*"):
            candidate = "xml"  # wildcards get the default
        elif media == JSON_TYPE:
            candidate = "json"
        else:
            continue
        # Highest quality wins; on a tie the earlier media range does.
        key = (quality, -position, candidate)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        raise NotAcceptable(
            f"Accept: {accept!r} allows neither XML nor JSON: send Accept: application/xml "
            "or application/json (or format=xml|json)",
            field="Accept",
        )
    return best[2]


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def compact(day: dt.date) -> str:
    """``YYYYMMDD`` with a four-digit year (glibc's ``%Y`` writes year 1 as ``1``)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def parse_date(name: str, value: str) -> dt.date:
    match = _DATE.match(value.strip())
    if match is None:
        raise InvalidInput(
            f"{name}={value!r} is not a date: use YYYYMMDD (e.g. 20261123)", field=name
        )
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        raise InvalidInput(f"{name}={value!r} is not a real calendar date", field=name) from None


def date_range(request: Request, today: dt.date) -> tuple[dt.date, dt.date]:
    """The inclusive invoice-date window; defaults to the three months up to today."""
    start_text = request.query_params.get("startDate")
    end_text = request.query_params.get("endDate")
    end = parse_date("endDate", end_text) if end_text else today
    if start_text:
        start = parse_date("startDate", start_text)
    elif end < EARLIEST_DEFAULT_END:  # three months earlier would be year 0: a ValueError
        start = dt.date.min
    else:
        start = add_months(end, -DEFAULT_WINDOW_MONTHS)
    if end < start:
        raise InvalidInput(
            f"endDate {compact(end)} is before startDate {compact(start)}: "
            "swap them or widen the range",
            field="endDate",
        )
    return start, end


def scope_for(partner_id: int, environment: str, window: tuple[dt.date, dt.date]) -> Scope:
    return Scope(partner_id, environment, window[0], window[1])


def subscription_id(request: Request) -> int:
    value = request.query_params.get("subscriptionId")
    if value is None or value.strip() == "":
        raise InvalidInput(
            "subscriptionId is required: the id of one of your subscriptions",
            field="subscriptionId",
        )
    # isdigit() alone admits '²', which int() refuses (a 500): ASCII digits only.
    if not (value.strip().isascii() and value.strip().isdigit()) or len(value.strip()) > 18:
        raise InvalidInput(
            f"subscriptionId={value!r} is not a subscription id: use a whole number",
            field="subscriptionId",
        )
    return int(value.strip())
