"""A billing run's invoices: drafts opened as lines need them, numbered per sender, written
with the chunk (customer invoices complete) or given their totals at the end (purchase
invoices, one per vendor for the whole run).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from billing_api.access.models import Company
from billing_api.billing.bulk import COPY_INVOICES, INSERT_INVOICES, bulk_insert, new_invoice_ids
from billing_api.billing.chunk import CustomerRow, table
from billing_api.billing.context import InvoiceDraft, RunContext, SenderFacts, driver_date
from billing_api.billing.models import Invoice, InvoiceSequence
from billing_api.billing.parties import company_receiver, customer_receiver, sender_snapshot
from billing_api.db import from_units
from billing_api.environments import Environment


def new_invoice(
    ctx: RunContext, key: tuple[Any, ...], kind: str, customer: CustomerRow
) -> InvoiceDraft:
    vendor_id = key[-1]
    if kind == "purchase":
        sender = ctx.distributor
        receiver_json = ctx.receiver_json.get(0) or _receiver_json(ctx, 0, ctx.partner)
        language = ctx.partner.language_code
        customer_id = None
    else:
        sender = ctx.partner
        customer_id = customer.id
        receiver_json = ctx.receiver_json.get(customer_id) or _receiver_json(
            ctx, customer_id, customer
        )
        language = customer.language_code
    facts = ctx.senders.get(sender.id) or _sender_facts(ctx, sender)
    number = ctx.next_numbers.get(sender.id)
    if number is None:
        number = _last_invoice_number(ctx, sender.id)
    number += 1
    ctx.next_numbers[sender.id] = number
    fields = (
        ctx.partner_id,
        ctx.environment,
        kind,
        ctx.run_id,
        vendor_id,
        sender.id,
        customer_id,
        f"{facts.number_prefix}-{number:07d}",
        ctx.invoice_date_value,
        facts.due_date,
        ctx.vendor_descriptions.get(vendor_id) or _vendor_description(ctx, vendor_id),
        facts.currency,
        facts.terms_of_payment_days,
        language,
        facts.json,
        receiver_json,
    )
    draft = InvoiceDraft(key, fields)
    ctx.invoices[key] = draft
    return draft


def _sender_facts(ctx: RunContext, sender: Company) -> SenderFacts:
    sandbox = "-SBX" if ctx.environment == Environment.SANDBOX else ""
    facts = ctx.senders[sender.id] = SenderFacts(
        number_prefix=f"{sender.invoice_prefix}{sandbox}",
        due_date=driver_date(
            ctx, ctx.invoice_date + dt.timedelta(days=sender.terms_of_payment_days)),
        currency=sender.currency,
        terms_of_payment_days=sender.terms_of_payment_days,
        json=json.dumps(sender_snapshot(sender)),
    )
    return facts


def _receiver_json(ctx: RunContext, customer_id: int, receiver: Any) -> str:
    """The receiver snapshot as JSON text; ``customer_id`` 0 is the partner (purchase
    invoices). Customers' entries are dropped with their chunk's invoices."""
    snapshot = company_receiver(receiver) if customer_id == 0 else customer_receiver(receiver)
    text = ctx.receiver_json[customer_id] = json.dumps(snapshot)
    return text


def _vendor_description(ctx: RunContext, vendor_id: int) -> str:
    month = ctx.period_first.strftime("%B %Y")
    text = ctx.vendor_descriptions[vendor_id] = f"{ctx.vendors[vendor_id].name} services {month}"
    return text


def _last_invoice_number(ctx: RunContext, sender_id: int) -> int:
    session = ctx.session
    # FOR UPDATE keeps two runs from handing out the same number on PostgreSQL; SQLite's
    # single writer already serialises them.
    row = session.execute(
        select(InvoiceSequence.last_number)
        .where(
            InvoiceSequence.sender_company_id == sender_id,
            InvoiceSequence.environment == ctx.environment,
        )
        .with_for_update()
    ).first()
    if row is None:
        session.add(
            InvoiceSequence(sender_company_id=sender_id, environment=ctx.environment, last_number=0)
        )
        session.flush()
        return 0
    return int(row[0])


def insert_new_invoices(session: Session, ctx: RunContext) -> None:
    """Insert the chunk's new invoices in the order they were opened, with the ids the
    database would have given them. Customer invoices are complete by now and get their
    totals; purchase invoices get theirs at the end of the run (``store_totals``)."""
    pending = [d for d in ctx.invoices.values() if d.id is None]
    if not pending:
        return
    rows = []
    ids = new_invoice_ids(session, ctx, len(pending))
    for draft, invoice_id in zip(pending, ids, strict=True):
        draft.id = invoice_id
        excl, vat = draft.excluding_vat, draft.vat
        if not draft.is_customer_invoice:
            excl = vat = 0  # the column defaults, until store_totals
        kind = "credit" if excl + vat < 0 else "invoice"
        rows.append((invoice_id, *draft.fields, kind, excl, vat, excl + vat))
    bulk_insert(session, ctx, COPY_INVOICES, INSERT_INVOICES, rows)


def forget_customer_invoices(ctx: RunContext) -> None:
    """Drop the chunk's customer invoices, written with their totals, keeping their sums."""
    for key, draft in list(ctx.invoices.items()):
        if draft.is_customer_invoice:
            ctx.done_invoices += 1
            ctx.done_excluding_vat += draft.excluding_vat
            ctx.done_vat += draft.vat
            del ctx.invoices[key]
            ctx.receiver_json.pop(draft.key[1], None)


def store_totals(session: Session, ctx: RunContext) -> None:
    rows = [
        {
            "b_id": d.id,
            "b_excl": from_units(d.excluding_vat),
            "b_vat": from_units(d.vat),
            "b_incl": from_units(d.excluding_vat + d.vat),
            "b_type": "credit" if d.excluding_vat + d.vat < 0 else "invoice",
        }
        for d in ctx.invoices.values()
    ]
    if not rows:
        return
    invoices = table(Invoice)
    session.connection().execute(
        update(invoices)
        .where(invoices.c.id == bindparam("b_id"))
        .values(
            total_excluding_vat=bindparam("b_excl", type_=invoices.c.total_excluding_vat.type),
            total_vat=bindparam("b_vat", type_=invoices.c.total_vat.type),
            total_including_vat=bindparam("b_incl", type_=invoices.c.total_including_vat.type),
            type=bindparam("b_type"),
        ),
        rows,
    )


def store_sequences(session: Session, ctx: RunContext) -> None:
    for sender_id, last in ctx.next_numbers.items():
        session.execute(
            update(InvoiceSequence)
            .where(
                InvoiceSequence.sender_company_id == sender_id,
                InvoiceSequence.environment == ctx.environment,
            )
            .values(last_number=last)
        )
