"""The schema's recorded version: create it, check it, upgrade it (Alembic)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, Text, inspect, select

from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.sql import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x706E6D  # any constant shared by every receiver on one database

# The stored events an upgrade needs applied again under its new rules. A migration adds
# the rows in its own transaction; a row goes only once its replay has finished.
pending_replays = Table("pending_replays", metadata, Column("event", Text, primary_key=True))
EVERY_EVENT = "*"  # a replay of every stored event: the ledger is filled from scratch


class SchemaBehind(RuntimeError):
    """The database's schema is not this version's; the message says what to do."""


def _alembic_config(conn: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def schema_revisions(engine: Engine) -> tuple[str | None, str]:
    """Return the database's schema revision (None for an empty database) and this code's."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        current = revision_of(conn)
    return current, str(head)


def replays_due(engine: Engine) -> tuple[str, ...]:
    """The events an upgrade still needs applied again (none before schema 0006)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(pending_replays.name):
            return ()
        query = select(pending_replays.c.event).order_by(pending_replays.c.event)
        return tuple(conn.execute(query).scalars())


def replay_due(conn: Connection, name: str) -> None:
    """Record that the stored ``name`` events (or EVERY_EVENT) are to be applied again; with
    a schema from before 0006, which has no such record, nothing is kept."""
    if inspect(conn).has_table(pending_replays.name):
        exists = select(pending_replays.c.event).where(pending_replays.c.event == name)
        if conn.execute(exists).first() is None:
            conn.execute(pending_replays.insert().values(event=name))


def revision_of(conn: Connection) -> str | None:
    """The schema revision of the database ``conn`` is on (None when it is empty)."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def replays_done(engine: Engine, names: tuple[str, ...]) -> None:
    """Record that the stored ``names`` events have been applied again, all of them."""
    if names:
        with write_transaction(engine) as conn:
            conn.execute(pending_replays.delete().where(pending_replays.c.event.in_(names)))


def upgrade_schema(
    engine: Engine, revision: str = "head", *, then: Callable[[Connection], None] | None = None
) -> None:
    """Migrate the database to ``revision``; several processes may call this at once.

    ``then`` runs in the same transaction, after the migrations (to record work they need).
    """
    from alembic import command

    with write_transaction(engine) as conn:
        # SQLite: the transaction began with BEGIN IMMEDIATE, so migrations run one at a time.
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
        command.upgrade(_alembic_config(conn), revision)
        if then is not None:
            then(conn)


def _known(revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(_alembic_config()).get_revision(revision) is not None
    except CommandError:
        return False


def prepare_schema(engine: Engine) -> None:
    """Create the schema in an empty database; refuse one another version made."""
    current, head = schema_revisions(engine)
    if current == head:
        return
    if current is None:
        upgrade_schema(engine)
        return
    if not _known(current):
        raise SchemaBehind(
            f"the database schema is at revision {current}, which this version ({head}) does "
            "not know: a newer version made it; run that version, or restore a backup."
        )
    raise SchemaBehind(
        f"the database schema is at revision {current} and this version needs {head}; "
        "run 'flask --app app db upgrade' once, then start the service again."
    )
