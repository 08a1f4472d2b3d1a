"""access: API keys, IP whitelist, audit log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 20:07:16.134662

Keys store only an HMAC digest (unique: the lookup column); audit_events.company_id is
nullable because a refused call with an unknown key belongs to no company.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import billing_api.db

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('ip_whitelist',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('network', sa.String(length=50), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('created_at', billing_api.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_ip_whitelist_company_id_companies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ip_whitelist')),
    sa.UniqueConstraint('company_id', 'network', name=op.f('uq_ip_whitelist_company_id_network'))
    )
    with op.batch_alter_table('ip_whitelist', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ip_whitelist_company_id'), ['company_id'], unique=False)

    op.create_table('api_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=False),
    sa.Column('created_by_user_id', sa.Integer(), nullable=True),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('environment', sa.String(length=10), nullable=False),
    sa.Column('display_prefix', sa.String(length=24), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('pepper_id', sa.Integer(), nullable=False),
    sa.Column('created_at', billing_api.db.UTCDateTime(), nullable=False),
    sa.Column('expires_at', billing_api.db.UTCDateTime(), nullable=True),
    sa.Column('last_used_at', billing_api.db.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', billing_api.db.UTCDateTime(), nullable=True),
    sa.CheckConstraint("environment IN ('production', 'sandbox')", name=op.f('ck_api_keys_environment')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_api_keys_company_id_companies')),
    sa.ForeignKeyConstraint(['created_by_user_id'], ['users.id'], name=op.f('fk_api_keys_created_by_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('digest', name=op.f('uq_api_keys_digest'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_company_id'), ['company_id'], unique=False)

    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_type', sa.String(length=40), nullable=False),
    sa.Column('company_id', sa.Integer(), nullable=True),
    sa.Column('actor_user_id', sa.Integer(), nullable=True),
    sa.Column('key_id', sa.Integer(), nullable=True),
    sa.Column('key_prefix', sa.String(length=24), nullable=False),
    sa.Column('client_address', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=400), nullable=False),
    sa.Column('reason', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.String(length=400), nullable=False),
    sa.Column('created_at', billing_api.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_user_id'], ['users.id'], name=op.f('fk_audit_events_actor_user_id_users')),
    sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_audit_events_company_id_companies')),
    sa.ForeignKeyConstraint(['key_id'], ['api_keys.id'], name=op.f('fk_audit_events_key_id_api_keys')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_company_created', ['company_id', 'created_at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_company_created')

    op.drop_table('audit_events')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_company_id'))

    op.drop_table('api_keys')
    with op.batch_alter_table('ip_whitelist', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ip_whitelist_company_id'))

    op.drop_table('ip_whitelist')
