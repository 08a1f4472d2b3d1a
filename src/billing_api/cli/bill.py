"""``billing-api bill`` and ``billing-api unbill``: the monthly billing run and its undo.

Exit status, for a scheduler (docs/operations.md, "Monthly billing"):

* 0 — done: at least one partner and environment was billed (or undone) now;
* 3 — nothing to do: every run asked for was billed already (or, for ``unbill``, there is no
  run of the period), or there are no partners yet;
* 1 — failed: some run was refused or failed (the others are billed all the same, each in
  its own transaction; a re-run bills only what is missing); 2 is the usage error.
"""

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
from billing_api.billing.undo import runs_of_period, undo_run
from billing_api.cli.context import emit, engine, err, fail, settings, unit_of_work
from billing_api.db import make_session_factory, transaction
from billing_api.environments import Environment
from billing_api.errors import BillingError

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_NOTHING_TO_DO = 3
PREVIOUS = "previous"


def bill(
    period: Annotated[str, typer.Option(
        help="The month to bill, YYYY-MM (past or future), or 'previous': the last complete "
        "month in the distributor's timezone (BILLING_API_TIMEZONE), for a monthly timer.")],
    environment: Annotated[
        Environment | None, typer.Option(help="Only this environment (default: both).")
    ] = None,
    invoice_date: Annotated[
        str | None, typer.Option(help="Invoice date YYYY-MM-DD (default: today, in the "
                                 "distributor's timezone).")
    ] = None,
    company: Annotated[
        str | None, typer.Option(help="Only this partner (id or exact name).")
    ] = None,
) -> None:
    """Bill PERIOD for every partner, one transaction per partner and environment.

    Running a billed period again changes nothing. Exit status: 0 billed, 3 nothing to do
    (all billed already, or no partners), 1 a run failed (the others are kept).
    """
    period = _period(period)
    day = _parse_day(invoice_date) if invoice_date else settings().today()
    environments = [environment] if environment else list(Environment)
    partners = _partners(company)
    billed = failed = 0
    for partner_id, name in partners:
        for env in environments:
            try:
                summary = _bill_one(partner_id, name, env, period, day)
            except BillingError as exc:
                failed += 1
                err.print(f"[red]error:[/red] {escape(name)} {env.value} {period}: "
                          f"{escape(exc.message)}")
                continue
            billed += not summary.already_billed
            _report(name, summary)
    if failed:
        err.print(f"{failed} run(s) failed; billing the period again bills only those")
        raise typer.Exit(EXIT_FAILED)
    if not billed:
        raise typer.Exit(EXIT_NOTHING_TO_DO)


def unbill(
    period: Annotated[str, typer.Option(help="The billed month to undo, YYYY-MM or 'previous'.")],
    environment: Annotated[
        Environment | None, typer.Option(help="Only this environment (default: both).")
    ] = None,
    company: Annotated[
        str | None, typer.Option(help="Only this partner (id or exact name).")
    ] = None,
) -> None:
    """Undo the billing runs of PERIOD that no partner can have downloaded yet, all or none.

    Refused, changing nothing, when a partner's key for that environment was used since its
    run started, when a later period is billed, or when a later run took invoice numbers of
    the same sequence that this command does not undo too. Exit status: 0 undone, 3 no run
    of the period, 1 refused.
    """
    period = _period(period)
    environments = [e.value for e in ([environment] if environment else list(Environment))]
    partners = dict(_partners(company))
    with unit_of_work(writer=True) as session:
        runs = runs_of_period(session, period, environments, list(partners))
        undone = [undo_run(session, run) for run in runs]
    if not undone:
        err.print(f"{period} is not billed for the partners and environments asked for")
        raise typer.Exit(EXIT_NOTHING_TO_DO)
    for u in sorted(undone, key=lambda u: (u.partner_id, u.environment)):
        emit(f"{partners[u.partner_id]}\t{u.environment}\t{u.period}\tundone: "
             f"{u.invoices} invoices\t{u.lines} lines removed")


def previous_period(today: dt.date) -> str:
    """The last complete calendar month before ``today``, as YYYY-MM."""
    return (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")


def _period(text: str) -> str:
    if text == PREVIOUS:
        return previous_period(settings().today())
    try:
        parse_period(text)
    except ValueError as exc:
        fail(f"--period: {exc} (or 'previous')")
    return text


def _partners(company: str | None) -> list[tuple[int, str]]:
    with unit_of_work() as session:
        stmt = select(Company.id, Company.name).where(Company.kind == "partner")
        if company is not None:
            stmt = stmt.where((Company.name == company) | (Company.id == _int_or_none(company)))
        partners = [(i, n) for i, n in session.execute(stmt.order_by(Company.id)).all()]
    if company is not None and not partners:
        fail(f"no partner company matches {company!r}")
    if not partners:
        err.print("there are no partners yet: nothing to do")
        raise typer.Exit(EXIT_NOTHING_TO_DO)
    return partners


def _bill_one(
    partner_id: int, name: str, env: Environment, period: str, day: dt.date
) -> RunSummary:
    columns = (
        TextColumn(f"{escape(name)} {env.value} {period}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("customers"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("bill", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        # Its own transaction (the schema was checked by _partners): a failure here is this
        # partner's alone, and the caller goes on with the next.
        with transaction(make_session_factory(engine()), writer=True) as session:
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
