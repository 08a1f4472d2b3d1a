"""Request parameters of the document endpoints: format, dates, subscription id; and the
one content negotiation (``negotiate``) that picks the format of documents and problems alike.

Every refusal names the parameter and says what to send instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from starlette.requests import Request

from billing_api.api.errors import NotAcceptable
from billing_api.billing.rating import add_months
from billing_api.errors import InvalidInput
from billing_api.export.source import Scope

# The media types each format answers to. Problems also answer to their own types (RFC 9457)
# when a client names them; documents do not (Accept: application/problem+json alone is 406).
DOCUMENT_TYPES: Mapping[str, str] = {
    "application/xml": "xml", "text/xml": "xml", "application/json": "json",
}
PROBLEM_TYPES: Mapping[str, str] = {
    "application/problem+xml": "xml", "application/problem+json": "json",
}
FORMATS = ("xml", "json")  # in order of preference: XML is the default
DEFAULT_WINDOW_MONTHS = 3
EARLIEST_DEFAULT_END = dt.date(1, 1 + DEFAULT_WINDOW_MONTHS, 1)
# A real calendar date, YYYYMMDD or YYYY-MM-DD (either dash may be left out), years 0001-9999,
# 29 February in leap years only. The OpenAPI description publishes this very pattern, so it
# refuses exactly what the server refuses; ASCII digits only (Python's \d takes any script's).
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
DATE_PATTERN = (
    f"^(?:{_YEAR}-?(?:(?:0[13578]|1[02])-?(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)-?(?:0[1-9]|[12][0-9]|30)|02-?(?:0[1-9]|1[0-9]|2[0-8]))"
    f"|{_LEAP_YEAR}-?02-?29)$"
)
_DATE = re.compile(DATE_PATTERN)
_DATE_SHAPE = re.compile("^[0-9]{4}-?[0-9]{2}-?[0-9]{2}$")
SUBSCRIPTION_ID_PATTERN = "^[0-9]{1,18}$"
_SUBSCRIPTION_ID = re.compile(SUBSCRIPTION_ID_PATTERN)


@dataclass(frozen=True)
class _Range:
    type: str
    subtype: str
    quality: float
    position: int

    def specificity(self, media_type: str) -> int:
        """How closely this range matches ``media_type``: 2 exactly, 1 ``type/*``,
        0 ``*/*``, -1 not at all."""
        kind, _, sub = media_type.partition("/")
        if self.type == "*":
            return 0
        if self.type != kind:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else -1


def _ranges(accept: str) -> list[_Range]:
    ranges = []
    for position, item in enumerate(accept.split(",")):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        if media == "*":  # old Java clients send "*; q=.2" for "*/*"
            media = "*/*"
        kind, slash, sub = media.partition("/")
        if slash and kind and sub and (kind != "*" or sub == "*"):
            ranges.append(_Range(kind, sub, _quality(params), position))
    return ranges


def _quality(params: str) -> float:
    """The ``q`` parameter; a malformed or out-of-range one makes the range unacceptable."""
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0  # NaN fails both comparisons
    return 1.0


def negotiate(accept: str, named: Mapping[str, str] | None = None) -> str | None:
    """``xml`` or ``json`` for an ``Accept`` value, or None when it allows neither.

    RFC 9110 §12.5.1: each of ``DOCUMENT_TYPES`` gets the quality of the most specific range
    that matches it (``*/*, application/xml;q=0`` refuses XML); a format gets the best of its
    types. ``named`` types count too, but only where a range names them exactly (so problems
    follow the wildcards exactly as documents do). The higher quality wins; on a tie the
    format whose range comes first in the header, and on a tie within one range (a wildcard)
    XML, the default. No header at all: XML.
    """
    if not accept.strip():
        return FORMATS[0]
    ranges = _ranges(accept)
    candidates = [(media_type, fmt, 0) for media_type, fmt in DOCUMENT_TYPES.items()]
    candidates += [(media_type, fmt, 2) for media_type, fmt in (named or {}).items()]
    best: tuple[float, int, int] | None = None
    chosen = None
    for media_type, fmt, least in candidates:
        matching = [(r.specificity(media_type), -r.position, r) for r in ranges
                    if r.specificity(media_type) >= least]
        if not matching:
            continue
        found = max(matching, key=lambda m: m[:2])[2]
        # A named format beyond xml/json (e.g. pdf) ranks after both on a full tie.
        preference = FORMATS.index(fmt) if fmt in FORMATS else len(FORMATS)
        key = (found.quality, -found.position, -preference)
        if found.quality > 0 and (best is None or key > best):
            best, chosen = key, fmt
    return chosen


def accept_header(request: Request) -> str:
    """Every ``Accept`` field line, joined in order (RFC 9110 §5.3)."""
    return ",".join(request.headers.getlist("accept"))


def explicit_format(request: Request) -> str | None:
    """``format=`` as given (None when absent); ``choose_format`` decides whether it is valid."""
    return request.query_params.get("format")


def choose_format(request: Request) -> str:
    """``xml`` or ``json`` for a document: ``format=`` wins, then ``Accept``; raises
    ``InvalidInput`` for another ``format`` and ``NotAcceptable`` when Accept allows neither."""
    explicit = explicit_format(request)
    if explicit is not None:
        if explicit not in FORMATS:  # exactly as the description's enum says
            raise InvalidInput(
                f"format={explicit!r} is not supported: use format=xml or format=json",
                field="format",
            )
        return explicit
    accept = accept_header(request)
    chosen = negotiate(accept)
    if chosen is None:
        raise NotAcceptable(
            f"Accept: {accept.strip()!r} allows neither XML nor JSON: send Accept: "
            "application/xml or application/json (or format=xml|json)",
            field="Accept",
        )
    return chosen


def problem_format(request: Request) -> str:
    """The format of an error answer: the same rules as ``choose_format`` (problem media
    types count too), but never an error itself: a bad ``format`` or an ``Accept`` allowing
    neither gets the default, XML."""
    explicit = explicit_format(request)
    if explicit is not None and explicit in FORMATS:
        return explicit
    return negotiate(accept_header(request), PROBLEM_TYPES) or FORMATS[0]


def refuse_unknown_parameters(request: Request, known: Collection[str]) -> None:
    """400 for a query parameter the endpoint does not take (a typo such as ``startdate``
    would otherwise silently give the default window), as the description declares."""
    for name in request.query_params:
        if name not in known:
            raise InvalidInput(
                f"unknown parameter {name!r}: this endpoint takes "
                f"{', '.join(sorted(known, key=str.lower))}",
                field=name,
            )


def compact(day: dt.date) -> str:
    """``YYYYMMDD`` with a four-digit year (glibc's ``%Y`` writes year 1 as ``1``)."""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def filename(endpoint: str, version: str, window: tuple[dt.date, dt.date], fmt: str,
             subscription_id: int | None = None) -> str:
    """A document's file name (``Content-Disposition``; the portal's curl line uses it too).
    subscriptiondetails names its subscription: two subscriptions' files must not collide
    (``curl -OJ`` refuses to overwrite), and their date window is the same."""
    subject = "" if subscription_id is None else f"{subscription_id}_"
    start, end = window
    return f"{endpoint}_{version}_{subject}{compact(start)}_{compact(end)}.{fmt}"


def parse_date(name: str, value: str) -> dt.date:
    """``value`` as a date, exactly as ``DATE_PATTERN`` says: no blanks, no other digits."""
    if _DATE.fullmatch(value) is None:
        if _DATE_SHAPE.fullmatch(value) is None:
            raise InvalidInput(
                f"{name}={value!r} is not a date: use YYYYMMDD (e.g. 20261123)", field=name
            )
        raise InvalidInput(f"{name}={value!r} is not a real calendar date", field=name)
    digits = value.replace("-", "")
    return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))


def date_range(request: Request, today: dt.date) -> tuple[dt.date, dt.date]:
    """The inclusive invoice-date window; defaults to the three months up to today."""
    start_text = request.query_params.get("startDate")
    end_text = request.query_params.get("endDate")
    # An empty value is not a missing one: it is refused, as the description's pattern says.
    end = parse_date("endDate", end_text) if end_text is not None else today
    if start_text is not None:
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
    if value is None or value == "":
        raise InvalidInput(
            "subscriptionId is required: the id of one of your subscriptions",
            field="subscriptionId",
        )
    # ASCII digits only, no blanks (isdigit() alone admits '²', which int() refuses).
    if _SUBSCRIPTION_ID.fullmatch(value) is None:
        raise InvalidInput(
            f"subscriptionId={value!r} is not a subscription id: use a whole number of at most "
            "18 digits",
            field="subscriptionId",
        )
    return int(value)
