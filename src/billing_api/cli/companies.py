"""``billing-api companies``: partner companies and their Account Administrators."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from billing_api.access import passwords, users
from billing_api.cli.context import err, read_secret_from_stdin, unit_of_work

app = typer.Typer(no_args_is_help=True, help="Partner companies.")


def one_time_password(from_stdin: bool) -> tuple[str, bool]:
    """The password to set, and whether it was generated (and so must be shown once)."""
    if from_stdin:
        return read_secret_from_stdin(), False
    return passwords.generate_password(), True


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="The company's exact name.")],
    admin_email: Annotated[str, typer.Option(help="E-mail of its Account Administrator.")],
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the administrator's password from standard input.")] = False,
) -> None:
    """Create a partner company and its Account Administrator.

    Prints a one-time password on stdout unless --password-stdin is given; the portal asks
    for a new password at its first login.
    """
    password, generated = one_time_password(password_stdin)
    with unit_of_work(writer=True) as session:
        company, admin = users.create_company(session, name, admin_email, password,
                                              must_change_password=generated)
        company_id, email = company.id, admin.email
    err.print(f"created company {company_id} {name!r} with Account Administrator {email}")
    if generated:
        err.print("one-time password (shown once):")
        sys.stdout.write(password + "\n")


@app.command("list")
def list_() -> None:
    """One ID<TAB>NAME line per partner company (the distributor is not listed)."""
    with unit_of_work() as session:
        rows = [(c.id, c.name) for c in users.list_partners(session)]
    for company_id, name in rows:
        sys.stdout.write(f"{company_id}\t{name}\n")
