"""Attendance as join and leave marks, from which stays are paired when a report asks.

The old table kept one row per participant sid: its earliest join and its latest leave, so
a sid that left and came back was billed for the gap. Here each sid keeps its identity and
name in ``participants``, and each old row becomes two marks (its join and its leave, the
join only when it is not after the leave); 'flask db upgrade' then replays the stored
participant events, which adds every join and leave in between. Events whose raw body
retention removed keep the marks of their old row.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

SID = ("tenant", "room_sid", "participant_sid")
OLD = sa.table(
    "attendance_0004", *(sa.column(c) for c in (*SID, "identity", "name", "joined_at", "left_at"))
)


def upgrade() -> None:
    op.rename_table("attendance", "attendance_0004")
    op.create_table(
        "participants",
        sa.Column("room_sid", sa.Text, nullable=False),
        sa.Column("participant_sid", sa.Text, nullable=False),
        sa.Column("identity", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(*SID),
    )
    op.create_index("ix_participants_identity", "participants", ["identity"])
    op.create_table(
        "attendance",
        sa.Column("room_sid", sa.Text, nullable=False),
        sa.Column("participant_sid", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint(*SID, "kind", "at"),
    )
    people = sa.table("participants", *(sa.column(c) for c in (*SID, "identity", "name")))
    columns = [OLD.c[c] for c in (*SID, "identity", "name")]
    op.execute(people.insert().from_select(list(people.c.keys()), sa.select(*columns)))
    marks = sa.table("attendance", *(sa.column(c) for c in (*SID, "kind", "at")))
    # A join later than its leave came from a skewed leave's joined_at: no join at all.
    sound_join = sa.or_(OLD.c.left_at.is_(None), OLD.c.joined_at <= OLD.c.left_at)
    for kind, at, sound in (("join", OLD.c.joined_at, sound_join), ("leave", OLD.c.left_at, None)):
        picked = sa.select(*(OLD.c[c] for c in SID), sa.literal(kind), at).where(at.is_not(None))
        if sound is not None:
            picked = picked.where(sound)
        op.execute(marks.insert().from_select(list(marks.c.keys()), picked))
    op.drop_table("attendance_0004")


def downgrade() -> None:
    op.rename_table("attendance", "attendance_0005")
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
        sa.PrimaryKeyConstraint(*SID),
    )
    # One row per sid again: its earliest join and its latest leave.
    op.execute(
        "INSERT INTO attendance (tenant, room_sid, participant_sid, identity, name, joined_at, "
        "left_at) SELECT p.tenant, p.room_sid, p.participant_sid, p.identity, p.name, "
        "MIN(CASE WHEN m.kind = 'join' THEN m.at END), "
        "MAX(CASE WHEN m.kind = 'leave' THEN m.at END) "
        "FROM participants p LEFT JOIN attendance_0005 m ON m.tenant = p.tenant "
        "AND m.room_sid = p.room_sid AND m.participant_sid = p.participant_sid "
        "GROUP BY p.tenant, p.room_sid, p.participant_sid, p.identity, p.name"
    )
    op.drop_table("attendance_0005")
    op.drop_index("ix_participants_identity", table_name="participants")
    op.drop_table("participants")
