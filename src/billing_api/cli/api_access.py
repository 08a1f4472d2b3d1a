"""``billing-api api enable|disable``: the partner's API switch (its Administrator only)."""

from __future__ import annotations

from typing import Annotated

import typer

from billing_api.access import permissions, users
from billing_api.cli.context import err, unit_of_work
from billing_api.errors import NotFound

app = typer.Typer(no_args_is_help=True, help="Switch a partner's Billing API on or off.")

CompanyOpt = Annotated[str, typer.Option("--company", help="Company id or exact name.")]
AsOpt = Annotated[str, typer.Option(
    "--as", help="E-mail of the company's Account Administrator (nobody else may do this).")]


def _switch(company: str, admin_email: str, enabled: bool) -> None:
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        try:
            actor = users.find_user(session, target, admin_email)
        except NotFound:
            actor = None  # reported as "not the Account Administrator", the real reason
        if actor is None:
            permissions.require_admin(target, None)
        permissions.set_api_enabled(session, target, actor, enabled)
        name = target.name
    err.print(f"Billing API {'enabled' if enabled else 'disabled'} for {name}")


@app.command("enable")
def enable(company: CompanyOpt, as_: AsOpt) -> None:
    """Turn the Billing API on for a partner."""
    _switch(company, as_, True)


@app.command("disable")
def disable(company: CompanyOpt, as_: AsOpt) -> None:
    """Turn the Billing API off: every key and link of the partner stops working at once."""
    _switch(company, as_, False)
