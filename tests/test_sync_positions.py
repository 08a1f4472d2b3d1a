"""Sync positions number a partner's runs in commit order and are never given twice; cursors
name a position for one partner and environment."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from billing_api.billing.models import BillingRun
from billing_api.billing.positions import current_position
from billing_api.billing.run import bill_partner
from billing_api.billing.undo import undo_run
from billing_api.db import transaction
from billing_api.sync import cursor

from . import factories as f


def _world(factory: sessionmaker[Session]) -> int:
    with transaction(factory) as session:
        f.distributor(session)
        partner = f.partner(session)
        _, period, rate = f.plan(session, f.vendor(session))
        f.subscription(session, f.customer(session, partner), period, rate, amount=Decimal(2))
        return partner.id


def _bill(factory: sessionmaker[Session], partner_id: int, period: str,
          environment: str = "production") -> int | None:
    year, month = (int(x) for x in period.split("-"))
    with transaction(factory, writer=True) as session:
        summary = bill_partner(session, partner_id, environment, period,
                               dt.date(year, month, 28))
        return summary.sync_position


def test_positions_count_up_per_partner_and_environment(factory: sessionmaker[Session]) -> None:
    partner_id = _world(factory)
    assert [_bill(factory, partner_id, p) for p in ("2026-08", "2026-09")] == [1, 2]
    assert _bill(factory, partner_id, "2026-09", "sandbox") == 1
    with factory() as session:
        assert current_position(session, partner_id, "production") == 2
        assert current_position(session, partner_id, "sandbox") == 1
        finished = session.scalars(select(BillingRun.finished_at)).all()
        assert all(stamp is not None for stamp in finished)


def test_undoing_the_newest_run_never_gives_its_position_again(
    factory: sessionmaker[Session],
) -> None:
    partner_id = _world(factory)
    _bill(factory, partner_id, "2026-08")
    assert _bill(factory, partner_id, "2026-09") == 2
    with transaction(factory, writer=True) as session:
        run = session.scalars(select(BillingRun).where(BillingRun.period == "2026-09")).one()
        undo_run(session, run)
    # A client whose cursor says 2 would otherwise never see the period billed again.
    assert _bill(factory, partner_id, "2026-09") == 3


def test_a_run_that_commits_later_gets_the_later_position(
    factory: sessionmaker[Session], backend: str,
) -> None:
    """The position is taken last and its row stays locked until commit: a run that ends
    while another holds the counter waits, and comes after it."""
    partner_id = _world(factory)
    first_has_position = threading.Event()
    release_first = threading.Event()
    positions: dict[str, int | None] = {}

    def first() -> None:
        with transaction(factory, writer=True) as session:
            summary = bill_partner(session, partner_id, "production", "2026-08",
                                   dt.date(2026, 8, 28))
            positions["first"] = summary.sync_position
            first_has_position.set()
            release_first.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_has_position.wait(30)
    second = threading.Thread(
        target=lambda: positions.__setitem__("second", _bill(factory, partner_id, "2026-09")))
    second.start()
    second.join(0.5)
    assert second.is_alive(), "the second run must wait for the first to commit"
    release_first.set()
    thread.join(30)
    second.join(30)
    assert positions == {"first": 1, "second": 2}


def test_a_cursor_names_its_position_for_one_partner_and_environment() -> None:
    text = cursor.encode(7, "sandbox", 12)
    assert cursor.decode(text, 7, "sandbox").position == 12
    assert text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    for damaged in (text[:-1], text + "A", text[:5] + ("B" if text[5] != "B" else "C")
                    + text[6:], "12", ""):
        with pytest.raises(cursor.InvalidCursor, match=r"damaged|not a cursor"):
            cursor.decode(damaged, 7, "sandbox")
    for partner, environment in ((8, "sandbox"), (7, "production")):
        with pytest.raises(cursor.InvalidCursor, match="another account or environment"):
            cursor.decode(text, partner, environment)
