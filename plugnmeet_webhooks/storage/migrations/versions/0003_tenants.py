"""Tenants: every event and ledger row belongs to the key (or tenant) that signed it.

Events stored before this revision belong to the key that signed them (their api_key).
Redeliveries are recognised within a tenant. The ledger tables are made again with the
tenant in their keys; 'flask db upgrade' then fills them from the stored events. Events get
pruned_at, set when retention removes their raw body.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

END = "COALESCE(ended_at, finished_at)"
DURATION = (
    f"CASE WHEN started_at IS NULL OR {END} IS NULL THEN NULL "
    f"WHEN {END} < started_at THEN 0 ELSE {END} - started_at END"
)
LEDGER = ("attendance", "files", "usage", "sessions")


def upgrade() -> None:
    op.add_column("events", sa.Column("tenant", sa.Text))
    op.add_column("events", sa.Column("pruned_at", sa.Float))
    op.execute("UPDATE events SET tenant = api_key")
    # 0001 left the unique constraint on dedupe_key unnamed; name it so it can be dropped.
    old_unique = (
        "events_dedupe_key_key"
        if op.get_bind().dialect.name == "postgresql"
        else "uq_events_dedupe_key"
    )
    with op.batch_alter_table(
        "events", naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"}
    ) as batch:
        batch.alter_column("tenant", existing_type=sa.Text, nullable=False)
        batch.drop_constraint(old_unique, type_="unique")
        batch.create_unique_constraint("uq_events_tenant_dedupe_key", ["tenant", "dedupe_key"])

    for table in LEDGER:
        op.drop_table(table)
    op.create_table(
        "sessions",
        sa.Column("room_sid", sa.Text, nullable=False),
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
        sa.Column("tenant", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "room_sid"),
    )
    op.create_index("ix_sessions_room_started", "sessions", ["room_id", "started_at"])
    op.create_index("ix_sessions_started", "sessions", ["started_at"])

    op.create_table(
        "usage",
        sa.Column("artifact_id", sa.Text, nullable=False),
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
        sa.Column("tenant", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "artifact_id"),
    )
    op.create_index("ix_usage_room_created", "usage", ["room_id", "created_at"])
    op.create_index("ix_usage_created", "usage", ["created_at"])

    op.create_table(
        "files",
        sa.Column("file_key", sa.Text, nullable=False),
        sa.Column("event_key", sa.Text, nullable=False),
        sa.Column("room_sid", sa.Text),
        sa.Column("room_id", sa.Text),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger),
        sa.Column("size_mb", sa.Float),
        sa.Column("mime_type", sa.Text),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "file_key"),
    )
    op.create_index("ix_files_room", "files", ["room_id"])

    op.create_table(
        "attendance",
        sa.Column("room_sid", sa.Text, nullable=False),
        sa.Column("participant_sid", sa.Text, nullable=False),
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
        sa.Column("tenant", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("tenant", "room_sid", "participant_sid"),
    )


def downgrade() -> None:
    raise NotImplementedError("0003 cannot be undone: restore a backup made before the upgrade")
