"""Event handlers: one registered function per event name, reading normalised events.

Each handler logs what happened and asks for the ledger writes the event implies
(:class:`~plugnmeet_webhooks.handler_registry.Context`); it never touches the database itself.
``registry`` holds them all; every runtime works on its own copy of it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from plugnmeet_webhooks.handler_registry import Context, Registry
from plugnmeet_webhooks.ledger import writes as ledger
from plugnmeet_webhooks.normalize import Artifact, Event
from plugnmeet_webhooks.storage.events import API
from plugnmeet_webhooks.text import plain, shown

log = logging.getLogger(__name__)

registry = Registry()
"""The handlers of this service; a runtime takes a copy of it."""


def _room(event: Event) -> str:
    room = event.room
    return f"room {shown(room.room_id or room.sid or '?')}"


def _who(event: Event) -> str:
    """Name a participant for the log by their identity (or sid), never by their name:
    log files are kept apart from the database, where forgetting cannot reach."""
    p = event.participant
    if p is None:
        return "Someone"
    return f"Participant {plain(p.identity or p.sid or '?')}"


# --- rooms and sessions ----------------------------------------------------------


@registry.on("room_created", "room_started", "room_finished")
def room_lifecycle(event: Event, ctx: Context) -> None:
    """Record and log a room being created, started or finished."""
    ctx.write(ledger.session_write(event, ctx.received_at))
    room = event.room
    verb = event.event.removeprefix("room_")
    title = f" {shown(room.title)}" if room.title else ""
    label = shown(room.room_id or room.sid or "?")
    log.info("Room %s%s %s (sid %s).", label, title, verb, plain(room.sid or "?"))


@dataclass(frozen=True, slots=True)
class SessionLength:
    """How long a session lasted and which time stamp gave its end."""

    seconds: int
    minutes: int
    end_source: str


def session_length(event: Event, received_at: float) -> SessionLength | None:
    """Return the session length, or None when the room's creation time was not sent.

    The end is the ledger's (:func:`~plugnmeet_webhooks.ledger.writes.session_end`).
    Minutes round up.
    """
    start = event.room.creation_time
    if not start:
        return None
    end = ledger.session_end(event, received_at)
    seconds = max(0, end.at - start)
    return SessionLength(seconds=seconds, minutes=math.ceil(seconds / 60), end_source=end.source)


@registry.on("session_ended")
def session_ended(event: Event, ctx: Context) -> None:
    """Record the session's end and log how many billable minutes it lasted."""
    ctx.write(ledger.session_write(event, ctx.received_at, ctx.source))
    room_id = shown(event.room.room_id or event.room.sid or "?")
    if ctx.source == API:
        log.info(
            "Room %s: its end came from plugNmeet's API (its session_ended was lost).", room_id
        )
        return
    length = session_length(event, ctx.received_at)
    if length is None:
        log.warning("Room %s ended, but no creation_time was sent: length unknown.", room_id)
        return
    log.info("SUCCESS: Room %s lasted for %d minutes.", room_id, length.minutes)
    log.debug("session of %s: %d s, end from %s", room_id, length.seconds, length.end_source)


# --- participants and tracks ------------------------------------------------------


@registry.on("participant_joined")
def participant_joined(event: Event, ctx: Context) -> None:
    """Record and log who joined which room."""
    ctx.write(
        ledger.session_write(event, ctx.received_at),
        *ledger.attendance_writes(event, ctx.received_at),
    )
    count = event.room.num_participants
    log.info("%s joined %s (%d in the room).", _who(event), _room(event), count)


@registry.on("participant_left")
def participant_left(event: Event, ctx: Context) -> None:
    """Record and log who left which room, and after how long when both times are known."""
    ctx.write(
        ledger.session_write(event, ctx.received_at),
        *ledger.attendance_writes(event, ctx.received_at),
    )
    p = event.participant
    stayed = ""
    if p is not None and p.joined_at and event.created_at >= p.joined_at:
        stayed = f" after {math.ceil((event.created_at - p.joined_at) / 60)} min"
    log.info("%s left %s%s.", _who(event), _room(event), stayed)


@registry.on("track_published", "track_unpublished")
def track_changed(event: Event, ctx: Context) -> None:
    """Record who published or unpublished a track (no attendance), and log which track."""
    # A track event names its participant as a join does: someone whose join came without
    # a name (or was lost) is named by it.
    ctx.write(ledger.participant_write(event, ctx.received_at))
    track = event.track
    verb = "published" if event.event == "track_published" else "unpublished"
    if track is None:
        log.info("%s %s a track in %s.", _who(event), verb, _room(event))
        return
    detail = ", ".join(plain(x, 60) for x in (track.type, track.source, track.mime_type) if x)
    log.info(
        "%s %s track %s (%s) in %s.",
        _who(event),
        verb,
        plain(track.sid or "?"),
        detail,
        _room(event),
    )


# --- recordings, streams, analytics ---------------------------------------------------

_RECORDING_LINES = {
    "start_recording": "Recording %s started in %s on recorder %s.",
    "end_recording": "Recording %s ended in %s on recorder %s.",
    "start_rtmp": "RTMP stream %s started in %s on recorder %s.",
    "end_rtmp": "RTMP stream %s ended in %s on recorder %s.",
}


@registry.on(*_RECORDING_LINES)
def recording_changed(event: Event, ctx: Context) -> None:
    """Log a recording or RTMP stream starting or ending."""
    info = event.recording_info
    record_id = plain((info.record_id if info else "") or "?")
    recorder = plain((info.recorder_id if info else "") or "?")
    log.info(_RECORDING_LINES[event.event], record_id, _room(event), recorder)


@registry.on("recording_proceeded")
def recording_proceeded(event: Event, ctx: Context) -> None:
    """Record and log which recording file is ready."""
    ctx.write(ledger.recording_write(event, ctx.event_key, ctx.received_at))
    info = event.recording_info
    if info is None or not info.file_path:
        log.warning("Recording of %s proceeded, but no file path was sent.", _room(event))
        return
    log.info(
        "Recording %s of %s is ready: %s (%.2f MB).",
        plain(info.record_id or "?"),
        _room(event),
        plain(info.file_path),
        info.file_size,
    )


@registry.on("analytics_proceeded")
def analytics_proceeded(event: Event, ctx: Context) -> None:
    """Log which analytics file is ready."""
    file_id = event.analytics.file_id if event.analytics else ""
    log.info("Analytics file %s of %s is ready.", plain(file_id or "?"), _room(event))


# --- artifacts ------------------------------------------------------------------------

FILE_ARTIFACTS = frozenset({"MEETING_ANALYTICS", "MEETING_SUMMARY", "SPEECH_TRANSCRIPTION"})
USAGE_UNITS = {
    "MEETING_SUMMARY_USAGE": "tokens",
    "AI_TEXT_CHAT_INTERACTION_USAGE": "tokens",
    "AI_TEXT_CHAT_SUMMARIZATION_USAGE": "tokens",
    "SPEECH_TRANSCRIPTION_USAGE": "seconds",
    "SYNTHESIZED_SPEECH_USAGE": "characters",
    "CHAT_TRANSLATION_USAGE": "characters",
}


@dataclass(frozen=True, slots=True)
class Usage:
    """A metered quantity; ``cost`` is None when the sender reported no cost."""

    quantity: int
    unit: str
    cost: float | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    breakdown: dict[str, int] | None = None


def artifact_usage(artifact: Artifact) -> Usage | None:
    """Return the usage an artifact reports, whichever of the three kinds it carries."""
    meta = artifact.metadata
    if meta.token_usage is not None:
        t = meta.token_usage
        return Usage(
            t.total_tokens,
            "tokens",
            t.total_tokens_estimated_cost,
            t.prompt_tokens,
            t.completion_tokens,
            t.breakdown,
        )
    if meta.duration_usage is not None:
        d = meta.duration_usage
        return Usage(
            d.duration_sec, "seconds", d.duration_sec_estimated_cost, breakdown=d.breakdown
        )
    if meta.character_count_usage is not None:
        c = meta.character_count_usage
        return Usage(
            c.total_characters,
            "characters",
            c.total_characters_estimated_cost,
            breakdown=c.breakdown,
        )
    return None


def describe_usage(usage: Usage) -> str:
    """Say a usage in words: quantity, unit, split and estimated cost."""
    text = f"{usage.quantity} {usage.unit}"
    if usage.prompt_tokens or usage.completion_tokens:
        text += f" ({usage.prompt_tokens} prompt + {usage.completion_tokens} completion)"
    if usage.cost is None:
        return text + ", no cost reported"
    return text + f", estimated cost {usage.cost:.6f}"


@registry.on("artifact_created")
def artifact_created(event: Event, ctx: Context) -> None:
    """Log a file artifact's path, or a usage artifact's quantity and cost."""
    artifact = event.room_artifact
    if artifact is None:
        log.warning("artifact_created for %s carries no room_artifact.", _room(event))
        return
    usage = artifact_usage(artifact)
    ctx.write(*ledger.artifact_writes(event, artifact, usage, ctx.event_key, ctx.received_at))
    name = artifact.type
    artifact_id = plain(artifact.artifact_id or "no id")
    head = f"Artifact {plain(name, 60)} ({artifact_id}) for {_room(event)}"
    meta = artifact.metadata
    user_id = meta.user_info.user_id if meta.user_info else ""
    user = f" by {plain(user_id)}" if user_id else ""
    if name in FILE_ARTIFACTS:
        info = meta.file_info
        if info is None or not info.file_path:
            log.warning("%s: no file path was sent.", head)
        else:
            mime = f", {plain(info.mime_type, 60)}" if info.mime_type else ""
            log.info("%s: file %s (%d bytes%s).", head, plain(info.file_path), info.file_size, mime)
        return
    if name in USAGE_UNITS:
        if usage is None:
            log.warning("%s%s: no usage was sent.", head, user)
        else:
            log.info("%s%s: %s.", head, user, describe_usage(usage))
        return
    known = "type not known to this receiver" if name != "UNKNOWN_ARTIFACT" else "type unknown"
    extra = f"; {describe_usage(usage)}" if usage else ""
    log.info("%s: %s, stored as sent%s.", head, known, extra)
