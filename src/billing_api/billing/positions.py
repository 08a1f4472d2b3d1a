"""Sync positions: a partner's billing runs per environment, numbered in commit order.

A cursor (``sync/cursor.py``) says "every run up to position N is known"; for that to lose
nothing, a run must never become visible after a run with a higher position. Row ids do not
promise it (two runs of one partner, different periods, may commit in either order), so the
position is taken at the very end of the run by incrementing the partner's ``sync_positions``
row: its row lock is held until the run commits, so positions become visible in order (on
SQLite the run holds the database's one write lock anyway). The counter never goes back, even
when the newest run is undone, so no position is given twice.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billing_api.billing.models import BillingRun, SyncPosition
from billing_api.db import utcnow


def assign_sync_position(session: Session, run_id: int, partner_id: int,
                         environment: str) -> int:
    """Give the run the next position of its partner and environment and stamp its end.
    Call it last in the run's transaction: the counter's row stays locked until commit."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(SyncPosition)
        .values(partner_id=partner_id, environment=environment, last_position=1)
        .on_conflict_do_update(index_elements=["partner_id", "environment"],
                               set_={"last_position": SyncPosition.last_position + 1})
        .returning(SyncPosition.last_position)
    )
    position = int(session.execute(statement).scalar_one())
    session.execute(update(BillingRun).where(BillingRun.id == run_id)
                    .values(sync_position=position, finished_at=utcnow()))
    return position


def current_position(session: Session, partner_id: int, environment: str) -> int:
    """The highest position visible in this transaction (0 before the first run)."""
    return session.scalar(
        select(func.max(BillingRun.sync_position)).where(
            BillingRun.partner_id == partner_id, BillingRun.environment == environment)
    ) or 0
