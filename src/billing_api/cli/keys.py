"""``billing-api keys``: create (prints only the secret on stdout), list, revoke."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from billing_api.access import keys, users
from billing_api.cli.context import (
    confirm_user,
    err,
    fail,
    password_for,
    settings,
    unit_of_work,
)
from billing_api.environments import Environment

app = typer.Typer(no_args_is_help=True, help="API keys.")

CompanyOpt = Annotated[str, typer.Option("--company", help="Company id or exact name.")]
AsOpt = Annotated[str | None, typer.Option(
    "--as", help="Act as this user of the company (needs API permission and their password "
    "with --password-stdin); default: the distributor's operator.")]
PasswordOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the --as user's password from standard input.")]


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


@app.command("create")
def create(
    company: CompanyOpt,
    environment: Annotated[Environment, typer.Option(help="The data the key will see.")],
    name: Annotated[str, typer.Option(help="A name to recognise the key by.")],
    expires: Annotated[str | None, typer.Option(
        help="Last day the key works, YYYY-MM-DD (end of day, operator's timezone).")] = None,
    as_: AsOpt = None,
    password_stdin: PasswordOpt = False,
) -> None:
    """Create a key and print its secret, only the secret, on stdout (shown once)."""
    expires_on = None
    if expires is not None:
        try:
            expires_on = dt.date.fromisoformat(expires)
        except ValueError:
            fail(f"--expires {expires!r} is not a date of the form YYYY-MM-DD")
    if as_:
        confirm_user(company, as_, password_for(as_, password_stdin), "keys create")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        key, secret = keys.create_key(session, settings(), target, environment=environment,
                                      name=name, expires_on=expires_on, actor=actor)
        summary = (f"created {environment.value} key {key.id} {key.display_prefix}… "
                   f"for {target.name}")
    err.print(summary)
    err.print("the secret below is shown once; store it now")
    sys.stdout.write(secret + "\n")


@app.command("list")
def list_(company: CompanyOpt) -> None:
    """ID, NAME, ENVIRONMENT, PREFIX, CREATED, EXPIRES, LAST_USED, STATUS (tab-separated)."""
    with unit_of_work() as session:
        target = users.find_company(session, company)
        lines = [
            "\t".join((str(k.id), k.name, k.environment, k.display_prefix, _when(k.created_at),
                       _when(k.expires_at), _when(k.last_used_at), keys.key_status(k)))
            for k in keys.list_keys(session, target)
        ]
    for line in lines:
        sys.stdout.write(line + "\n")


@app.command("revoke")
def revoke(company: CompanyOpt, key_id: Annotated[int, typer.Argument(metavar="ID")],
           as_: AsOpt = None, password_stdin: PasswordOpt = False) -> None:
    """Revoke a key: it and every download link made with it stop working at once."""
    if as_:
        confirm_user(company, as_, password_for(as_, password_stdin), "keys revoke")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        key = keys.revoke_key(session, target, key_id, actor=actor)
        prefix = key.display_prefix
    err.print(f"revoked key {key_id} ({prefix}…)")
