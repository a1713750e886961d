"""The outbox's waiting messages indexed apart, rate limits counted apart, bodies pruned;
and the installation's own keys.

A claimed message is due again when its lease runs out, so ``next_attempt_at`` now holds
that time too, and one partial index over the waiting messages (pending or sending) serves
the dispatcher's poll however many sent messages the table keeps. ``rate_limited`` counts
the answers that asked to slow down, which do not spend the message's retries;
``pruned_at`` marks a body removed by retention; ``retried_at`` when someone last sent a
message again by hand (its rate-limit budget starts again there). ``instance_keys`` holds
random keys made once per installation (the dashboard's session key is derived from one).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

WAITING = "state IN ('pending', 'sending')"


def upgrade() -> None:
    op.add_column(
        "outbox", sa.Column("rate_limited", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("outbox", sa.Column("pruned_at", sa.Float))
    op.add_column("outbox", sa.Column("retried_at", sa.Float))
    outbox = sa.table(
        "outbox", sa.column("state"), sa.column("next_attempt_at"), sa.column("lease_until")
    )
    op.execute(
        outbox.update()
        .where(outbox.c.state == "sending", outbox.c.lease_until.is_not(None))
        .values(next_attempt_at=outbox.c.lease_until)
    )
    op.create_index(
        "ix_outbox_waiting",
        "outbox",
        ["destination", "next_attempt_at"],
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )
    op.drop_index("ix_outbox_destination", table_name="outbox")  # the new index serves its uses
    op.create_table(
        "instance_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("instance_keys")
    op.create_index("ix_outbox_destination", "outbox", ["destination", "state"])
    op.drop_index("ix_outbox_waiting", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("retried_at")
        batch.drop_column("pruned_at")
        batch.drop_column("rate_limited")
