"""``billing-api api``: the partner's API switch.

``enable|disable --as EMAIL --password-stdin`` is the Account Administrator's own decision: the
command needs their password, so naming them is not enough to act as them. An operator who
must act without them uses ``distributor-enable|distributor-disable --reason``, which the audit
log and the portal's Activity page show as the distributor's action, never as the partner's.
"""

from __future__ import annotations

from typing import Annotated

import typer

from billing_api.access import permissions, users
from billing_api.cli.context import confirm_user, err, password_for, unit_of_work
from billing_api.errors import NotFound

app = typer.Typer(no_args_is_help=True, help="Switch a partner's Billing API on or off.")

CompanyOpt = Annotated[str, typer.Option("--company", help="Company id or exact name.")]
AsOpt = Annotated[str, typer.Option(
    "--as", help="E-mail of the company's Account Administrator (nobody else may do this).")]
PasswordOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the Account Administrator's password from standard input "
    "(required).")]
ReasonOpt = Annotated[str, typer.Option(
    "--reason", help="Why the distributor acts without the Account Administrator (required; "
    "the partner sees it on its Activity page).")]
_HINT = (" (to act without the Account Administrator, the distributor uses "
         "`billing-api api distributor-enable|distributor-disable --reason`)")


def _switch(company: str, admin_email: str, password_stdin: bool, enabled: bool) -> None:
    password = password_for(admin_email, password_stdin, _HINT)
    action = "api enable" if enabled else "api disable"
    with unit_of_work() as session:
        target = users.find_company(session, company)
        try:
            actor = users.find_user(session, target, admin_email)
        except NotFound:
            actor = None  # reported as "not the Account Administrator", the real reason
        # Whose authority first (no password is checked for someone who could not do it
        # anyway), then whether the password is theirs.
        permissions.require_admin(target, actor)
    confirm_user(company, admin_email, password, action)
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, admin_email)
        permissions.set_api_enabled(session, target, actor, enabled)
        name = target.name
    err.print(f"Billing API {'enabled' if enabled else 'disabled'} for {name}")


@app.command("enable")
def enable(company: CompanyOpt, as_: AsOpt, password_stdin: PasswordOpt = False) -> None:
    """Turn the Billing API on for a partner, as its Account Administrator (password on stdin)."""
    _switch(company, as_, password_stdin, True)


@app.command("disable")
def disable(company: CompanyOpt, as_: AsOpt, password_stdin: PasswordOpt = False) -> None:
    """Turn the Billing API off, as the Account Administrator: every key and link of the
    partner stops working at once."""
    _switch(company, as_, password_stdin, False)


def _distributor_switch(company: str, reason: str, enabled: bool) -> None:
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        permissions.distributor_set_api_enabled(session, target, enabled, reason)
        name = target.name
    err.print(f"Billing API {'enabled' if enabled else 'disabled'} for {name} by the "
              "distributor (audited with your reason; the partner sees it under Activity)")


@app.command("distributor-enable")
def distributor_enable(company: CompanyOpt, reason: ReasonOpt) -> None:
    """Turn a partner's API on without its Account Administrator: the distributor's action,
    audited as such with the reason."""
    _distributor_switch(company, reason, True)


@app.command("distributor-disable")
def distributor_disable(company: CompanyOpt, reason: ReasonOpt) -> None:
    """Turn a partner's API off without its Account Administrator (e.g. a leaked key, an ended
    contract): the distributor's action, audited as such with the reason."""
    _distributor_switch(company, reason, False)
