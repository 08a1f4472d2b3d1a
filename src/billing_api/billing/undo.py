"""Undo a mistaken billing run that nobody can have downloaded yet.

A run is removed whole (its price lines, invoices and ``billing_runs`` row; the subscription
changes and cancellations it billed become unbilled again) and the invoice-number sequences
step back, so the numbers stay gap-free and the period can be billed again. Refused when:

* a partner's key for the run's environment was used since the run started: an ERP may hold
  the invoices (``api_keys.last_used_at``, stamped at most once a minute, so a minute before
  the start counts too; a signed download link stamps its key as well);
* a later run of the same partner and environment exists (it was priced on top of this one:
  corrections, cycles billed in advance) — undo that one first;
* a sender issued numbers after the run's (the distributor numbers every partner's purchase
  invoices from one sequence): removing the run would leave a gap — undo the later runs too.

The caller's session owns the transaction: undo every run of a command in one, newest first,
so that either all of them go or none does.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from billing_api.access.keys import LAST_USED_RESOLUTION
from billing_api.access.models import ApiKey
from billing_api.billing.models import (
    BillingRun,
    Invoice,
    InvoiceSequence,
    PriceLine,
    SyncPosition,
)
from billing_api.customers.models import Subscription, SubscriptionChange
from billing_api.db import utcnow
from billing_api.errors import Conflict


@dataclass(frozen=True, slots=True)
class UndoSummary:
    partner_id: int
    environment: str
    period: str
    invoices: int
    lines: int


def runs_of_period(session: Session, period: str, environments: list[str],
                   partner_ids: list[int]) -> list[BillingRun]:
    """The period's runs among ``partner_ids`` and ``environments``, newest first: the order
    they must be undone in."""
    return list(session.scalars(
        select(BillingRun)
        .where(BillingRun.period == period, BillingRun.environment.in_(environments),
               BillingRun.partner_id.in_(partner_ids))
        .order_by(BillingRun.id.desc())))


def undo_run(session: Session, run: BillingRun) -> UndoSummary:
    """Remove ``run`` and everything it wrote. Raises ``Conflict`` (see the module docstring);
    the caller then rolls back."""
    label = f"partner {run.partner_id}, {run.environment}, {run.period}"
    later = session.scalar(
        select(BillingRun.period)
        .where(BillingRun.partner_id == run.partner_id,
               BillingRun.environment == run.environment,
               (BillingRun.id > run.id) | (BillingRun.period > run.period))
        .order_by(BillingRun.period.desc()).limit(1))
    if later is not None:
        raise Conflict(f"{label}: period {later} was billed after it; undo that run first",
                       code="later_run_exists")
    _refuse_if_downloadable(session, run, label)
    invoice_ids = select(Invoice.id).where(Invoice.billing_run_id == run.id)
    _step_back_sequences(session, run, label)
    lines = session.execute(delete(PriceLine).where(PriceLine.invoice_id.in_(invoice_ids)))
    invoices = session.execute(delete(Invoice).where(Invoice.billing_run_id == run.id))
    session.execute(update(SubscriptionChange).where(SubscriptionChange.billed_run_id == run.id)
                    .values(billed_run_id=None))
    session.execute(update(Subscription)
                    .where(Subscription.cancellation_billed_run_id == run.id)
                    .values(cancellation_billed_run_id=None))
    summary = UndoSummary(run.partner_id, run.environment, run.period,
                          invoices.rowcount, lines.rowcount)  # type: ignore[attr-defined]
    # Last-Modified of the documents that showed the run must not go back in time.
    session.execute(update(SyncPosition)
                    .where(SyncPosition.partner_id == run.partner_id,
                           SyncPosition.environment == run.environment)
                    .values(undone_at=utcnow()))
    session.delete(run)
    session.flush()
    return summary


def _refuse_if_downloadable(session: Session, run: BillingRun, label: str) -> None:
    since = run.started_at - LAST_USED_RESOLUTION
    used: dt.datetime | None = session.scalar(
        select(func.max(ApiKey.last_used_at))
        .where(ApiKey.company_id == run.partner_id, ApiKey.environment == run.environment,
               ApiKey.last_used_at >= since))
    if used is not None:
        raise Conflict(
            f"{label}: an API key of the partner was used at {used:%Y-%m-%d %H:%M:%S} UTC, "
            "after the run started, so its invoices may have been downloaded; correct them "
            "in the next run instead", code="run_may_be_downloaded")


def _step_back_sequences(session: Session, run: BillingRun, label: str) -> None:
    """Give the run's numbers back: each sender's must be the last ones it issued."""
    rows = session.execute(
        select(Invoice.sender_company_id, Invoice.invoice_number)
        .where(Invoice.billing_run_id == run.id)).all()
    numbers: dict[int, list[int]] = {}
    for sender_id, number in rows:
        numbers.setdefault(sender_id, []).append(int(number.rsplit("-", 1)[1]))
    for sender_id, issued in sorted(numbers.items()):
        # FOR UPDATE: a run of another partner takes numbers of the same sequence.
        last = session.scalar(
            select(InvoiceSequence.last_number)
            .where(InvoiceSequence.sender_company_id == sender_id,
                   InvoiceSequence.environment == run.environment)
            .with_for_update())
        first = (last or 0) - len(issued) + 1
        if sorted(issued) != list(range(first, (last or 0) + 1)):
            raise Conflict(
                f"{label}: sender {sender_id} issued invoice numbers after this run's "
                f"(last {last}); undoing it alone would leave a gap — undo the later runs "
                "of the same environment in the same command, or correct in the next run",
                code="numbers_issued_after")
        session.execute(
            update(InvoiceSequence)
            .where(InvoiceSequence.sender_company_id == sender_id,
                   InvoiceSequence.environment == run.environment)
            .values(last_number=first - 1))
