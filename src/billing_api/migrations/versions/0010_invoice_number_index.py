"""one invoice by its number: an index on (partner, environment, kind, invoice_number)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 17:10:00

``GET /api/v4/{invoices|customerinvoices}/{InvoiceID}`` and its 304 check look an invoice
up by the caller's partner, environment, kind and number. The unique constraint on invoice
numbers leads with the sender and the date index stops before the number, so the look-up
scanned every invoice of the partner's kind: one probe now.
"""

from __future__ import annotations

from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_invoices_partner_number', 'invoices',
                    ['partner_id', 'environment', 'kind', 'invoice_number'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_invoices_partner_number', table_name='invoices')
