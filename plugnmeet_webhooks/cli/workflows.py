"""Rules and the outbox from the command line: ``rules ...`` and ``outbox ...``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import Connection

from config import ConfigError
from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.cli.output import as_json, table, utc_time
from plugnmeet_webhooks.cli.repair import first_second, parse_json_file
from plugnmeet_webhooks.ledger import periods
from plugnmeet_webhooks.normalize import NormalizationError, normalize
from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.engine import writer
from plugnmeet_webhooks.storage.events import EventFilter, Receipt, each_batch, events, now
from plugnmeet_webhooks.workflows.rules import tenant_warnings
from plugnmeet_webhooks.workflows.rules_file import load_rules


@click.group("rules")
def rules() -> None:
    """Check the rules file, see what a delivery would send, apply a rule to past events."""


@rules.command("check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@with_appcontext
def rules_check(file: str | None) -> None:
    """Check a rules file (default: PNM_RULES_FILE): its destinations, rules and templates."""
    rt = runtime()
    settings = rt.settings
    path = file or settings.rules_file
    if not path:
        raise click.UsageError("give a rules file, or set PNM_RULES_FILE.")
    checked = load_rules(path, kinds=rt.kinds)
    click.echo(
        f"{path}: {len(checked.rules)} rules, {len(checked.destinations)} destinations, "
        "all correct."
    )
    for rule in checked.rules:
        on = ", ".join(sorted(rule.on)) or "(disabled)"
        click.echo(f"  {rule.name}: on {on} -> {', '.join(rule.send)}")
    for warning in tenant_warnings(checked, settings.tenant_names):
        click.echo(f"warning: {warning}", err=True)


@rules.command("test")
@click.argument("event_file", type=click.Path(dir_okay=False))
@click.option("--tenant", help="The tenant the delivery is for (default: the first key's).")
@with_appcontext
def rules_test(event_file: str, tenant: str | None) -> None:
    """Show which rules a delivery of EVENT_FILE matches and the exact messages they would
    send. Nothing is sent and nothing is stored: it runs in a transaction that is undone."""
    rt = runtime()
    payload = parse_json_file(event_file)
    try:
        event = normalize(payload)
    except NormalizationError as exc:
        raise click.BadParameter(f"{exc}.", param_hint="EVENT_FILE") from None
    tenant = tenant or rt.settings.tenant_of(next(iter(rt.settings.api_keys)))
    key = str(payload.get("id") or "rules-test")
    received = now()
    with writer(database()) as conn, conn.begin() as undone:
        receipt = Receipt(key, received, tenant)
        rt.ingest.apply(conn, payload, receipt, notify=False)
        made = rt.workflows.messages(conn, event, receipt)
        undone.rollback()  # nothing the test did stays
    matched = [r.name for r in rt.rules.for_event(event.event)]
    if not made:
        click.echo(f"No rule sends anything for this {event.event} event.")
        if matched:
            click.echo(
                f"  (rules on {event.event}: {', '.join(matched)}; their 'where' did not match)"
            )
        return
    for message in made:
        click.echo(f"rule {message.rule} -> {message.destination}  ({message.message_id})")
        click.echo(as_json(json.loads(message.body)))


@rules.command("backfill")
@click.argument("rule")
@click.option(
    "--since", required=True, help="First day (UTC) of the events to take, e.g. 2026-11-01."
)
@with_appcontext
def rules_backfill(rule: str, since: str) -> None:
    """Apply RULE to events stored since a day, through the outbox (for a rule added later).

    The ledger facts a message shows are today's. A message queued before is not queued
    again, so it is safe to repeat.
    """
    rt = runtime()
    wanted = [r for r in rt.rules.rules if r.name == rule]
    if not wanted:
        known = ", ".join(r.name for r in rt.rules.rules) or "none"
        raise click.BadParameter(f"no rule is named {rule!r}; the rules are: {known}.")
    engine = database()
    start = first_second(since)
    columns = (events.c.body, events.c.dedupe_key, events.c.received_at, events.c.tenant)
    which = EventFilter(since=start, names=tuple(sorted(wanted[0].on)))
    queued = 0

    def batch(conn: Connection, rows: list[Any]) -> None:
        nonlocal queued
        for row in rows:
            try:
                event = normalize(json.loads(row.body))
            except (ValueError, NormalizationError):
                continue
            receipt = Receipt(row.dedupe_key, row.received_at, row.tenant)
            queued += rt.workflows.enqueue(conn, event, receipt, only=rule)

    seen = each_batch(engine, which, columns, batch)
    click.echo(f"Backfilled rule {rule} over {seen} events: {queued} messages queued.")


@click.group("outbox")
def outbox_group() -> None:
    """Look at the outbox, retry or purge its messages, or send it from this process."""


def _row(message: dict[str, Any]) -> list[str]:
    def when(seconds: float | None) -> str:
        return "-" if seconds is None else utc_time(seconds)

    return [
        str(message["id"]),
        message["state"],
        message["rule"],
        message["destination"],
        message["event"],
        message["room_id"] or "-",
        str(message["attempts"]),
        when(message["next_attempt_at"] if message["state"] == "pending" else message["sent_at"]),
        message["last_error"] or "",
    ]


@outbox_group.command("list")
@click.option("--state", type=click.Choice([s.value for s in outbox.State]), help="Only these.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@with_appcontext
def outbox_list(state: str | None, limit: int, fmt: str) -> None:
    """List the newest messages: their rule, destination (by name) and state.

    Destination URLs and secrets are never shown; the message bodies are not either.
    """
    found = outbox.list_messages(database(), outbox.State(state) if state else None, limit=limit)
    if fmt == "json":
        click.echo(as_json(found))
        return
    if not found:
        click.echo("No messages." if state is None else f"No {state} messages.")
        return
    header = ["#", "state", "rule", "to", "event", "room", "tries", "next/sent (UTC)", "error"]
    click.echo(table(header, [_row(m) for m in found]))


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--dead", is_flag=True, help="Retry every dead message.")
@with_appcontext
def outbox_retry(ids: tuple[int, ...], dead: bool) -> None:
    """Send messages again: the given ids, or every dead one with --dead."""
    if not ids and not dead:
        raise click.UsageError("give message ids (from 'outbox list'), or --dead.")
    count = outbox.retry(database(), ids, dead=dead)
    click.echo(f"{count} messages are pending again.")


@outbox_group.command("purge")
@click.option("--sent-before", required=True, help="Delete messages sent before this day (UTC).")
@with_appcontext
def outbox_purge(sent_before: str) -> None:
    """Delete sent messages older than a day; pending and dead ones stay."""
    try:
        day = periods.parse_day("--sent-before", sent_before)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.", param_hint="--sent-before") from None
    count = outbox.purge_sent(database(), periods.epoch(day))
    click.echo(f"Deleted {count} messages sent before {day}.")


@outbox_group.command("run")
@with_appcontext
def outbox_run() -> None:
    """Send the outbox from this process until stopped (Ctrl-C or SIGTERM).

    For setups that turn the workers' own sending off (PNM_DISPATCHER=off). Several of these
    may run at once, on several hosts: no message is sent twice in normal operation.
    """
    rt = runtime()
    if not rt.rules.destinations:
        raise ConfigError("the rules file has no destinations; set PNM_RULES_FILE first.")
    database()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    dispatcher = rt.dispatcher().start()
    click.echo(f"Sending to {', '.join(sorted(rt.rules.destinations))}; Ctrl-C stops.", err=True)
    while not stop.wait(1.0):
        pass
    dispatcher.stop()
    click.echo("Stopped.", err=True)
    sys.exit(0)
