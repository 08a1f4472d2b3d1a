"""Two billing runs of the same period at the same time leave one set of invoices."""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.billing.models import BillingRun, Invoice, PriceLine
from billing_api.billing.run import RunSummary, bill_partner
from billing_api.db import transaction
from billing_api.errors import Conflict

from . import factories as f


def test_concurrent_runs_of_one_period_bill_it_once(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        f.distributor(session)
        partner = f.partner(session)
        _, period, rate = f.plan(session, f.vendor(session))
        for _ in range(3):
            f.subscription(session, f.customer(session, partner), period, rate, amount=Decimal(2))
        partner_id = partner.id

    first_started = threading.Event()
    outcomes: dict[str, RunSummary | Exception] = {}

    def slow_progress(_done: int, _total: int) -> None:
        first_started.set()
        time.sleep(1.0)  # keep the first run's transaction open while the second one tries

    def run(name: str, progress: object) -> None:
        try:
            with transaction(factory, writer=True) as session:
                outcomes[name] = bill_partner(
                    session,
                    partner_id,
                    "production",
                    "2026-10",
                    dt.date(2026, 11, 23),
                    progress=progress,
                )  # type: ignore[arg-type]
        except Exception as exc:
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", slow_progress))
    first.start()
    assert first_started.wait(10)
    second = threading.Thread(target=run, args=("second", None))
    second.start()
    first.join(30)
    second.join(30)

    assert isinstance(outcomes["first"], RunSummary) and outcomes["first"].lines == 6
    later = outcomes["second"]
    # SQLite queues the second writer until the first commits; PostgreSQL refuses it at once.
    assert (isinstance(later, RunSummary) and later.already_billed) or (
        isinstance(later, Conflict) and later.code == "run_in_progress"
    ), later
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(BillingRun)) == 1
        assert session.scalar(select(func.count()).select_from(Invoice)) == 4
        assert session.scalar(select(func.count()).select_from(PriceLine)) == 6
