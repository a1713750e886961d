"""The ledger: sessions, usage, files and attendance derived from the events.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

END = "COALESCE(ended_at, finished_at)"
DURATION = (
    f"CASE WHEN started_at IS NULL OR {END} IS NULL THEN NULL "
    f"WHEN {END} < started_at THEN 0 ELSE {END} - started_at END"
)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("room_sid", sa.Text, primary_key=True),
        sa.Column("room_id", sa.Text),
        sa.Column("title", sa.Text),
        sa.Column("title_at", sa.BigInteger),
        sa.Column("started_at", sa.BigInteger),
        sa.Column("finished_at", sa.BigInteger),
        sa.Column("ended_at", sa.BigInteger),
        sa.Column("ended_from", sa.Text),
        sa.Column("session_ended", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column(
            "end_source",
            sa.Text,
            sa.Computed(
                "CASE WHEN ended_at IS NOT NULL THEN ended_from "
                "WHEN finished_at IS NOT NULL THEN 'room_finished' END",
                persisted=True,
            ),
        ),
        sa.Column("duration_seconds", sa.BigInteger, sa.Computed(DURATION, persisted=True)),
        sa.Column(
            "billable_minutes",
            sa.BigInteger,
            sa.Computed(f"({DURATION} + 59) / 60", persisted=True),
        ),
    )
    op.create_index("ix_sessions_room_started", "sessions", ["room_id", "started_at"])
    op.create_index("ix_sessions_started", "sessions", ["started_at"])

    op.create_table(
        "usage",
        sa.Column("artifact_id", sa.Text, primary_key=True),
        sa.Column("event_key", sa.Text, nullable=False),
        sa.Column("room_sid", sa.Text),
        sa.Column("room_id", sa.Text),
        sa.Column("artifact_type", sa.Text, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger),
        sa.Column("completion_tokens", sa.BigInteger),
        sa.Column("cost_micros", sa.BigInteger),
        sa.Column("user_id", sa.Text),
        sa.Column("breakdown", sa.Text),
        sa.Column("reference_artifact_id", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_usage_room_created", "usage", ["room_id", "created_at"])
    op.create_index("ix_usage_created", "usage", ["created_at"])

    op.create_table(
        "files",
        sa.Column("file_key", sa.Text, primary_key=True),
        sa.Column("event_key", sa.Text, nullable=False),
        sa.Column("room_sid", sa.Text),
        sa.Column("room_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("size_mb", sa.Float),
        sa.Column("mime_type", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_files_room", "files", ["room_id"])

    op.create_table(
        "attendance",
        sa.Column("room_sid", sa.Text, primary_key=True),
        sa.Column("participant_sid", sa.Text, primary_key=True),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("joined_at", sa.BigInteger),
        sa.Column("left_at", sa.BigInteger),
        sa.Column(
            "seconds",
            sa.BigInteger,
            sa.Computed(
                "CASE WHEN joined_at IS NULL OR left_at IS NULL THEN NULL "
                "WHEN left_at < joined_at THEN 0 ELSE left_at - joined_at END",
                persisted=True,
            ),
        ),
    )


def downgrade() -> None:
    for table in ("attendance", "files", "usage", "sessions"):
        op.drop_table(table)
