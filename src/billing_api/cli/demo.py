"""``billing-api demo``: fill an empty database with demo data and bill it."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated

import typer
from sqlalchemy import func, select

from billing_api import migrate
from billing_api.access import users
from billing_api.access.models import Company, User
from billing_api.access.passwords import generate_password
from billing_api.cli.context import (
    emit,
    engine,
    err,
    fail,
    schema_revision,
    settings,
    unit_of_work,
)
from billing_api.db import make_session_factory
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.errors import BillingError


def demo(
    customers: Annotated[int, typer.Option(min=1, help="Customers per environment.")] = 40,
    months: Annotated[int, typer.Option(min=1, max=36, help="Completed months to bill.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 1,
    today: Annotated[
        str | None, typer.Option(help="Pretend today is YYYY-MM-DD (for reproducible data).")
    ] = None,
    if_empty: Annotated[
        bool,
        typer.Option(
            "--if-empty",
            help="On a database that has data already, only set "
            "a new password for the demo administrator and print the login.",
        ),
    ] = False,
) -> None:
    """Create demo data (distributor, partner, customers, subscriptions) and bill it.

    Prints the partner's id, its Account Administrator's e-mail and a generated password.
    """
    if schema_revision() is None:
        migrate.upgrade(engine())
    if if_empty and _has_data():
        _reset_demo_login()
        return
    day = dt.date.fromisoformat(today) if today else settings().today()
    started = time.perf_counter()
    try:
        result = build_demo(
            make_session_factory(engine()),
            customers=customers,
            months=months,
            seed=seed,
            today=day,
            progress=lambda m: err.print(f"… {m}"),
        )
    except BillingError as exc:
        fail(exc.message)
        raise
    lines = sum(r.lines for r in result.runs)
    err.print(
        f"demo data ready in {time.perf_counter() - started:.1f} s: "
        f"{sum(r.invoices for r in result.runs)} invoices, {lines} price lines"
    )
    _print_login(result.partner_id, result.admin_email, result.admin_password)


def _has_data() -> bool:
    with unit_of_work() as session:
        return bool(session.scalar(select(func.count()).select_from(Company)))


def _reset_demo_login() -> None:
    password = generate_password()
    with unit_of_work() as session:
        user = session.scalar(select(User).where(User.email == ADMIN_EMAIL))
        if user is None:
            err.print("the database has data but no demo administrator: nothing changed")
            return
        # Printed: a one-time password, and the sessions of the old one end.
        users.reset_password(session, user, password, must_change=True)
        partner_id = user.company_id
    err.print("demo data exists already: a new password was set for the demo administrator")
    _print_login(partner_id, ADMIN_EMAIL, password)


def _print_login(partner_id: int, email: str, password: str) -> None:
    emit(f"partner id: {partner_id}")
    # The port is serve's to choose: it prints the portal's address when it starts.
    emit(f"portal login: log in as {email} with password {password} "
         "(one-time: the portal asks for your own at the first login)")
