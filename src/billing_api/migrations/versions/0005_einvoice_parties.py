"""einvoice parties: electronic addresses, registration ids and bank accounts

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 11:45:00

A Peppol BIS 3 e-invoice needs every party's electronic address (EndpointID + EAS scheme) and
legal registration; customers also get a registration number and a bank account. Existing
rows get empty strings: an invoice whose party lacks a required field is answered with a 409
naming it, never with an invalid document.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

COMPANY = (('endpoint_id', 100), ('endpoint_scheme', 4), ('registration_scheme', 4))
CUSTOMER = (
    ('endpoint_id', 100),
    ('endpoint_scheme', 4),
    ('registration_number', 40),
    ('registration_scheme', 4),
    ('iban', 40),
    ('bic', 20),
)


def upgrade() -> None:
    for table, columns in (('companies', COMPANY), ('customers', CUSTOMER)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length in columns:
                batch_op.add_column(
                    sa.Column(name, sa.String(length=length), server_default='', nullable=False)
                )


def downgrade() -> None:
    for table, columns in (('customers', CUSTOMER), ('companies', COMPANY)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _length in reversed(columns):
                batch_op.drop_column(name)
