"""Repair the ledger: ``replay`` and ``rebuild-ledger``."""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from flask.cli import with_appcontext

from plugnmeet_webhooks.cli.context import database, runtime
from plugnmeet_webhooks.ledger import periods
from plugnmeet_webhooks.ledger.writes import clear
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.events import EventFilter, HandlerStatus, count_matching
from plugnmeet_webhooks.storage.migrate import replays_done, replays_due
from plugnmeet_webhooks.storage.replay import ReplayResult, replay_events


@contextmanager
def _quiet(logger_names: list[str]) -> Iterator[None]:
    # Each event was logged when it arrived; a replay says only what goes wrong.
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def run_replay(which: EventFilter, label: str, *, notify: bool = False) -> ReplayResult:
    """Replay the matching stored events through the handlers, with a progress bar.

    With ``notify``, their rules queue their messages too (those not queued before).
    """
    rt, engine = runtime(), database()
    apply = functools.partial(rt.ingest.apply_stored, notify=notify)
    total = count_matching(engine, which)
    with (
        _quiet(rt.registry.logger_names),
        click.progressbar(length=total, label=label, show_pos=True, file=sys.stderr) as bar,
    ):
        return replay_events(engine, apply, which, progress=bar.update)


def parse_json_file(path: str) -> dict[str, Any]:
    """Read a file holding one JSON object, or end the command saying what is wrong."""
    try:
        payload = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise click.BadParameter(
            f"cannot read {path}: {exc.strerror}.", param_hint="FILE"
        ) from None
    except ValueError:
        raise click.BadParameter(f"{path} is not JSON.", param_hint="FILE") from None
    if not isinstance(payload, dict):
        raise click.BadParameter(f"{path} is not a JSON object.", param_hint="FILE")
    return payload


def first_second(text: str) -> float:
    try:
        return periods.epoch(periods.parse_day("--since", text))
    except ValueError as exc:
        raise click.BadParameter(f"{exc}.", param_hint="--since") from None


@click.command("replay")
@click.option("--since", help="Only events received on or after this day (UTC), e.g. 2026-11-01.")
@click.option("--event-id", help="Only the event with this id.")
@click.option("--failed", "failed_only", is_flag=True, help="Only events whose handler failed.")
@click.option(
    "--notify", is_flag=True, help="Let their rules queue messages too (none queued twice)."
)
@with_appcontext
def replay(since: str | None, event_id: str | None, failed_only: bool, notify: bool) -> None:
    """Run the handlers again over stored events (after a fix); safe to repeat.

    Rules send nothing on a replay unless --notify is given.
    """
    which = EventFilter(
        since=first_second(since) if since else None,
        event_key=event_id,
        handler=HandlerStatus.FAILED if failed_only else None,
    )
    result = run_replay(which, "Replaying", notify=notify)
    pruned = count_matching(database(), replace(which, pruned=True))
    skipped = f" {pruned} pruned events (no raw body) skipped." if pruned else ""
    click.echo(
        f"Replayed {result.events} events: {result.repaired} repaired, {result.failed} failed."
        + skipped
    )
    if event_id is not None and result.events == 0:
        raise click.ClickException(f"no stored event has the id {event_id!r}.")
    if result.failed:
        raise click.ClickException(
            f"{result.failed} events still fail; see the log, fix the handler, run replay --failed."
        )


@click.command("rebuild-ledger")
@click.option(
    "--drop-pruned",
    is_flag=True,
    help="Rebuild even though pruned events (no raw body) will lose their ledger rows.",
)
@click.confirmation_option(
    prompt="Clear the ledger tables and rebuild them from the stored events?"
)
@with_appcontext
def rebuild_ledger(drop_pruned: bool) -> None:
    """Clear the sessions, usage, files and attendance tables and rebuild them from the events."""
    engine = database()
    pruned = count_matching(engine, EventFilter(pruned=True))
    if pruned and not drop_pruned:
        raise click.ClickException(
            f"{pruned} events have had their raw bodies pruned (PNM_RETENTION_DAYS), so a "
            "rebuild would drop their minutes and costs; use replay instead, or pass "
            "--drop-pruned to rebuild all the same."
        )
    with write_transaction(engine) as conn:
        clear(conn)
    due = replays_due(engine)  # a rebuild applies every event again: those too
    result = run_replay(EventFilter(), "Rebuilding")
    replays_done(engine, due)
    click.echo(f"Rebuilt the ledger from {result.events} events ({result.failed} failed).")
    if result.failed:
        raise click.ClickException(
            f"{result.failed} events failed; run replay --failed after a fix."
        )
