"""``billing-api webhooks``: a partner's endpoints (add prints the signing secret once),
their delivery log, resend, enable again."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated

import typer

from billing_api.access import audit, users
from billing_api.cli.context import (
    confirm_user,
    err,
    fail,
    password_for,
    settings,
    unit_of_work,
)
from billing_api.environments import Environment
from billing_api.webhooks import delivery, endpoints, outbox

app = typer.Typer(no_args_is_help=True, help="Webhook endpoints (docs/webhooks.md).")

CompanyOpt = Annotated[str, typer.Option("--company", help="Company id or exact name.")]
EnvironmentOpt = Annotated[Environment, typer.Option(help="The environment whose events.")]
AsOpt = Annotated[str | None, typer.Option(
    "--as", help="Act as this user of the company (must be its Account Administrator; their "
    "password with --password-stdin); default: the distributor's operator.")]
PasswordOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the --as user's password from standard input.")]


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else "-"


def _consent(company: str, as_: str | None, password_stdin: bool, action: str) -> None:
    """With ``--as``: that user's password, and they must be the Account Administrator; a
    refusal for either reason is a ``cli_denied`` audit row (written in its own transaction)."""
    if not as_:
        return
    confirm_user(company, as_, password_for(as_, password_stdin), action)
    with unit_of_work() as session:
        target = users.find_company(session, company)
        user = users.find_user(session, target, as_)
        if user.is_account_admin and user.is_active:
            return
        company_id, shown = target.id, user.email
    with unit_of_work(writer=True) as session:
        audit.record(session, audit.EventType.CLI_DENIED, company_id=company_id,
                     reason="not_account_admin", detail=f"{action} --as {shown}")
    fail(f"{shown} is not the Account Administrator: {action} refused; the attempt is in "
         "the audit log")


@app.command("add")
def add(company: CompanyOpt, environment: EnvironmentOpt,
        url: Annotated[str, typer.Argument(metavar="URL")],
        as_: AsOpt = None, password_stdin: PasswordOpt = False) -> None:
    """Register URL and print its signing secret, only the secret, on stdout (shown once)."""
    _consent(company, as_, password_stdin, "webhooks add")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        endpoint, secret = endpoints.add_endpoint(
            session, settings(), target, environment, url, actor=actor,
            resolve=delivery.resolve)
        summary = f"added {environment.value} webhook endpoint {endpoint.id} for {target.name}"
    err.print(summary)
    err.print("the signing secret below is shown once; store it in the receiver now")
    sys.stdout.write(secret + "\n")


@app.command("list")
def list_(company: CompanyOpt, environment: Annotated[
        Environment | None, typer.Option(help="Only this environment.")] = None) -> None:
    """ID, ENVIRONMENT, URL, STATUS, CREATED, DISABLED_REASON (tab-separated)."""
    with unit_of_work() as session:
        target = users.find_company(session, company)
        lines = ["\t".join((str(s.endpoint.id), s.endpoint.environment, s.endpoint.url,
                            s.status, _when(s.endpoint.created_at),
                            s.endpoint.disabled_reason or "-"))
                 for s in endpoints.list_endpoints(session, target)
                 if environment is None or s.endpoint.environment == environment.value]
    for line in lines:
        sys.stdout.write(line + "\n")


@app.command("remove")
def remove(company: CompanyOpt, environment: EnvironmentOpt,
           endpoint: Annotated[str, typer.Argument(metavar="ID_OR_URL")],
           as_: AsOpt = None, password_stdin: PasswordOpt = False) -> None:
    """Remove an endpoint with its undelivered messages and delivery log."""
    _consent(company, as_, password_stdin, "webhooks remove")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        found = endpoints.find_endpoint(session, target, environment.value, endpoint)
        url = found.url
        endpoints.remove_endpoint(session, target, found, actor=actor)
    err.print(f"removed webhook endpoint {url}")


@app.command("enable")
def enable(company: CompanyOpt, environment: EnvironmentOpt,
           endpoint: Annotated[str, typer.Argument(metavar="ID_OR_URL")],
           as_: AsOpt = None, password_stdin: PasswordOpt = False) -> None:
    """Enable a disabled endpoint again; its waiting messages are sent at once."""
    _consent(company, as_, password_stdin, "webhooks enable")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        found = endpoints.find_endpoint(session, target, environment.value, endpoint)
        endpoints.enable_endpoint(session, target, found, actor=actor)
        url = found.url
    err.print(f"enabled webhook endpoint {url}")


@app.command("log")
def log(company: CompanyOpt, environment: EnvironmentOpt,
        endpoint: Annotated[str, typer.Argument(metavar="ID_OR_URL")]) -> None:
    """The endpoint's newest messages and their attempts: MSG_ID, TYPE, CREATED, STATUS, then
    one indented ATTEMPTED, STATUS_CODE or ERROR, DURATION_MS line per attempt."""
    with unit_of_work() as session:
        target = users.find_company(session, company)
        found = endpoints.find_endpoint(session, target, environment.value, endpoint)
        lines: list[str] = []
        for entry in outbox.delivery_log(session, found):
            lines.append("\t".join((entry.message.msg_id, entry.message.event_type,
                                    _when(entry.message.created_at), entry.status)))
            lines.extend("\t" + "\t".join((_when(a.attempted_at),
                                           str(a.status_code or a.error), str(a.duration_ms)))
                         for a in entry.attempts)
    for line in lines:
        sys.stdout.write(line + "\n")


@app.command("resend")
def resend(company: CompanyOpt, msg_id: Annotated[str, typer.Argument(metavar="MSG_ID")],
           as_: AsOpt = None, password_stdin: PasswordOpt = False) -> None:
    """Send a message again now (same webhook-id), with a fresh retry window."""
    _consent(company, as_, password_stdin, "webhooks resend")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        actor = users.find_user(session, target, as_) if as_ else None
        message = outbox.own_message(session, target, msg_id)
        outbox.resend(session, target, message, actor=actor)
    err.print(f"{msg_id} will be sent again")
