"""conditional requests: a revision of the data documents read live, and the last undo

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 14:00:00

ETags and Last-Modified (api/conditional.py) are derived from the billing runs in scope, the
revision of imported data that documents read live (``content_revisions``, bumped by each
import that changes something) and, for Last-Modified, when a run was last undone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_api.db

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_positions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('undone_at', billing_api.db.UTCDateTime(), nullable=True))
    op.create_table(
        'content_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.Column('changed_at', billing_api.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_content_revisions')),
    )


def downgrade() -> None:
    op.drop_table('content_revisions')
    with op.batch_alter_table('sync_positions', schema=None) as batch_op:
        batch_op.drop_column('undone_at')
