"""The operator's commands as a shell runs them: demo, then bill another month."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from billing_api.billing.models import Invoice, PriceLine


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"BILLING_API_DATABASE_URL": database_url, "NO_COLOR": "1", "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "billing_api", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_demo_then_bill_another_month_leaves_totals_that_add_up(
    engine: Engine, database_url: str
) -> None:
    demo = run_cli(
        database_url,
        "demo",
        "--customers",
        "12",
        "--months",
        "2",
        "--seed",
        "7",
        "--today",
        "2026-11-29",
    )
    assert demo.returncode == 0, demo.stderr
    assert "admin@northwind.example with password " in demo.stdout
    assert "price lines" in demo.stderr

    billed = run_cli(database_url, "bill", "--period", "2026-11", "--invoice-date", "2026-12-23")
    assert billed.returncode == 0, billed.stderr
    assert "production\t2026-11" in billed.stdout and "sandbox\t2026-11" in billed.stdout
    again = run_cli(database_url, "bill", "--period", "2026-11")
    assert again.stdout.count("already billed: nothing changed") == 2

    with Session(engine) as session:
        periods = set(session.scalars(select(Invoice.invoice_date).distinct()))
        assert len(periods) == 3
        for invoice in session.scalars(select(Invoice)):
            excl, vat = session.execute(
                select(func.sum(PriceLine.extended_price), func.sum(PriceLine.vat)).where(
                    PriceLine.invoice_id == invoice.id
                )
            ).one()
            assert (invoice.total_excluding_vat, invoice.total_vat) == (excl, vat)
        kinds = set(session.scalars(select(PriceLine.charge_type).distinct()))
        assert {"Cycle Fee", "Usage Fee"} <= kinds


def test_bad_period_is_a_clear_error_not_a_traceback(engine: Engine, database_url: str) -> None:
    result = run_cli(database_url, "bill", "--period", "2026-13")
    assert result.returncode != 0
    assert "YYYY-MM" in result.stderr and "Traceback" not in result.stderr


def test_demo_refuses_a_database_with_data(engine: Engine, database_url: str) -> None:
    assert run_cli(database_url, "demo", "--customers", "2", "--months", "1").returncode == 0
    second = run_cli(database_url, "demo", "--customers", "2", "--months", "1")
    assert second.returncode == 1 and "not empty" in second.stderr
