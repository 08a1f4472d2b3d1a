"""``billing-api customers``: checks on the customers already in the database."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_api.access import users
from billing_api.cli.context import emit, err, fail, unit_of_work
from billing_api.customers.vat_check import stored_vat_numbers
from billing_api.errors import BillingError

app = typer.Typer(no_args_is_help=True, help="Checks on stored customers.")


@app.command("check-vat")
def check_vat(
    company: Annotated[
        str | None, typer.Option(help="Only this partner (id or exact name).")
    ] = None,
) -> None:
    """List the stored VAT numbers that fail the import's check, before a billing run.

    One PARTNER<TAB>ENVIRONMENT<TAB>CUSTOMER_NUMBER<TAB>NAME<TAB>COUNTRY<TAB>VAT_NUMBER<TAB>REASON
    line per failing number (a company's own number has - for environment and customer number).
    The billing run charges VAT on these as if there were no number. Exit status: 0 when every
    number passes, 1 when any fails, 2 when the partner is unknown.
    """
    checked = failed = 0
    with unit_of_work() as session:
        partner_id = None
        if company is not None:
            try:
                partner_id = users.find_company(session, company).id
            except BillingError as exc:
                fail(exc.message, code=2)
        for row in stored_vat_numbers(session, partner_id):
            checked += 1
            if row.problem:
                failed += 1
                emit("\t".join(_cell(v) for v in (
                    row.partner, row.environment, row.customer_number, row.name,
                    row.country_code, row.vat_number, row.problem)))
    err.print(f"{failed} of {checked} stored VAT numbers fail the check")
    if failed:
        raise typer.Exit(1)


def _cell(value: str) -> str:
    # One line per row, one tab per column, whatever old data holds.
    return " ".join(value.split("\t")).replace("\n", " ").replace("\r", " ")
