"""audit: aggregated refusals (a count and the aggregate's key)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 11:30:00.000000

Refused API calls and failed logins become one row per event, company, key, client address,
reason, detail and minute with a ``count`` (access/audit.py ``RefusalLog``); existing rows
count once. ``aggregate_key`` is the upsert target, null for every other event.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('count', sa.Integer(), server_default=sa.text('1'),
                                      nullable=False))
        batch_op.add_column(sa.Column('aggregate_key', sa.String(length=64), nullable=True))
        batch_op.create_index('uq_audit_events_aggregate_key', ['aggregate_key'], unique=True)


def downgrade() -> None:
    # Down again, an aggregated row stays one row: its count is lost.
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('uq_audit_events_aggregate_key')
        batch_op.drop_column('aggregate_key')
        batch_op.drop_column('count')
