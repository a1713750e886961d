"""The database schema: ``db check``, ``db upgrade`` and ``db current``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.cli.repair import run_replay
from plugnmeet_webhooks.ledger.writes import is_empty
from plugnmeet_webhooks.storage.events import EventFilter, count_events
from plugnmeet_webhooks.storage.migrate import events_to_replay, schema_revisions, upgrade_schema


@click.group("db")
def db() -> None:
    """Inspect or upgrade the database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Upgrade the database schema to REVISION (default: the newest)."""
    rt = runtime()
    engine = rt.engine
    before, _ = schema_revisions(engine)
    upgrade_schema(engine, revision)
    rt.forget_schema_check()
    after, _ = schema_revisions(engine)
    if before == after:
        click.echo(f"Database schema already at revision {after}.")
        return
    click.echo(f"Database schema upgraded from {before or 'empty'} to {after}.")
    stored = count_events(engine)
    if stored and is_empty(engine):
        # The ledger arrived with this upgrade: derive it from the events already stored.
        result = run_replay(EventFilter(), "Filling the ledger")
        click.echo(
            f"Filled the ledger from {result.events} stored events ({result.failed} failed)."
        )
    elif stored and after and (names := events_to_replay(before, after)):
        # Tables this upgrade reshaped: apply their events again under the new rules.
        result = run_replay(EventFilter(names=names), f"Applying {', '.join(names)} again")
        click.echo(
            f"Applied {result.events} stored {' and '.join(names)} events again "
            f"({result.failed} failed)."
        )


@db.command("current")
@with_appcontext
def db_current() -> None:
    """Show the database's schema revision and the one this version needs."""
    revision, head = schema_revisions(runtime().engine)
    state = "up to date" if revision == head else "run 'flask --app app db upgrade'"
    click.echo(f"database: {revision or 'empty'}  this version: {head}  ({state})")


@db.command("check")
@with_appcontext
def db_check() -> None:
    """Check the database: make the schema in an empty one, or say what to run.

    Gunicorn runs this once before it starts its workers.
    """
    revision, _ = schema_revisions(database())
    click.echo(f"Database schema at revision {revision}, as this version needs.")
