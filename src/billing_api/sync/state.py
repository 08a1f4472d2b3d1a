"""What a document's ETag, Last-Modified and X-Next-Cursor are derived from, in one query.

A partner's invoices and lines change only with billing runs (a run adds them, ``unbill``
removes the newest run's), and every invoice of a run carries the run's invoice date. So the
runs of the caller (position, invoice date, end) say which invoices a window or a cursor
holds, without reading an invoice or a price line. What documents read live from current
rows (customer and subscription names, plans, a party an old snapshot lacks) changes only
through an import, which bumps ``content_revisions`` (``note_content_change``).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    Connection,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from billing_api.billing.models import BillingRun, ContentRevision, Invoice, SyncPosition
from billing_api.compiled_query import CompiledQuery
from billing_api.db import utcnow
from billing_api.einvoice.source import snapshot_complete

REVISION_ROW = 1  # content_revisions has this one row


@dataclass(frozen=True, slots=True)
class Run:
    position: int
    invoice_date: dt.date
    finished_at: dt.datetime
    lines: int = 0  # the run's price lines: how long its documents are, before reading them


@dataclass(frozen=True, slots=True)
class PartnerState:
    """The caller's committed runs as this transaction's snapshot sees them."""

    runs: tuple[Run, ...]
    content_revision: int
    content_changed_at: dt.datetime | None
    undone_at: dt.datetime | None

    @property
    def current(self) -> int:
        """The highest position visible (0 before the first run): the next cursor."""
        return max((run.position for run in self.runs), default=0)


def revision_columns() -> list[Any]:
    rev = ContentRevision
    return [
        select(rev.revision).where(rev.id == REVISION_ROW).scalar_subquery(),
        select(rev.changed_at).where(rev.id == REVISION_ROW).scalar_subquery(),
    ]


# The statements below are built once with bound parameters: building one per request (and
# its cache key) cost more than running it (bench/load.py, bench/profile.py).
PARTNER: BindParameter[int] = bindparam("state_partner", type_=Integer())
ENVIRONMENT: BindParameter[str] = bindparam("state_environment", type_=String())


def _undone_at() -> Any:
    sp = SyncPosition
    return (select(sp.undone_at)
            .where(sp.partner_id == PARTNER, sp.environment == ENVIRONMENT)
            .scalar_subquery())


@cache
def _partner_query() -> CompiledQuery:
    return CompiledQuery(_partner_statement())


@cache
def _invoice_query() -> CompiledQuery:
    return CompiledQuery(_invoice_statement())


def _partner_statement() -> Select[Any]:
    r = BillingRun
    one = select(literal(1).label("one")).subquery("one")
    return select(
        r.sync_position, r.invoice_date, r.finished_at, *revision_columns(), _undone_at(),
        r.line_count,
    ).select_from(one.outerjoin(r, and_(
        r.partner_id == PARTNER, r.environment == ENVIRONMENT,
        r.sync_position.is_not(None))))


def partner_state(connection: Connection, partner_id: int, environment: str) -> PartnerState:
    """One statement: the caller's runs (an index range of ``billing_runs``, a few rows per
    year), the content revision and the last undo. Run it first in the document's
    transaction, so that it sees the snapshot the document is read from."""
    rows = _partner_query().all(connection, {
        "state_partner": partner_id, "state_environment": environment})
    runs = tuple(Run(row[0], row[1], row[2] or _EPOCH, row[6] or 0)
                 for row in rows if row[0] is not None)
    first = rows[0]
    return PartnerState(runs, first[3] or 0, first[4], first[5])


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class InvoiceState:
    """One invoice's place in the runs, and what its e-invoice forms read beyond it."""

    id: int
    number: str
    invoice_date: dt.date
    position: int
    finished_at: dt.datetime
    credit: bool  # a credit note names the invoice it corrects: earlier runs matter
    parties: tuple[str, str]  # the sender's and receiver's snapshots, JSON text
    content_revision: int
    content_changed_at: dt.datetime | None
    undone_at: dt.datetime | None
    # Runs dated up to this invoice (count, highest and sum of positions): where the invoice
    # a credit note corrects is found.
    earlier_runs: tuple[int, int, int]
    # Price lines of the invoice's whole run: a bound on its own that costs no read of
    # them (a 304 reads no price line).
    run_lines: int = 0

    @property
    def parties_complete(self) -> bool:
        """Both snapshots hold every Peppol field: no live party read. Parsed only when an
        e-invoice asks (the v4 answers, the small requests, never do)."""
        return all(snapshot_complete(json.loads(text)) for text in self.parties)


def invoice_state(connection: Connection, kind: str, partner_id: int, environment: str,
                  number: str) -> InvoiceState | None:
    """One statement on the invoice's unique number (None when it is not the caller's)."""
    row = _invoice_query().first(connection, {
        "state_partner": partner_id, "state_environment": environment, "state_kind": kind,
        "state_number": number})
    if row is None or row[3] is None:
        return None
    return InvoiceState(row[0], row[1], row[2], row[3], row[4] or _EPOCH, bool(row[5]),
                        (row[6], row[7]), row[8] or 0, row[9], row[10],
                        (int(row[11]), int(row[12]), int(row[13])), row[14] or 0)


def _invoice_statement() -> Select[Any]:
    i, r = Invoice, BillingRun
    e = aliased(BillingRun, name="earlier")

    def earlier(column: Any) -> Any:
        return (select(column)
                .where(e.partner_id == PARTNER, e.environment == ENVIRONMENT,
                       e.sync_position.is_not(None), e.invoice_date <= i.invoice_date)
                .scalar_subquery())

    return (
        select(i.id, i.invoice_number, i.invoice_date, r.sync_position, r.finished_at,
               # As text: parsed only if an e-invoice needs them (``parties_complete``).
               i.total_including_vat < 0, cast(i.sender, Text), cast(i.receiver, Text),
               *revision_columns(),
               _undone_at(), earlier(func.count()),
               earlier(func.coalesce(func.max(e.sync_position), 0)),
               earlier(func.coalesce(func.sum(e.sync_position), 0)), r.line_count)
        .join(r, r.id == i.billing_run_id)
        .where(i.partner_id == PARTNER, i.environment == ENVIRONMENT,
               i.kind == bindparam("state_kind"), i.invoice_number == bindparam("state_number"))
    )


def note_content_change(session: Session) -> None:
    """Count a change of data documents read live (an import that changed rows); call it in
    the writer's transaction. Every document's ETag then changes once it commits."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    session.execute(
        insert(ContentRevision)
        .values(id=REVISION_ROW, revision=1, changed_at=now)
        .on_conflict_do_update(index_elements=["id"],
                               set_={"revision": ContentRevision.revision + 1,
                                     "changed_at": now})
    )
