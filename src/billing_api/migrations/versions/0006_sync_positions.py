"""sync positions: billing runs numbered per partner and environment in commit order

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 14:10:00

Sync cursors and webhooks name "the runs after position N" (billing/positions.py). Existing
runs are numbered in id order, which was their commit order as far as anyone can now tell;
their end time is unknown, so ``finished_at`` takes their start. The counters start at each
partner's highest position.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_api.db

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('billing_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sync_position', sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column('finished_at', billing_api.db.UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE billing_runs SET finished_at = started_at, sync_position = ("
        "SELECT count(*) FROM billing_runs AS earlier "
        "WHERE earlier.partner_id = billing_runs.partner_id "
        "AND earlier.environment = billing_runs.environment "
        "AND earlier.id <= billing_runs.id)"
    )
    with op.batch_alter_table('billing_runs', schema=None) as batch_op:
        batch_op.create_unique_constraint(
            'uq_billing_runs_sync_position', ['partner_id', 'environment', 'sync_position'])
    op.create_table(
        'sync_positions',
        sa.Column('partner_id', sa.Integer(), nullable=False),
        sa.Column('environment', sa.String(length=10), nullable=False),
        sa.Column('last_position', sa.Integer(), nullable=False),
        sa.CheckConstraint("environment IN ('production', 'sandbox')",
                           name=op.f('ck_sync_positions_environment')),
        sa.ForeignKeyConstraint(['partner_id'], ['companies.id'],
                                name=op.f('fk_sync_positions_partner_id_companies')),
        sa.PrimaryKeyConstraint('partner_id', 'environment', name=op.f('pk_sync_positions')),
    )
    op.execute(
        "INSERT INTO sync_positions (partner_id, environment, last_position) "
        "SELECT partner_id, environment, max(sync_position) FROM billing_runs "
        "GROUP BY partner_id, environment"
    )


def downgrade() -> None:
    op.drop_table('sync_positions')
    with op.batch_alter_table('billing_runs', schema=None) as batch_op:
        batch_op.drop_constraint('uq_billing_runs_sync_position', type_='unique')
        batch_op.drop_column('finished_at')
        batch_op.drop_column('sync_position')
