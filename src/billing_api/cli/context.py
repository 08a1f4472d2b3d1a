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
from sqlalchemy.orm import Session

from billing_api import migrate
from billing_api.db import make_engine, make_session_factory, transaction
from billing_api.errors import BillingError
from billing_api.settings import Settings

# Human messages go to stderr so that stdout carries only what scripts capture.
err = Console(stderr=True)


def emit(line: str) -> None:
    """One line of a command's result on stdout, exactly as given (tabs stay tabs)."""
    print(line, flush=True)


@cache
def settings() -> Settings:
    return Settings()


@cache
def engine() -> Engine:
    return make_engine(settings().database_url)


def ensure_schema() -> None:
    """Refuse to work on a database whose schema is behind, with the command that fixes it."""
    if not migrate.is_up_to_date(engine()):
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
    err.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(code)


def read_secret_from_stdin() -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        fail("--password-stdin was given but standard input was empty")
    return value
