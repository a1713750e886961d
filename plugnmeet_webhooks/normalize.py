"""Turn a protojson ``CommonNotifyEvent`` into one normalised, typed shape.

Senders write proto names (``room_id``) or lowerCamelCase JSON names (``roomId``), 64-bit
integers as strings or numbers, enums by name or by number, and omit zero values. This
module deals with all of that once, at the edge, so handlers read plain typed attributes.
Unknown fields are ignored; a field of the wrong type raises :class:`NormalizationError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

INT64_MAX = 2**63 - 1
# Unix seconds before 2286: anything later is not a time a server could have stamped.
TIME_MAX = 10**10

# The bounds of a plausible event (docs/security.md lists them). A field outside them stores the
# event marked failed, with the reason, and changes no ledger row.
EARLIEST = 1_577_836_800  # 2020-01-01 UTC: before plugNmeet existed, no time is real
FUTURE_SLACK = 24 * 3600  # a time more than a day after receipt is no clock's skew
MAX_KEY = (
    200  # ids and keys (room, participant, artifact): every index on both databases holds them
)
MAX_PATH = 500  # file paths, which also key recordings
MAX_NAME = 200  # a person's display name, cut (never refused): it goes in the ledger, in messages
MAX_COUNT = 2**32 - 1  # the uint32 counts of the protocol
MAX_QUANTITY = 10**9  # tokens, seconds or characters in one artifact
MAX_COST = 10**6  # currency units of one artifact's estimated cost
MAX_FILE_BYTES = 10**15
MAX_FILE_MB = 10**9
_INTEGER_TEXT = re.compile(r"[0-9]{1,20}")
_NUMBER_TEXT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")

Converter = Callable[[Any, str], Any]
T = TypeVar("T", bound="DataclassInstance")


class NormalizationError(ValueError):
    """A field of a verified event has a type or value protojson does not allow."""


def camel_name(proto_name: str) -> str:
    """Return the lowerCamelCase JSON name protoc derives from a proto field name."""
    head, *rest = proto_name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


# --- scalar converters: (value, path) -> python value ------------------------------


def to_int(value: Any, path: str) -> int:
    """Read a count, size or time: a non-negative integer, as a JSON number or int64 string.

    Every integer of ``CommonNotifyEvent`` is a count, a size, a time or an enum number, so a
    negative one is as wrong as a string of words.
    """
    if isinstance(value, bool):
        raise NormalizationError(f"{path}: expected an integer, got a boolean")
    if isinstance(value, int):
        result = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and _INTEGER_TEXT.fullmatch(value)
    ):
        result = int(value)
    else:
        raise NormalizationError(f"{path}: expected an integer, got {type(value).__name__}")
    if not 0 <= result <= INT64_MAX:
        raise NormalizationError(f"{path}: integer below 0 or over the 64-bit range")
    return result


def to_time(value: Any, path: str) -> int:
    """Read unix seconds (an int64 written as a string or a number); 0 means not sent."""
    result = to_int(value, path)
    if result >= TIME_MAX:
        raise NormalizationError(f"{path}: not a time in unix seconds")
    if 0 < result < EARLIEST:
        raise NormalizationError(f"{path}: a time before 2020-01-01, when no server ran")
    return result


def to_float(value: Any, path: str) -> float:
    """Read a non-negative finite number (a cost, a size), as a JSON number or its text."""
    if isinstance(value, bool):
        raise NormalizationError(f"{path}: expected a number, got a boolean")
    if isinstance(value, (int, float)) or (
        isinstance(value, str) and _NUMBER_TEXT.fullmatch(value)
    ):
        result = float(value)
    else:
        raise NormalizationError(f"{path}: expected a number, got {type(value).__name__}")
    if not (math.isfinite(result) and result >= 0):
        raise NormalizationError(f"{path}: number is negative or not finite")
    return result


def to_str(value: Any, path: str) -> str:
    """Read a string that can be stored (no NUL) and logged as UTF-8 (no lone surrogate)."""
    if not isinstance(value, str):
        raise NormalizationError(f"{path}: expected a string, got {type(value).__name__}")
    if "\x00" in value:
        raise NormalizationError(f"{path}: string holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise NormalizationError(f"{path}: string holds a lone surrogate") from None
    return value


def at_most(convert: Converter, maximum: float) -> Converter:
    """Bound a number converter: a value over ``maximum`` is refused."""

    def bounded(value: Any, path: str) -> Any:
        result = convert(value, path)
        if result > maximum:
            raise NormalizationError(f"{path}: {result:.6g} is over the bound of {maximum:.6g}")
        return result

    return bounded


def text(maximum: int) -> Converter:
    """Build a converter for a string of at most ``maximum`` characters (an id, a path)."""

    def bounded(value: Any, path: str) -> str:
        result = to_str(value, path)
        if len(result) > maximum:
            raise NormalizationError(f"{path}: longer than {maximum} characters")
        return result

    return bounded


def cut_text(maximum: int) -> Converter:
    """Build a converter for text a person chooses (a display name): cut to ``maximum``
    characters, not refused, so that nobody can keep an event about them out of the ledger
    by choosing a long name."""

    def bounded(value: Any, path: str) -> str:
        return to_str(value, path)[:maximum]

    return bounded


key_text = text(MAX_KEY)
name_text = cut_text(MAX_NAME)
_title_text = text(500)
path_text = text(MAX_PATH)
count_int = at_most(to_int, MAX_COUNT)
quantity_int = at_most(to_int, MAX_QUANTITY)
cost_float = at_most(to_float, MAX_COST)


def to_bool(value: Any, path: str) -> bool:
    """Read a JSON boolean."""
    if not isinstance(value, bool):
        raise NormalizationError(f"{path}: expected a boolean, got {type(value).__name__}")
    return value


def enum(*names: str) -> Converter:
    """Build a converter for an enum whose values are ``names`` in number order."""
    by_number = dict(enumerate(names))

    def convert(value: Any, path: str) -> str:
        if isinstance(value, str) and not _INTEGER_TEXT.fullmatch(value):
            return to_str(value, path)
        number = to_int(value, path)
        return by_number.get(number, str(number))

    return convert


def int_map(value: Any, path: str) -> dict[str, int]:
    """Read a ``map<string, int64>``; its keys are data (user ids, models), kept as sent."""
    if not isinstance(value, dict):
        raise NormalizationError(f"{path}: expected an object, got {type(value).__name__}")
    return {key_text(k, path): quantity_int(v, f"{path}[{k[:40]!r}]") for k, v in value.items()}


# --- messages ------------------------------------------------------------------


def _f(convert: Converter, default: Any = None) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"convert": convert})
    return field(default=default, metadata={"convert": convert})


_SPECS: dict[type[DataclassInstance], tuple[tuple[str, str, Converter], ...]] = {}


def message(value: Any, path: str, cls: type[T]) -> T:
    """Build dataclass ``cls`` from a JSON object, accepting proto and camelCase names."""
    if not isinstance(value, dict):
        raise NormalizationError(f"{path}: expected an object, got {type(value).__name__}")
    specs = _SPECS.get(cls)
    if specs is None:
        specs = tuple((f.name, camel_name(f.name), f.metadata["convert"]) for f in fields(cls))
        _SPECS[cls] = specs
    kwargs = {}
    for name, camel, convert in specs:
        raw = value.get(name)
        if raw is None:
            raw = value.get(camel)
        if raw is not None:
            kwargs[name] = convert(raw, f"{path}.{name}")
    return cls(**kwargs)


def _msg(cls: type) -> Converter:
    return lambda value, path: message(value, path, cls)


def _json_object(text: str) -> dict[str, Any]:
    """Parse a metadata string that should hold a JSON object; anything else gives {}."""
    if not text:
        return {}
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


@dataclass(frozen=True, slots=True)
class Room:
    """``NotifyEventRoom``: the room an event is about."""

    sid: str = _f(key_text, "")
    room_id: str = _f(key_text, "")
    empty_timeout: int = _f(count_int, 0)
    max_participants: int = _f(count_int, 0)
    creation_time: int = _f(to_time, 0)
    ended_time: int | None = _f(to_time)
    metadata: str = _f(to_str, "")
    num_participants: int = _f(count_int, 0)

    @property
    def title(self) -> str:
        """Return the room title from the room metadata, or ``""``; refuse one that is not
        text of at most 500 characters (it goes in the ledger, and in messages)."""
        title = _json_object(self.metadata).get("room_title")
        if not isinstance(title, str):
            return ""
        return str(_title_text(title, "event.room.metadata.room_title"))


@dataclass(frozen=True, slots=True)
class Participant:
    """LiveKit ``ParticipantInfo``, the fields a receiver uses."""

    sid: str = _f(key_text, "")
    identity: str = _f(key_text, "")
    name: str = _f(name_text, "")
    state: str = _f(enum("JOINING", "JOINED", "ACTIVE", "DISCONNECTED"), "JOINING")
    metadata: str = _f(to_str, "")
    joined_at: int = _f(to_time, 0)
    is_publisher: bool = _f(to_bool, False)


@dataclass(frozen=True, slots=True)
class Track:
    """LiveKit ``TrackInfo``, the fields a receiver uses."""

    sid: str = _f(key_text, "")
    type: str = _f(enum("AUDIO", "VIDEO", "DATA"), "AUDIO")
    name: str = _f(name_text, "")
    source: str = _f(
        enum("UNKNOWN", "CAMERA", "MICROPHONE", "SCREEN_SHARE", "SCREEN_SHARE_AUDIO"), "UNKNOWN"
    )
    mime_type: str = _f(to_str, "")
    width: int = _f(count_int, 0)
    height: int = _f(count_int, 0)


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """``RecordingInfoEvent``: a recording or RTMP stream; ``file_size`` is in MB."""

    record_id: str = _f(key_text, "")
    recorder_id: str = _f(key_text, "")
    recorder_msg: str = _f(to_str, "")
    file_path: str = _f(path_text, "")
    file_size: float = _f(at_most(to_float, MAX_FILE_MB), 0.0)


@dataclass(frozen=True, slots=True)
class SpeechService:
    """``SpeechServiceEvent`` (older servers)."""

    user_id: str = _f(key_text, "")
    total_usage: int = _f(quantity_int, 0)


@dataclass(frozen=True, slots=True)
class Analytics:
    """``AnalyticsEvent``: the analytics file is ready."""

    file_id: str = _f(key_text, "")


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Who an artifact belongs to."""

    user_id: str = _f(key_text, "")
    name: str = _f(name_text, "")


@dataclass(frozen=True, slots=True)
class ProviderJobInfo:
    """The AI provider's job behind an artifact."""

    job_id: str = _f(key_text, "")
    file_name: str = _f(path_text, "")


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A stored file; ``file_size`` is in bytes."""

    file_path: str = _f(path_text, "")
    file_size: int = _f(at_most(to_int, MAX_FILE_BYTES), 0)
    mime_type: str = _f(to_str, "")


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """AI tokens used; a cost of ``None`` means the sender reported none."""

    prompt_tokens: int = _f(quantity_int, 0)
    completion_tokens: int = _f(quantity_int, 0)
    total_tokens: int = _f(quantity_int, 0)
    breakdown: dict[str, int] = _f(int_map, {})
    prompt_tokens_estimated_cost: float | None = _f(cost_float)
    completion_tokens_estimated_cost: float | None = _f(cost_float)
    total_tokens_estimated_cost: float | None = _f(cost_float)


@dataclass(frozen=True, slots=True)
class DurationUsage:
    """Seconds of a metered service (speech transcription)."""

    duration_sec: int = _f(quantity_int, 0)
    breakdown: dict[str, int] = _f(int_map, {})
    duration_sec_estimated_cost: float | None = _f(cost_float)


@dataclass(frozen=True, slots=True)
class CharacterCountUsage:
    """Characters of a metered service (translation, speech synthesis)."""

    total_characters: int = _f(quantity_int, 0)
    breakdown: dict[str, int] = _f(int_map, {})
    total_characters_estimated_cost: float | None = _f(cost_float)


@dataclass(frozen=True, slots=True)
class ArtifactMetadata:
    """What an artifact carries: a file, a usage record, or both."""

    user_info: UserInfo | None = _f(_msg(UserInfo))
    provider_job_info: ProviderJobInfo | None = _f(_msg(ProviderJobInfo))
    file_info: FileInfo | None = _f(_msg(FileInfo))
    token_usage: TokenUsage | None = _f(_msg(TokenUsage))
    duration_usage: DurationUsage | None = _f(_msg(DurationUsage))
    character_count_usage: CharacterCountUsage | None = _f(_msg(CharacterCountUsage))
    reference_artifact_id: str = _f(key_text, "")


ARTIFACT_TYPES = (
    "UNKNOWN_ARTIFACT",
    "MEETING_ANALYTICS",
    "MEETING_SUMMARY",
    "MEETING_SUMMARY_USAGE",
    "SPEECH_TRANSCRIPTION",
    "SPEECH_TRANSCRIPTION_USAGE",
    "SYNTHESIZED_SPEECH_USAGE",
    "CHAT_TRANSLATION_USAGE",
    "AI_TEXT_CHAT_INTERACTION_USAGE",
    "AI_TEXT_CHAT_SUMMARIZATION_USAGE",
)


@dataclass(frozen=True, slots=True)
class Artifact:
    """``RoomArtifactWebhookEvent``: a file or usage record the server stored."""

    type: str = _f(enum(*ARTIFACT_TYPES), ARTIFACT_TYPES[0])
    artifact_id: str = _f(key_text, "")
    metadata: ArtifactMetadata = _f(_msg(ArtifactMetadata), ArtifactMetadata())


@dataclass(frozen=True, slots=True)
class Event:
    """``CommonNotifyEvent``, normalised; absent messages are ``None``."""

    event: str = _f(key_text, "")
    id: str = _f(key_text, "")
    created_at: int = _f(to_time, 0)
    room: Room = _f(_msg(Room), Room())
    participant: Participant | None = _f(_msg(Participant))
    track: Track | None = _f(_msg(Track))
    recording_info: RecordingInfo | None = _f(_msg(RecordingInfo))
    speech_service: SpeechService | None = _f(_msg(SpeechService))
    analytics: Analytics | None = _f(_msg(Analytics))
    room_artifact: Artifact | None = _f(_msg(Artifact))


def normalize(payload: Mapping[str, Any]) -> Event:
    """Build the normalised :class:`Event` from a parsed protojson object."""
    return message(payload, "event", Event)


def peek(payload: Mapping[str, Any]) -> tuple[str | None, str | None, int | None]:
    """Return room id, room sid and ``created_at`` if present and well-typed, else None each."""

    def pick(obj: Any, name: str, convert: Converter) -> Any:
        if not isinstance(obj, dict):
            return None
        raw = obj.get(name)
        if raw is None:
            raw = obj.get(camel_name(name))
        try:
            return None if raw is None else convert(raw, name)
        except NormalizationError:
            return None

    room = pick(payload, "room", lambda v, p: v)
    return (
        pick(room, "room_id", key_text),
        pick(room, "sid", key_text),
        pick(payload, "created_at", to_time),
    )


def check_times(event: Event, received_at: float) -> None:
    """Refuse an event stamped with a time more than a day after it was received.

    Times before 2020 are refused as they are read (:func:`to_time`). A late event is not:
    a session recorded months before its delivery (from an archive, say) is billed as sent.
    """
    latest = received_at + FUTURE_SLACK
    stamped = {
        "event.created_at": event.created_at,
        "event.room.creation_time": event.room.creation_time,
        "event.room.ended_time": event.room.ended_time or 0,
        "event.participant.joined_at": event.participant.joined_at if event.participant else 0,
    }
    for path, seconds in stamped.items():
        if seconds > latest:
            raise NormalizationError(f"{path}: more than a day after the event was received")
