"""Participant names chosen by time, and replays that resume until they are done.

A participant's name was the first one to arrive, so two orders of the same deliveries
could name a sid differently; ``participants.name_at`` keeps the time of the event that
gave the name, and the earliest wins. The stored participant events are applied again to
date the names; ``pending_replays`` records that (and any later replay an upgrade needs)
in the same transaction as the schema change, and 'flask db upgrade' clears a row only once
its replay has finished, so an interrupted replay is taken up again by the next run.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

REPLAYED = ("participant_joined", "participant_left")


def upgrade() -> None:
    op.add_column("participants", sa.Column("name_at", sa.BigInteger))
    # People forgotten before: their pseudonym stays their name, whatever comes later.
    people = sa.table("participants", *(sa.column(c) for c in ("identity", "name", "name_at")))
    op.execute(
        people.update()
        .where(people.c.identity.startswith("forgotten-"), people.c.name == people.c.identity)
        .values(name_at=0)
    )
    op.create_table("pending_replays", sa.Column("event", sa.Text, primary_key=True))
    stored = sa.table("events", sa.column("event"))
    pending = sa.table("pending_replays", sa.column("event"))
    for name in REPLAYED:
        due = sa.select(sa.literal(name)).where(sa.exists().where(stored.c.event == name))
        op.execute(pending.insert().from_select(["event"], due))


def downgrade() -> None:
    op.drop_table("pending_replays")
    with op.batch_alter_table("participants") as batch:
        batch.drop_column("name_at")
