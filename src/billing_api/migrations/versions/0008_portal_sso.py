"""portal single sign-on: users' provider identity, how a portal session began

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 14:00:00.000000

users.oidc_subject is the OpenID Connect provider's ``sub`` (unique, null = not linked);
portal_sessions.signed_in_with tells a password login from a single sign-on ("password" for
every existing session).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_api.db

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('oidc_subject', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('oidc_linked_at', billing_api.db.UTCDateTime(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_users_oidc_subject'), ['oidc_subject'])

    with op.batch_alter_table('portal_sessions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('signed_in_with', sa.String(length=10), server_default='password', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('portal_sessions', schema=None) as batch_op:
        batch_op.drop_column('signed_in_with')

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_users_oidc_subject'), type_='unique')
        batch_op.drop_column('oidc_linked_at')
        batch_op.drop_column('oidc_subject')
