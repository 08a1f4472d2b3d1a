"""Conditional requests and incremental sync for the document answers.

Every document answer carries a strong ``ETag`` and ``Last-Modified`` derived without
reading an invoice line: from what shapes the answer's bytes (API version, endpoint, format,
``embedPdf``, the effective window and cursor, the caller's runs in scope as
``sync/state.py`` reads them in one statement, the revision of live-read data, and
``FORMAT_VERSION``). ``If-None-Match`` (or, without it, ``If-Modified-Since``) that still
matches answers ``304`` with the validators and no body. The three collections also carry
``X-Next-Cursor`` (v4) and take ``since=<cursor>`` (docs/sync.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import format_datetime, parsedate_to_datetime
from functools import cache
from zoneinfo import ZoneInfo

from fastapi import Request, Response
from sqlalchemy import Connection, bindparam, select

from billing_api.api import negotiation
from billing_api.api.deps import ApiCaller
from billing_api.api.versions import CURRENT, ApiVersion
from billing_api.compiled_query import CompiledQuery
from billing_api.customers.models import Subscription
from billing_api.db import close_read
from billing_api.errors import InvalidInput
from billing_api.export.source import Scope
from billing_api.export.stream import open_export
from billing_api.sync import cursor as cursors
from billing_api.sync.state import (
    InvoiceState,
    PartnerState,
    Run,
    partner_state,
    revision_columns,
)

# Bump when a writer's output changes (a new field, another number format): every stored
# tag then stops matching, as the bytes it named no longer exist.
FORMAT_VERSION = "1"
CACHE_CONTROL = "private, no-cache"  # a client may keep a copy but must revalidate it
SINCE = "since"
MAX_POSITION = 2**31 - 1
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ENTITY_TAG = re.compile(r'\s*(?:W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str
    last_modified: dt.datetime

    def headers(self) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Last-Modified": format_datetime(self.last_modified.astimezone(dt.UTC),
                                             usegmt=True),
            "Cache-Control": CACHE_CONTROL,
        }


def validators(parts: Iterable[object], stamps: Iterable[dt.datetime | None]) -> Validators:
    """A strong tag over ``parts`` (anything whose ``str`` is stable) and the latest stamp."""
    text = json.dumps([FORMAT_VERSION, *(str(part) for part in parts)])
    digest = hashlib.sha256(text.encode()).hexdigest()[:32]
    latest = max((stamp for stamp in stamps if stamp is not None), default=EPOCH)
    return Validators(f'"{digest}"', latest.replace(microsecond=0))


def _entity_tags(value: str) -> list[str] | None:
    """The opaque tags of an ``If-None-Match`` list (``W/`` dropped: RFC 9110 §13.1.2 uses
    the weak comparison); None for ``*``; a malformed rest of the list is ignored."""
    if value.strip() == "*":
        return None
    tags, position = [], 0
    while position < len(value):
        found = _ENTITY_TAG.match(value, position)
        if found is None or found.end() == position:
            break
        tags.append(found.group(1))
        position = found.end()
    return tags


def is_fresh(request: Request, current: Validators) -> bool:
    """RFC 9110 §13.2.2 for a GET whose answer would be 200: ``If-None-Match`` when present,
    else ``If-Modified-Since``."""
    if_none_match = request.headers.getlist("if-none-match")
    if if_none_match:
        for value in if_none_match:
            tags = _entity_tags(value)
            if tags is None or current.etag in tags:
                return True
        return False
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        stamp = parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (RFC 9110 §13.1.3)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return current.last_modified <= stamp


def not_modified(headers: dict[str, str]) -> Response:
    """A 304: the headers a 200 would carry (validators, Cache-Control, Vary, cursor, ...)
    and no body."""
    kept = {name: value for name, value in headers.items() if name != "Content-Disposition"}
    return Response(status_code=304, headers=kept)


# --- the three collections ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """The request's filters: invoice dates (inclusive) and, for a sync, the cursor's
    position; ``moving``: no endDate, so the window ends today."""

    start: dt.date
    end: dt.date
    since: int | None
    moving: bool


def window(request: Request, caller: ApiCaller, version: ApiVersion, today: dt.date) -> Window:
    """Dates and cursor. With ``since`` and no dates no date filter applies; a date given
    with ``since`` bounds that side only. Raises ``InvalidInput`` (400)."""
    text = request.query_params.get(SINCE)
    if text is None:
        start, end = negotiation.date_range(request, today)
        # Without endDate the window ends today: it moves each day.
        return Window(start, end, None, request.query_params.get("endDate") is None)
    if not version.v4_fields:
        raise InvalidInput(f"since starts in {CURRENT}: use "
                           f"{request.url.path.replace(version.name, CURRENT, 1)}?since=...",
                           field=SINCE)
    try:
        position = cursors.decode(text, caller.company_id, caller.environment).position
    except cursors.InvalidCursor as exc:
        raise InvalidInput(f"since: {exc}", code="invalid_cursor", field=SINCE) from None
    if position > MAX_POSITION:  # edited: no such position can exist (a 32-bit column)
        raise InvalidInput("since: the cursor names a position this server never gave: use "
                           "the X-Next-Cursor value of an earlier answer",
                           code="invalid_cursor", field=SINCE)
    start_text = request.query_params.get("startDate")
    end_text = request.query_params.get("endDate")
    start = negotiation.parse_date("startDate", start_text) if start_text is not None \
        else dt.date.min
    end = negotiation.parse_date("endDate", end_text) if end_text is not None else dt.date.max
    if end < start:
        raise InvalidInput(f"endDate {negotiation.compact(end)} is before startDate "
                           f"{negotiation.compact(start)}: swap them or widen the range",
                           field="endDate")
    return Window(start, end, position, False)


@dataclass(frozen=True, slots=True)
class Collection:
    """A collection answer decided before its body: the scope to stream, the headers, and
    the open read transaction (None when the answer is a 304)."""

    scope: Scope
    headers: dict[str, str]
    connection: Connection | None
    not_modified: Response | None
    lines: int = 0  # price lines of the runs in scope, as billed: the body's length, roughly


def open_collection(request: Request, caller: ApiCaller, version: ApiVersion, endpoint: str,
                    fmt: str, headers: dict[str, str], *, embed_pdf: bool = False,
                    filters: Window | None = None) -> Collection:
    """Open the document's read transaction and ``decide_collection`` in it; the connection
    stays open for the body unless the answer is a 304."""
    filters = filters or window(request, caller, version, request.app.state.settings.today())
    connection = open_export(request.app.state.read_engine)
    try:
        found = decide_collection(connection, request, caller, version, endpoint, fmt, headers,
                                  embed_pdf=embed_pdf, filters=filters)
    except BaseException:
        close_read(connection)
        raise
    if found.not_modified is not None:
        close_read(connection)
    return found


def decide_collection(connection: Connection, request: Request, caller: ApiCaller,
                      version: ApiVersion, endpoint: str, fmt: str, headers: dict[str, str],
                      *, embed_pdf: bool, filters: Window) -> Collection:
    """Read the caller's runs in ``connection``'s read transaction (the snapshot the body is
    read from) and decide: a 304, or the scope to stream with its headers (to which the
    validators and, on v4, ``X-Next-Cursor`` are added)."""
    settings = request.app.state.settings
    state = partner_state(connection, caller.company_id, caller.environment)
    scope, in_scope = _scope(caller, filters, state, fmt in ("ubl", "pdf"))
    stamps: list[dt.datetime | None] = [run.finished_at for run in in_scope]
    stamps += [state.content_changed_at, state.undone_at]
    if filters.moving:  # the window itself moved at the start of today
        stamps.append(dt.datetime.combine(settings.today(), dt.time(),
                                          ZoneInfo(settings.timezone)))
    current = validators(
        [version.name, endpoint, fmt, embed_pdf, filters.start, filters.end, filters.since,
         sorted(run.position for run in in_scope), state.content_revision], stamps)
    headers = headers | current.headers()
    if version.v4_fields:
        headers["X-Next-Cursor"] = cursors.encode(caller.company_id, caller.environment,
                                                  scope.upto)
    lines = sum(run.lines for run in in_scope)
    if is_fresh(request, current):
        return Collection(scope, headers, None, not_modified(headers), lines)
    return Collection(scope, headers, connection, None, lines)


def _scope(caller: ApiCaller, filters: Window, state: PartnerState,
           forms: bool) -> tuple[Scope, list[Run]]:
    """The scope to stream and the runs whose invoices it holds. A sync reads the runs after
    the cursor up to the snapshot's position (a cursor ahead of it, from a lagging replica or
    an edit, gives nothing and keeps its position); its dates narrow to those runs' invoice
    dates so that lines stay one short range scan. The e-invoice forms also name the invoice
    a credit note corrects: any run dated up to the window's end can change that."""
    upto = max(state.current, filters.since or 0)
    runs = [run for run in state.runs
            if filters.start <= run.invoice_date <= filters.end
            and (filters.since is None or filters.since < run.position <= upto)]
    start, end = filters.start, filters.end
    if filters.since is not None:
        days = [run.invoice_date for run in runs]
        start, end = (max(start, min(days)), min(end, max(days))) if days \
            else (dt.date.max, dt.date.min)  # nothing new: an empty range
    tagged = runs
    if forms:
        last = max((run.invoice_date for run in runs), default=filters.end)
        tagged = [run for run in state.runs if run.invoice_date <= last]
    scope = Scope(caller.company_id, caller.environment, start, end, filters.since, upto)
    return scope, tagged


def label(filters: Window, scope: Scope) -> str:
    """The file name's middle: the window's dates, or for a sync without dates the positions
    it covers (each day's file gets a name of its own)."""
    if filters.since is not None and (filters.start, filters.end) == (dt.date.min, dt.date.max):
        return f"since{filters.since}_upto{scope.upto}"
    return f"{negotiation.compact(filters.start)}_{negotiation.compact(filters.end)}"


# --- one invoice ---------------------------------------------------------------------------


def invoice_validators(version: ApiVersion, endpoint: str, fmt: str, embed_pdf: bool,
                       state: InvoiceState) -> Validators:
    """One invoice: its run (positions are never given twice, so a re-billed invoice with the
    same number gets another tag), the live data its form reads (the v4 document's names;
    a party its snapshot lacks) and, for a credit note's e-invoice, the runs that may hold
    the invoice it corrects."""
    forms = fmt in ("ubl", "pdf")
    parts: list[object] = [version.name, endpoint, "one", fmt, embed_pdf, state.id,
                           state.number, state.position]
    stamps: list[dt.datetime | None] = [state.finished_at]
    if not forms or not state.parties_complete:
        parts.append(state.content_revision)
        stamps.append(state.content_changed_at)
    if forms and state.credit:
        parts.append(state.earlier_runs)
        stamps.append(state.undone_at)
    return validators(parts, stamps)


# --- subscription details --------------------------------------------------------------------


@cache
def _details_query() -> CompiledQuery:
    """Built and compiled once with bound parameters (see ``sync.state``)."""
    return CompiledQuery(select(Subscription.created_at, *revision_columns()[1:])
                         .where(Subscription.id == bindparam("wanted"),
                                Subscription.partner_id == bindparam("partner"),
                                Subscription.environment == bindparam("environment")))


def details_validators(connection: Connection, caller: ApiCaller, subscription_id: int,
                       body: bytes) -> Validators:
    """The body's digest; Last-Modified: the subscription's creation or the last import that
    changed data, whichever is later."""
    [(created, changed)] = _details_query().all(connection, {
        "wanted": subscription_id, "partner": caller.company_id,
        "environment": caller.environment})
    return validators(["subscriptiondetails", hashlib.sha256(body).hexdigest()],
                      [created, changed])
