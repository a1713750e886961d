"""Names from track events: track_published and track_unpublished name their participant.

They carry the participant trimmed to sid, identity and name, and now write it into
``participants`` as a join does (no attendance mark), so that someone whose join came
without a name is named. The schema does not change: the stored track events are recorded
in ``pending_replays``, and 'flask db upgrade' applies them again (see 0006).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

REPLAYED = ("track_published", "track_unpublished")


def upgrade() -> None:
    stored = sa.table("events", sa.column("event"))
    pending = sa.table("pending_replays", sa.column("event"))
    for name in REPLAYED:
        due = sa.select(sa.literal(name)).where(sa.exists().where(stored.c.event == name))
        op.execute(pending.insert().from_select(["event"], due))


def downgrade() -> None:
    # The names track events gave stay; a replay not yet run would change nothing there.
    pending = sa.table("pending_replays", sa.column("event"))
    op.execute(pending.delete().where(pending.c.event.in_(REPLAYED)))
