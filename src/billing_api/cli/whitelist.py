"""``billing-api whitelist``: the addresses allowed to call a partner's API."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from billing_api.access import users, whitelist
from billing_api.cli.context import confirm_user, err, password_for, unit_of_work

app = typer.Typer(no_args_is_help=True, help="IP whitelist (empty: every API call refused).")

CompanyOpt = Annotated[str, typer.Option("--company", help="Company id or exact name.")]
AsOpt = Annotated[str | None, typer.Option(
    "--as", help="Act as this user of the company (needs API permission and their password "
    "with --password-stdin); default: the distributor's operator.")]
PasswordOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the --as user's password from standard input.")]


@app.command("add")
def add(
    company: CompanyOpt,
    address: Annotated[str, typer.Argument(metavar="ADDRESS_OR_CIDR")],
    description: Annotated[str, typer.Option(help="What this address is.")] = "",
    allow_any: Annotated[bool, typer.Option(
        "--allow-any", help="Allow 0.0.0.0/0 or ::/0 (every address).")] = False,
    as_: AsOpt = None,
    password_stdin: PasswordOpt = False,
) -> None:
    """Whitelist an IPv4/IPv6 address or CIDR range (host bits set are refused)."""
    if as_:
        confirm_user(company, as_, password_for(as_, password_stdin), "whitelist add")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        entry = whitelist.add_entry(session, target, address, description=description,
                                    allow_any=allow_any, actor=actor)
        entry_id, network = entry.id, entry.network
    err.print(f"whitelisted {network} (entry {entry_id})")


@app.command("list")
def list_(company: CompanyOpt) -> None:
    """One ID<TAB>NETWORK<TAB>DESCRIPTION line per entry."""
    with unit_of_work() as session:
        target = users.find_company(session, company)
        lines = [f"{e.id}\t{e.network}\t{e.description}"
                 for e in whitelist.list_entries(session, target)]
    for line in lines:
        sys.stdout.write(line + "\n")


@app.command("remove")
def remove(company: CompanyOpt, entry_id: Annotated[int, typer.Argument(metavar="ID")],
           as_: AsOpt = None, password_stdin: PasswordOpt = False) -> None:
    """Remove one entry (removing the last one shuts the API for this partner)."""
    if as_:
        confirm_user(company, as_, password_for(as_, password_stdin), "whitelist remove")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        entry = whitelist.remove_entry(session, target, entry_id, actor=actor)
        network = entry.network
        left = len(whitelist.list_entries(session, target))
    err.print(f"removed {network}" + ("" if left else
              "; the whitelist is now empty: every API call will be refused"))
