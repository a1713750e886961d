"""Command-line tools, run as ``flask --app app <command>``."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext

import handlers
import ledger
import reports
import storage
from runtime import current
from validation import sign as sign_token

CONTENT_TYPE = "application/json"


def init_app(app: Flask) -> None:
    """Register the commands on the app's ``flask`` command group."""
    for command in (db, sign, send, events, report, replay, rebuild_ledger):
        app.cli.add_command(command)


def _default_url() -> str:
    port = os.environ.get("PORT", "").strip() or "8000"
    return f"http://127.0.0.1:{port}{current().settings.webhook_path}"


def _key_pair(key: str | None) -> tuple[str, str]:
    keys = current().settings.api_keys
    if key is None:
        key = next(iter(keys))
    if key not in keys:
        raise click.BadParameter(
            f"{key!r} is not a configured API key; use one of: {', '.join(sorted(keys))}.",
            param_hint="--key",
        )
    return key, keys[key]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror}.", param_hint="FILE"
        ) from None


_key_option = click.option("--key", help="API key to sign with (default: the first configured).")
_url_option = click.option("--url", help="Receiver URL (default: this service on 127.0.0.1:$PORT).")


@click.group("db")
def db() -> None:
    """Inspect or upgrade the database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Upgrade the database schema to REVISION (default: the newest)."""
    engine = current().engine
    before, _ = storage.schema_revisions(engine)
    storage.upgrade_schema(engine, revision)
    after, _ = storage.schema_revisions(engine)
    if before == after:
        click.echo(f"Database schema already at revision {after}.")
        return
    click.echo(f"Database schema upgraded from {before or 'empty'} to {after}.")
    stored = storage.count_events(engine)
    if stored and ledger.is_empty(engine):
        # The ledger arrived with this upgrade: derive it from the events already stored.
        result = _replay(storage.EventFilter(), "Filling the ledger")
        click.echo(
            f"Filled the ledger from {result.events} stored events ({result.failed} failed)."
        )


@db.command("current")
@with_appcontext
def db_current() -> None:
    """Show the database's schema revision and the one this version needs."""
    revision, head = storage.schema_revisions(current().engine)
    state = "up to date" if revision == head else "run 'flask --app app db upgrade'"
    click.echo(f"database: {revision or 'empty'}  this version: {head}  ({state})")


@click.command("sign")
@with_appcontext
@click.argument("file", type=click.Path(dir_okay=False))
@_key_option
@_url_option
@click.option(
    "--hex",
    "hex_digest",
    is_flag=True,
    help="Put a hex digest in the token, as the guide's tokens do.",
)
def sign(file: str, key: str | None, url: str | None, hex_digest: bool) -> None:
    """Print a curl command that delivers FILE signed as a plugNmeet server signs it."""
    body = _read(file)
    api_key, secret = _key_pair(key)
    token = sign_token(body, api_key, secret, digest_format="hex" if hex_digest else "base64")
    parts = [
        "curl", "-sS", "-X", "POST", url or _default_url(),
        "-H", f"Content-Type: {CONTENT_TYPE}",
        "-H", f"Authorization: {token}",
        "-H", f"Hash-Token: {token}",
        "--data-binary", f"@{file}",
    ]  # fmt: skip
    click.echo(shlex.join(parts))


def post(url: str, body: bytes, token: str, timeout: float = 10) -> tuple[int, str]:
    """POST a signed body; return the status code and the response text."""
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": CONTENT_TYPE, "Authorization": token, "Hash-Token": token},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


@click.command("send")
@with_appcontext
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_key_option
@_url_option
def send(files: tuple[str, ...], key: str | None, url: str | None) -> None:
    """Sign and POST each FILE to the receiver, as a plugNmeet server would."""
    api_key, secret = _key_pair(key)
    target = url or _default_url()
    failed = 0
    for file in files:
        body = _read(file)
        try:
            status, text = post(target, body, sign_token(body, api_key, secret))
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise click.ClickException(
                f"cannot reach {target} ({reason}); "
                "start the service with 'make run' or pass --url."
            ) from None
        word = json.loads(text).get("status", "") if text.startswith("{") else ""
        click.echo(f"{status} {word:<10} {file}")
        failed += status != 200
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} deliveries were not accepted.")


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
    rows = storage.list_events(current().engine, limit=limit)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo(
            "No events stored yet. Send one with: flask --app app send samples/room_created.json"
        )
        return
    header = ("#", "received (UTC)", "event", "room", "event id", "handler")
    table = [header] + [
        (
            str(r["id"]),
            datetime.fromtimestamp(r["received_at"], UTC).strftime("%Y-%m-%d %H:%M:%S"),
            r["event"],
            r["room_id"] or "",
            r["event_id"] or r["dedupe_key"][:20],
            r["handler_status"],
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@click.command("report")
@click.argument("name", type=click.Choice(reports.REPORTS))
@click.option("--since", help="First day (UTC), e.g. 2026-11-01.")
@click.option("--until", help="Last day (UTC), included.")
@click.option("--room", help="Only this room_id.")
@click.option(
    "--format", "fmt", type=click.Choice(reports.FORMATS), default="table", show_default=True
)
@with_appcontext
def report(name: str, since: str | None, until: str | None, room: str | None, fmt: str) -> None:
    """Print a ledger report: sessions, usage (AI cost) or rooms (totals per room).

    Sessions and attendance are picked by when the session started, usage by when the
    artifact was created; days are UTC and --until is included.
    """
    try:
        filters = reports.Filters.parse(since, until, room)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.", param_hint="--since/--until") from None
    with current().engine.connect() as conn:
        built = reports.build(conn, name, filters)
    click.echo(reports.RENDERERS[fmt](built), nl=fmt != "csv")


@contextmanager
def _quiet_handlers() -> Iterator[None]:
    # Each event was logged when it arrived; a replay says only what goes wrong.
    logger = logging.getLogger("handlers")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _replay(which: storage.EventFilter, label: str) -> storage.ReplayResult:
    engine = current().engine
    total = storage.count_matching(engine, which)
    with (
        _quiet_handlers(),
        click.progressbar(length=total, label=label, show_pos=True, file=sys.stderr) as bar,
    ):
        return storage.replay_events(engine, handlers.handle_body, which, progress=bar.update)


def _first_second(text: str) -> float:
    try:
        return reports.epoch(reports.parse_day("--since", text))
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.", param_hint="--since") from None


@click.command("replay")
@click.option("--since", help="Only events received on or after this day (UTC), e.g. 2026-11-01.")
@click.option("--event-id", help="Only the event with this id.")
@click.option("--failed", "failed_only", is_flag=True, help="Only events whose handler failed.")
@with_appcontext
def replay(since: str | None, event_id: str | None, failed_only: bool) -> None:
    """Run the handlers again over stored events (after a fix); safe to repeat."""
    which = storage.EventFilter(
        since=_first_second(since) if since else None,
        event_key=event_id,
        failed_only=failed_only,
    )
    result = _replay(which, "Replaying")
    click.echo(
        f"Replayed {result.events} events: {result.repaired} repaired, {result.failed} failed."
    )
    if event_id is not None and result.events == 0:
        raise click.ClickException(f"no stored event has the id {event_id!r}.")
    if result.failed:
        raise click.ClickException(
            f"{result.failed} events still fail; see the log, fix the handler, run replay --failed."
        )


@click.command("rebuild-ledger")
@click.confirmation_option(
    prompt="Clear the ledger tables and rebuild them from the stored events?"
)
@with_appcontext
def rebuild_ledger() -> None:
    """Clear the sessions, usage, files and attendance tables and rebuild them from the events."""
    with storage.write_transaction(current().engine) as conn:
        ledger.clear(conn)
    result = _replay(storage.EventFilter(), "Rebuilding")
    click.echo(f"Rebuilt the ledger from {result.events} events ({result.failed} failed).")
    if result.failed:
        raise click.ClickException(
            f"{result.failed} events failed; run replay --failed after a fix."
        )
