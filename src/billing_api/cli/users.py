"""``billing-api users``: a company's users and their API permission."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from billing_api.access import permissions, sso, users
from billing_api.cli.companies import one_time_password
from billing_api.cli.context import confirm_user, emit, err, password_for, unit_of_work

app = typer.Typer(no_args_is_help=True, help="Users of partner companies.")

CompanyOpt = Annotated[str, typer.Option("--company", help="Company id or exact name.")]
EmailOpt = Annotated[str, typer.Option("--email", help="The user's e-mail.")]
AsOpt = Annotated[str, typer.Option("--as", help="E-mail of the company's Account Administrator.")]
AdminPasswordOpt = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the Account Administrator's password from standard input "
    "(required).")]


@app.command("add")
def add(
    company: CompanyOpt,
    email: EmailOpt,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input.")] = False,
) -> None:
    """Add a user; prints a one-time password on stdout unless --password-stdin is given
    (a printed one must be changed at the first portal login)."""
    password, generated = one_time_password(password_stdin)
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        user = users.add_user(session, target, email, password,
                              must_change_password=generated)
        summary = f"added {user.email} to {target.name}" + (
            " as its Account Administrator" if user.is_account_admin else "")
    err.print(summary)
    if generated:
        err.print("one-time password (shown once):")
        sys.stdout.write(password + "\n")


def _set_permission(company: str, email: str, admin_email: str, password_stdin: bool,
                    granted: bool) -> None:
    confirm_user(company, admin_email, password_for(admin_email, password_stdin),
                 "users grant-api" if granted else "users revoke-api")
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        admin = users.find_user(session, target, admin_email)
        user = users.find_user(session, target, email)
        permissions.set_api_permission(session, target, admin, user, granted)
    err.print(f"API permission {'granted to' if granted else 'withdrawn from'} {email}")


@app.command("grant-api")
def grant_api(company: CompanyOpt, email: EmailOpt, as_: AsOpt,
              password_stdin: AdminPasswordOpt = False) -> None:
    """Grant a user API permission (they can then create keys). Administrator only, with
    their password on stdin."""
    _set_permission(company, email, as_, password_stdin, True)


@app.command("revoke-api")
def revoke_api(company: CompanyOpt, email: EmailOpt, as_: AsOpt,
               password_stdin: AdminPasswordOpt = False) -> None:
    """Withdraw a user's API permission. Administrator only, with their password on stdin."""
    _set_permission(company, email, as_, password_stdin, False)


@app.command("reset-password")
def reset_password(
    company: CompanyOpt,
    email: EmailOpt,
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from standard input.")] = False,
) -> None:
    """Set a new password and sign the user out everywhere; prints a one-time password on
    stdout (to be changed at the next portal login) unless --password-stdin is given."""
    password, generated = one_time_password(password_stdin)
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        users.reset_password(session, users.find_user(session, target, email), password,
                             must_change=generated)
    err.print(f"new password set for {email}; every portal session of theirs is ended")
    if generated:
        err.print("one-time password (shown once):")
        sys.stdout.write(password + "\n")


@app.command("deactivate")
def deactivate(company: CompanyOpt, email: EmailOpt) -> None:
    """Deactivate a user, end their portal sessions and revoke the keys they created (never
    the last administrator)."""
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        revoked = permissions.deactivate_user(session, target, users.find_user(session, target,
                                                                                email))
        count = len(revoked)
    err.print(f"deactivated {email} and ended their portal sessions; revoked {count} key(s) "
              "they created")


# --- single sign-on: the provider identity a user signs in with (access/sso.py) ---------------

SubjectOpt = Annotated[str, typer.Option(
    "--subject", help="The provider's `sub` for this person (from the identity provider).")]


@app.command("link-identity")
def link_identity(company: CompanyOpt, email: EmailOpt, subject: SubjectOpt) -> None:
    """Link a user to their identity at the distributor's identity provider (its `sub`): they
    then sign in through it as this user. Usually not needed: the first sign-in with a
    verified e-mail links by itself."""
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        sso.link(session, users.find_user(session, target, email), subject)
    err.print(f"{email} is linked to sub {subject.strip()}")


@app.command("unlink-identity")
def unlink_identity(company: CompanyOpt, email: EmailOpt) -> None:
    """Take a user's provider identity off and end the portal sessions it started (the next
    sign-in is matched by verified e-mail again; to keep someone out, deactivate them)."""
    with unit_of_work(writer=True) as session:
        target = users.find_company(session, company)
        found = sso.unlink(session, users.find_user(session, target, email))
    err.print(f"{email}'s provider identity is unlinked and its sessions ended" if found
              else f"{email} has no provider identity")


@app.command("identities")
def identities(company: Annotated[str | None, typer.Option(
        "--company", help="Only this company (id or exact name).")] = None) -> None:
    """Users linked to a provider identity: company, e-mail, sub, linked at (UTC), active;
    tab-separated, one line each."""
    with unit_of_work() as session:
        target = users.find_company(session, company) if company else None
        rows = sso.linked_users(session, target)
    for row in rows:
        linked = row.linked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if row.linked_at else ""
        emit("\t".join((row.company, row.email, row.subject, linked,
                        "active" if row.is_active else "inactive")))
