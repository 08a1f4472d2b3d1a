"""What every command shares: settings, the engine, one transaction per command, errors."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from billing_api import migrate
from billing_api.access import audit, passwords, users
from billing_api.db import make_engine, make_session_factory, transaction
from billing_api.errors import BillingError
from billing_api.settings import ConfigurationError, Settings, load_settings

# Human messages go to stderr so that stdout carries only what scripts capture.
err = Console(stderr=True)


def emit(line: str) -> None:
    """One line of a command's result on stdout, exactly as given (tabs stay tabs)."""
    print(line, flush=True)


# A configuration the command cannot run with exits 2, like a usage error: the operator has
# to change the environment, not retry.
CONFIG_EXIT = 2


@cache
def settings() -> Settings:
    """The settings, built (and checked) once per command. A bad or missing value, including a
    production run without ``BILLING_API_SECRET_KEY``, ends the command here with one line on
    stderr and exit 2, before anything is logged or written."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        fail(f"configuration: {exc}", CONFIG_EXIT)
        raise  # unreachable: fail() exits


@cache
def engine() -> Engine:
    return make_engine(settings().database_url)


def database_label() -> str:
    """The database URL as it may be shown: without its password."""
    return engine().url.render_as_string(hide_password=True)


def schema_revision() -> str | None:
    """The database's migration revision (None: empty). An unreachable database is one line
    on stderr and exit 2, not a traceback."""
    try:
        return migrate.current_revision(engine())
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        fail(f"configuration: cannot open the database {database_label()}: {reason}",
             CONFIG_EXIT)
        raise  # unreachable: fail() exits


def ensure_schema() -> None:
    """Refuse to work on a database whose schema is behind, with the command that fixes it."""
    if schema_revision() != migrate.head_revision(engine()):
        fail("the database schema is not up to date: run `billing-api db upgrade` first")


@contextmanager
def unit_of_work(*, writer: bool = False) -> Iterator[Session]:
    """One transaction for the command; a domain error becomes a clear message and exit 1."""
    ensure_schema()
    try:
        with transaction(make_session_factory(engine()), writer=writer) as session:
            yield session
    except BillingError as exc:
        fail(exc.message)


def fail(message: str, code: int = 1) -> None:
    # The message may hold user data: escape it so rich does not read it as markup.
    # soft_wrap: one message is one line, whatever the terminal width (scripts grep it).
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def read_secret_from_stdin() -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        fail("--password-stdin was given but standard input was empty")
    return value


def password_for(email: str, password_stdin: bool, hint: str = "") -> str:
    """The password of the user a command acts ``--as``, read from stdin. Without
    ``--password-stdin`` the command is refused: naming a user is not acting as them."""
    if not password_stdin:
        fail(f"--as {email} acts with that user's authority: pipe their password in and add "
             f"--password-stdin{hint}")
    return read_secret_from_stdin()


def confirm_user(company: str, email: str, password: str, action: str) -> None:
    """Go on only when ``password`` is ``email``'s (an active user of ``company``). A wrong one
    ends the command with exit 1 after a ``cli_denied`` audit row, written in a transaction of
    its own so that the refusal is on record; the action itself then runs in a new one."""
    with unit_of_work() as session:
        target = users.find_company(session, company)
        user = users.find_user(session, target, email)
        if user.is_active and passwords.verify_password(user.password_hash, password):
            return
        company_id, shown = target.id, user.email
    with unit_of_work(writer=True) as session:
        audit.record(session, audit.EventType.CLI_DENIED, company_id=company_id,
                     reason="wrong_password", detail=f"{action} --as {shown}")
    fail(f"wrong password for {shown} (or the user is inactive): {action} refused; "
         "the attempt is in the audit log")
