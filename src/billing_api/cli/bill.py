"""``billing-api bill``: the monthly billing run."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from billing_api.access.models import Company
from billing_api.billing.rating import parse_period
from billing_api.billing.run import RunSummary, bill_partner
from billing_api.cli.context import emit, err, fail, settings, unit_of_work
from billing_api.environments import Environment


def bill(
    period: Annotated[str, typer.Option(help="The month to bill, YYYY-MM (past or future).")],
    environment: Annotated[
        Environment | None, typer.Option(help="Only this environment (default: both).")
    ] = None,
    invoice_date: Annotated[
        str | None, typer.Option(help="Invoice date YYYY-MM-DD (default: today).")
    ] = None,
    company: Annotated[
        str | None, typer.Option(help="Only this partner (id or exact name).")
    ] = None,
) -> None:
    """Bill PERIOD for every partner, one transaction per partner and environment.

    Running a billed period again changes nothing.
    """
    try:
        parse_period(period)
    except ValueError as exc:
        fail(f"--period: {exc}")
    day = _parse_day(invoice_date) if invoice_date else settings().today()
    environments = [environment] if environment else list(Environment)
    with unit_of_work() as session:
        stmt = select(Company.id, Company.name).where(Company.kind == "partner")
        if company is not None:
            stmt = stmt.where((Company.name == company) | (Company.id == _int_or_none(company)))
        partners = session.execute(stmt.order_by(Company.id)).all()
    if not partners:
        fail(f"no partner company matches {company!r}" if company else "there are no partners yet")
    for partner_id, name in partners:
        for env in environments:
            summary = _bill_one(partner_id, name, env, period, day)
            _report(name, summary)


def _bill_one(
    partner_id: int, name: str, env: Environment, period: str, day: dt.date
) -> RunSummary:
    columns = (
        TextColumn(f"{name} {env.value} {period}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("customers"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("bill", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        with unit_of_work(writer=True) as session:
            return bill_partner(session, partner_id, env, period, day, progress=advance)


def _report(name: str, s: RunSummary) -> None:
    if s.already_billed:
        emit(f"{name}\t{s.environment}\t{s.period}\talready billed: nothing changed")
        return
    emit(
        f"{name}\t{s.environment}\t{s.period}\t{s.invoices} invoices\t{s.lines} lines\t"
        f"excl. VAT {s.total_excluding_vat}\tVAT {s.total_vat}"
    )
    if s.ignored_vat_numbers:
        err.print(
            f"warning: {escape(name)} {s.environment}: {s.ignored_vat_numbers} VAT number(s) "
            "fail the check and were billed as no number (VAT charged, not reverse-charged); "
            "list them with `billing-api customers check-vat`"
        )


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        fail(f"--invoice-date {text!r} is not a date of the form YYYY-MM-DD")
        raise


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None
