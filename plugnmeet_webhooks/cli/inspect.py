"""Look at what is stored: ``events`` and ``report``."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.cli.context import database
from plugnmeet_webhooks.cli.output import REPORT_FORMATS, as_json, table, utc_time
from plugnmeet_webhooks.ledger import periods, reports
from plugnmeet_webhooks.storage import events as stored_events


@click.command("events")
@with_appcontext
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many events."
)
def events(fmt: str, limit: int) -> None:
    """List the stored events, newest first."""
    rows = stored_events.list_events(database(), limit=limit)
    if fmt == "json":
        click.echo(as_json(rows))
        return
    if not rows:
        click.echo(
            "No events stored yet. Send one with: flask --app app send samples/room_created.json"
        )
        return
    header = ("#", "received (UTC)", "tenant", "event", "room", "event id", "handler")
    lines = [
        (
            str(r["id"]),
            utc_time(r["received_at"]),
            r["tenant"],
            r["event"],
            r["room_id"] or "",
            r["event_id"] or r["dedupe_key"][:20],
            r["handler_status"],
        )
        for r in rows
    ]
    click.echo(table(header, lines))


@click.command("report")
@click.argument("name", type=click.Choice(reports.REPORTS))
@click.option("--since", help="First day (UTC), e.g. 2026-11-01.")
@click.option("--until", help="Last day (UTC), included.")
@click.option("--room", help="Only this room_id.")
@click.option(
    "--tenant", help="Only this tenant (an API key, or the name PNM_API_KEYS_FILE gives)."
)
@click.option(
    "--format", "fmt", type=click.Choice(list(REPORT_FORMATS)), default="table", show_default=True
)
@with_appcontext
def report(
    name: str, since: str | None, until: str | None, room: str | None, tenant: str | None, fmt: str
) -> None:
    """Print a ledger report: sessions, usage (AI cost) or rooms (totals per room).

    Sessions and attendance are picked by when the session started, usage by when the
    artifact was created; days are UTC and --until is included.
    """
    try:
        filters = periods.Filters.parse(since, until, room, tenant)
        reports.check(name, filters)
    except ValueError as exc:
        raise click.UsageError(f"{exc}.") from None
    with database().connect() as conn:
        built = reports.build(conn, name, filters).as_dict()
    click.echo(REPORT_FORMATS[fmt](built), nl=fmt != "csv")
