"""Stored events: every verified delivery with its raw body.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), primary_key=True),
        sa.Column("dedupe_key", sa.String(200), nullable=False, unique=True),
        sa.Column("event_id", sa.String(200)),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("room_id", sa.Text),
        sa.Column("room_sid", sa.Text),
        sa.Column("created_at", sa.BigInteger),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("api_key", sa.Text, nullable=False),
        sa.Column("remote_addr", sa.Text),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("handler_status", sa.String(16), nullable=False, server_default="ok"),
        sa.Column("handler_error", sa.Text),
    )
    op.create_index("ix_events_event", "events", ["event"])
    op.create_index("ix_events_room_id", "events", ["room_id"])
    op.create_index("ix_events_received_at", "events", ["received_at"])
    op.create_index("ix_events_handler_status", "events", ["handler_status"])


def downgrade() -> None:
    op.drop_table("events")
