"""Facts from the plugNmeet API, stored like deliveries; reconciliation's passes and leases.

``events.source`` says where a stored event came from: ``webhook`` (a delivery) or ``api``
(what reconciliation learned from plugNmeet's REST API for a delivery that was lost); a
partial index finds those few without reading the deliveries.
``reconcile_passes`` keeps each pass and what it changed; ``leases`` lets one process at a
time, on any host, run a job such as a pass.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "events", sa.Column("source", sa.String(16), nullable=False, server_default="webhook")
    )
    from_api = sa.text("source = 'api'")
    op.create_index(
        "ix_events_api", "events", ["id"], sqlite_where=from_api, postgresql_where=from_api
    )
    op.create_table(
        "reconcile_passes",
        sa.Column("id", sa.Integer().with_variant(sa.BigInteger(), "postgresql"), primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("closed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("discovered", sa.Integer, nullable=False, server_default="0"),
        sa.Column("artifacts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("recordings", sa.Integer, nullable=False, server_default="0"),
        sa.Column("unresolved", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
    )
    op.create_index(
        "ix_reconcile_passes_tenant", "reconcile_passes", ["tenant", "outcome", "started_at"]
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
    op.drop_table("reconcile_passes")
    op.drop_index("ix_events_api", table_name="events")
    op.drop_column("events", "source")
