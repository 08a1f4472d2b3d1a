"""The monthly run as a timer runs it: ``bill --period previous``, exit 0/3/1, and ``unbill``.

The CLI runs as a subprocess (``python -m billing_api``), exactly as systemd would start it;
the undo's refusals are tried with a real download through the API (it stamps the key).
"""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.access import keys, permissions, whitelist
from billing_api.access.models import Company, User
from billing_api.app import create_app
from billing_api.billing.models import BillingRun, Invoice, InvoiceSequence, PriceLine
from billing_api.billing.run import bill_partner
from billing_api.billing.undo import runs_of_period, undo_run
from billing_api.cli.bill import EXIT_FAILED, EXIT_NOTHING_TO_DO, previous_period
from billing_api.db import transaction
from billing_api.demo.generator import ADMIN_EMAIL, build_demo
from billing_api.environments import Environment
from billing_api.errors import Conflict
from billing_api.settings import Settings
from tests import factories
from tests.http_server import serve
from tests.test_cli_billing import run_cli

D = factories.D


def bill_cli(database_url: str, *args: str) -> tuple[int, str, str]:
    result = run_cli(database_url, *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, " ".join(result.stderr.split())


def state(engine: Engine) -> tuple[int, int, int, list[tuple[int, str, int]]]:
    """Runs, invoices, lines and every invoice-number sequence."""
    with Session(engine) as session:
        count = [session.scalar(select(func.count()).select_from(t))
                 for t in (BillingRun, Invoice, PriceLine)]
        sequences = session.execute(
            select(InvoiceSequence.sender_company_id, InvoiceSequence.environment,
                   InvoiceSequence.last_number).order_by(InvoiceSequence.sender_company_id,
                                                         InvoiceSequence.environment)).all()
    return (int(count[0] or 0), int(count[1] or 0), int(count[2] or 0),
            [tuple(row) for row in sequences])  # type: ignore[misc]


def numbers(engine: Engine, period_run_ids: list[int]) -> list[str]:
    with Session(engine) as session:
        return sorted(session.scalars(select(Invoice.invoice_number)
                                      .where(Invoice.billing_run_id.in_(period_run_ids))))


def demo_before_previous_month(factory: sessionmaker[Session], settings: Settings) -> str:
    """Demo data billed up to the month before the previous one; returns the previous one."""
    today = settings.today()
    previous = previous_period(today)
    build_demo(factory, customers=6, months=2, today=dt.date.fromisoformat(previous + "-01"))
    return previous


def test_previous_is_the_last_complete_month() -> None:
    assert previous_period(dt.date(2026, 12, 1)) == "2026-11"
    assert previous_period(dt.date(2026, 12, 31)) == "2026-11"
    assert previous_period(dt.date(2027, 1, 1)) == "2026-12"
    assert previous_period(dt.date(2024, 3, 1)) == "2024-02"


def test_bill_previous_then_again_exit_0_then_3(
        engine: Engine, factory: sessionmaker[Session], settings: Settings,
        database_url: str) -> None:
    previous = demo_before_previous_month(factory, settings)
    before = state(engine)
    code, out, err = bill_cli(database_url, "bill", "--period", "previous")
    assert code == 0, err
    assert f"production\t{previous}\t" in out and f"sandbox\t{previous}\t" in out
    with Session(engine) as session:
        runs = session.execute(select(BillingRun.period, BillingRun.invoice_date)
                               .where(BillingRun.period == previous)).all()
    # The documented rule: the invoice date is the day the run happens, distributor's time.
    assert sorted(runs) == [(previous, settings.today())] * 2
    billed = state(engine)
    assert billed[1] > before[1]

    code, out, _ = bill_cli(database_url, "bill", "--period", "previous")
    assert code == EXIT_NOTHING_TO_DO == 3
    assert out.count("already billed: nothing changed") == 2
    assert state(engine) == billed


def test_a_failed_run_exits_1_and_no_partners_is_nothing_to_do(
        engine: Engine, database_url: str) -> None:
    code, _, err = bill_cli(database_url, "bill", "--period", "previous")
    assert code == 3 and "no partners yet" in err
    created = run_cli(database_url, "companies", "create", "--name", "Lonely Partner BV",
                      "--admin-email", "admin@lonely.example")
    assert created.returncode == 0, created.stderr
    # No distributor: each run fails with a clear message, none leaves anything behind.
    code, out, err = bill_cli(database_url, "bill", "--period", "2026-11")
    assert code == EXIT_FAILED == 1
    assert err.count("no distributor company exists yet") == 2 and "2 run(s) failed" in err
    assert out == "" and state(engine)[:3] == (0, 0, 0)
    code, _, _ = bill_cli(database_url, "bill", "--period", "2026-13")
    assert code == 1


def open_api(factory: sessionmaker[Session], settings: Settings) -> str:
    with transaction(factory) as session:
        admin = session.scalars(select(User).where(User.email == ADMIN_EMAIL)).one()
        company = session.get_one(Company, admin.company_id)
        permissions.set_api_enabled(session, company, admin, True)
        whitelist.add_entry(session, company, "127.0.0.1")
        _, secret = keys.create_key(session, settings, company,
                                    environment=Environment.PRODUCTION, name="erp",
                                    actor=admin)
    return secret


def test_unbill_undoes_a_run_nobody_downloaded_and_the_rerun_is_identical(
        engine: Engine, factory: sessionmaker[Session], settings: Settings,
        database_url: str) -> None:
    previous = demo_before_previous_month(factory, settings)
    open_api(factory, settings)  # a key exists, but nobody has used it
    before = state(engine)
    assert bill_cli(database_url, "bill", "--period", previous, "--invoice-date",
                    "2031-01-02")[0] == 0
    with Session(engine) as session:
        first_ids = list(session.scalars(select(BillingRun.id)
                                         .where(BillingRun.period == previous)))
    first = numbers(engine, first_ids)
    # The earlier period cannot go: the previous month was billed on top of it.
    code, _, err = bill_cli(database_url, "unbill", "--period",
                            previous_period(dt.date.fromisoformat(previous + "-01")))
    assert code == 1 and "undo that run first" in err

    code, out, err = bill_cli(database_url, "unbill", "--period", "previous")
    assert code == 0, err
    assert out.count("undone:") == 2
    assert state(engine) == before  # runs, invoices, lines and the number sequences
    code, _, _ = bill_cli(database_url, "unbill", "--period", "previous")
    assert code == 3

    assert bill_cli(database_url, "bill", "--period", "previous")[0] == 0
    with Session(engine) as session:
        again_ids = list(session.scalars(select(BillingRun.id)
                                         .where(BillingRun.period == previous)))
    assert numbers(engine, again_ids) == first  # gap-free: the same numbers again


def test_unbill_refuses_after_a_download_and_changes_nothing(
        engine: Engine, factory: sessionmaker[Session], settings: Settings,
        database_url: str) -> None:
    previous = demo_before_previous_month(factory, settings)
    secret = open_api(factory, settings)
    assert bill_cli(database_url, "bill", "--period", previous)[0] == 0
    billed = state(engine)
    app_settings = settings.model_copy(update={"rate_limit_per_minute": 1000})
    with serve(create_app(app_settings)) as base:
        answer = httpx.get(base + "/api/v4/invoices", headers={"X-Api-Key": secret}, timeout=30)
    assert answer.status_code == 200

    # Both environments asked for: sandbox (never downloaded) would go, production may not,
    # so neither does.
    code, out, err = bill_cli(database_url, "unbill", "--period", previous)
    assert code == 1 and out == ""
    assert "may have been downloaded" in err and "production" in err
    assert state(engine) == billed
    # The sandbox run alone can go: no sandbox key was used.
    code, out, _ = bill_cli(database_url, "unbill", "--period", previous,
                            "--environment", "sandbox")
    assert code == 0 and "sandbox" in out and "production" not in out


def test_undo_keeps_a_shared_sequence_gap_free(
        factory: sessionmaker[Session], engine: Engine) -> None:
    """The distributor numbers every partner's purchase invoices from one sequence: a run of
    one partner followed by another's cannot go alone, only together (newest first)."""
    with transaction(factory) as session:
        factories.distributor(session)
        _, period, rate = factories.plan(session, factories.vendor(session))
        partners = [factories.partner(session) for _ in range(2)]
        for p in partners:
            factories.subscription(session, factories.customer(session, p), period, rate,
                                   amount=D(2), start=dt.date(2026, 10, 1))
        partner_ids = [p.id for p in partners]
    for partner_id in partner_ids:
        with transaction(factory, writer=True) as session:
            bill_partner(session, partner_id, Environment.PRODUCTION, "2026-10",
                         dt.date(2026, 11, 1))
    with pytest.raises(Conflict) as refused, transaction(factory, writer=True) as session:
        first = runs_of_period(session, "2026-10", ["production"], partner_ids[:1])
        undo_run(session, first[0])
    assert refused.value.code == "numbers_issued_after"
    with transaction(factory, writer=True) as session:
        runs = runs_of_period(session, "2026-10", ["production"], partner_ids)
        assert [r.partner_id for r in runs] == partner_ids[::-1]
        undone = [undo_run(session, run) for run in runs]
    assert [u.invoices for u in undone] == [2, 2]  # a purchase and a customer invoice each
    assert state(engine)[:3] == (0, 0, 0)
    assert all(last == 0 for *_, last in state(engine)[3])

