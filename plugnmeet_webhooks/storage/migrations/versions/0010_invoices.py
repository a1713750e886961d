"""Invoices: each issued invoice frozen whole, and the counter that numbers them.

An issued invoice keeps its JSON document, the plan it was priced with and its PDF, and
never changes; voiding it sets its status and reason, and its number is never used again.
At most one invoice of a customer and month is issued (voided ones aside), which a partial
unique index holds. ``invoice_numbers`` hands out the numbers of a year without gaps: the
row is locked by the update that takes the next one, in the transaction that stores it.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoices",
        sa.Column("number", sa.Text, primary_key=True),
        sa.Column("year", sa.Integer, nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("customer", sa.Text, nullable=False),
        sa.Column("month", sa.String(7), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("total", sa.Text, nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("pdf", sa.LargeBinary, nullable=False),
        sa.Column("voided_at", sa.Float),
        sa.Column("void_reason", sa.Text),
    )
    issued = sa.text("status = 'issued'")
    op.create_index(
        "ux_invoices_issued",
        "invoices",
        ["customer", "month"],
        unique=True,
        sqlite_where=issued,
        postgresql_where=issued,
    )
    op.create_index("ix_invoices_customer", "invoices", ["customer", "month"])
    op.create_table(
        "invoice_numbers",
        sa.Column("year", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("invoice_numbers")
    op.drop_index("ix_invoices_customer", table_name="invoices")
    op.drop_index("ux_invoices_issued", table_name="invoices")
    op.drop_table("invoices")
