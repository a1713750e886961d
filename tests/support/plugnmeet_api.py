"""A local stand-in for the plugNmeet REST API (the ``/auth/...`` calls reconciliation makes).

A real HTTP server on 127.0.0.1 that answers as plugNmeet-server 2.4 does, from state a test puts
in: active rooms, past sessions, artifacts and recordings. Every call is a POST of a JSON body,
signed with ``API-KEY`` and ``HASH-SIGNATURE`` (lowercase hex HMAC-SHA256 of the exact body bytes,
keyed with the secret); a refused key or signature is the only HTTP error (401), everything else
is HTTP 200 with ``status`` true or false. Answers are written as Go's protojson writes them with
proto names and every field present: zero values written, 64-bit integers as strings, 32-bit ones
as numbers, enums by name, an unset message ``null`` and an unset ``optional`` field left out.

The recorded answers in ``tests/api_samples`` (copied from the shared contract) describe the
corpus session; :meth:`PlugNmeetApi.load_corpus_session` builds that state from them. A test can
also make the server fail (``fault``), slow it down (``delay``) and read what it received
(``seen``, ``calls``, ``bad_signatures``).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import hmac
import json
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SAMPLE_KEY = "plugnmeet"
SAMPLE_SECRET = "sample-secret-0123456789abcdef0123456789"
SAMPLES_DIR = Path(__file__).resolve().parents[1] / "api_samples"
CORPUS_ROOM_ID = "weekly-standup"
CORPUS_ROOM_SID = "RM_hK3v9QpZt2Lx"

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
NEVER_ENDED = "0001-01-01T00:00:00Z"  # Go's zero time: a session that never ended cleanly
NEVER_ENDED_TEXT = "0001-01-01 00:00:00"

# RoomArtifactType, by number (protojson readers accept the number as well as the name).
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

UNAUTHORIZED = {
    "status": False,
    "msg": "Failed to verify provided authentication details.",
    "status_code": "INVALID_TOKEN_OR_SIGNATURE",
}
INTERNAL_ERROR = {"status": False, "msg": "internal error", "status_code": "INTERNAL_ERROR"}
FAULTS = (None, "503", "hang", "status_false", "close")


def signature(body: bytes, secret: str = SAMPLE_SECRET) -> str:
    """Return the ``HASH-SIGNATURE`` plugNmeet expects for ``body``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def rfc3339(moment: int | None) -> str:
    """Unix seconds as plugNmeet's list answers write a DATETIME column (UTC)."""
    if moment is None:
        return NEVER_ENDED
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def datetime_text(moment: int | None) -> str:
    """Unix seconds as ``artifact/info`` and ``recording/info`` write a room's times."""
    if moment is None:
        return NEVER_ENDED_TEXT
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S")


def parse_rfc3339(text: str) -> int | None:
    """The inverse of :func:`rfc3339` (Go's zero time is None)."""
    if text == NEVER_ENDED:
        return None
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


# --- an artifact's metadata, written with every field --------------------------------------------


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _get(message: Mapping[str, Any], name: str) -> Any:
    """A field by its proto name or its lowerCamelCase JSON name (protojson reads both)."""
    value = message.get(name)
    return message.get(_camel(name)) if value is None else value


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _breakdown(value: Any) -> dict[str, str]:
    return {str(key): str(int(count)) for key, count in (value or {}).items()}


def _optional_costs(usage: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    return {name: _get(usage, name) for name in names if _get(usage, name) is not None}


def full_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """RoomArtifactMetadata (as a webhook carries it) written as the API writes it.

    Every plain field is present (an unset sub-message ``null``, an empty map ``{}``), only the
    usage that is set of the ``usage_details`` oneof, and the ``optional`` fields (estimated costs,
    ``reference_artifact_id``) only when set.
    """
    user = _get(metadata, "user_info")
    job = _get(metadata, "provider_job_info")
    file = _get(metadata, "file_info")
    full: dict[str, Any] = {
        "user_info": None
        if user is None
        else {"user_id": _get(user, "user_id") or "", "name": _get(user, "name") or ""},
        "provider_job_info": None
        if job is None
        else {"job_id": _get(job, "job_id") or "", "file_name": _get(job, "file_name") or ""},
        "file_info": None
        if file is None
        else {
            "file_path": _get(file, "file_path") or "",
            "file_size": str(_int(_get(file, "file_size"))),
            "mime_type": _get(file, "mime_type") or "",
        },
    }
    tokens = _get(metadata, "token_usage")
    duration = _get(metadata, "duration_usage")
    characters = _get(metadata, "character_count_usage")
    if tokens is not None:
        full["token_usage"] = {
            "prompt_tokens": _int(_get(tokens, "prompt_tokens")),
            "completion_tokens": _int(_get(tokens, "completion_tokens")),
            "total_tokens": _int(_get(tokens, "total_tokens")),
            "breakdown": _breakdown(_get(tokens, "breakdown")),
            **_optional_costs(
                tokens,
                (
                    "prompt_tokens_estimated_cost",
                    "completion_tokens_estimated_cost",
                    "total_tokens_estimated_cost",
                ),
            ),
        }
    elif duration is not None:
        full["duration_usage"] = {
            "duration_sec": _int(_get(duration, "duration_sec")),
            "breakdown": _breakdown(_get(duration, "breakdown")),
            **_optional_costs(duration, ("duration_sec_estimated_cost",)),
        }
    elif characters is not None:
        full["character_count_usage"] = {
            "total_characters": _int(_get(characters, "total_characters")),
            "breakdown": _breakdown(_get(characters, "breakdown")),
            **_optional_costs(characters, ("total_characters_estimated_cost",)),
        }
    reference = _get(metadata, "reference_artifact_id")
    if reference is not None:
        full["reference_artifact_id"] = reference
    return full


# --- what the server holds -----------------------------------------------------------------------


class Headers(dict[str, str]):
    """Request headers, their names in lower case and looked up in any case."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__((name.lower(), value) for name, value in items)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return super().__contains__(name.lower() if isinstance(name, str) else name)

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)


@dataclass
class Seen:
    """One request the server took: its path, exact body, headers (any case), signed or not."""

    path: str
    body: bytes
    headers: dict[str, str]
    signed_ok: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _ActiveRoom:
    row: int
    room_info: dict[str, Any]  # ActiveRoomInfo, every field
    participants: list[dict[str, Any]]  # livekit ParticipantInfo, every field


@dataclass
class _PastRoom:
    row: int
    room_title: str
    room_id: str
    room_sid: str
    joined_participants: int
    webhook_url: str
    created: int
    ended: int | None
    analytics_file_id: str | None

    def info(self, when: Callable[[int | None], str], *, analytics: bool = True) -> dict[str, Any]:
        """PastRoomInfo, its times written by ``when``."""
        info = {
            "room_title": self.room_title,
            "room_id": self.room_id,
            "room_sid": self.room_sid,
            "joined_participants": str(self.joined_participants),
            "webhook_url": self.webhook_url,
            "created": when(self.created),
            "ended": when(self.ended),
        }
        if analytics and self.analytics_file_id is not None:
            info["analytics_file_id"] = self.analytics_file_id
        return info

    @cached_property
    def listed(self) -> dict[str, Any]:
        """As ``fetchPastRooms`` lists it (made once: a row does not change)."""
        return self.info(rfc3339)


@dataclass
class _Artifact:
    row: int
    artifact_id: str
    room_id: str
    room_sid: str
    type: str
    created: int
    metadata: dict[str, Any]  # already written with every field

    @cached_property
    def info(self) -> dict[str, Any]:
        """ArtifactInfo (made once: an artifact does not change)."""
        return {
            "artifact_id": self.artifact_id,
            "room_id": self.room_id,
            "type": self.type,
            "created": rfc3339(self.created),
            "metadata": self.metadata,
        }


@dataclass
class _Recording:
    row: int
    record_id: str
    room_id: str
    room_sid: str
    file_path: str
    file_size: float
    creation_time: int
    room_creation_time: int

    @cached_property
    def info(self) -> dict[str, Any]:
        """RecordingInfo; its optional ``metadata`` (never set in the samples) left out."""
        return {
            "record_id": self.record_id,
            "room_id": self.room_id,
            "room_sid": self.room_sid,
            "file_path": self.file_path,
            "file_size": self.file_size,
            "creation_time": str(self.creation_time),
            "room_creation_time": str(self.room_creation_time),
        }


@dataclass
class _Rows:
    """Rows in insertion order (by row id), indexed by id, by session and by room id."""

    ordered: list[Any] = field(default_factory=list)
    by_key: dict[str, Any] = field(default_factory=dict)
    by_sid: dict[str, list[Any]] = field(default_factory=dict)
    by_room_id: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, key: str, sid: str, room_id: str, row: Any) -> None:
        if key in self.by_key:
            raise ValueError(f"{key!r} is already there")
        self.by_key[key] = row
        for rows in (
            self.ordered,
            self.by_sid.setdefault(sid, []),
            self.by_room_id.setdefault(room_id, []),
        ):
            if rows and rows[-1].row > row.row:
                bisect.insort(rows, row, key=lambda r: r.row)
            else:
                rows.append(row)

    def of_rooms(self, room_ids: list[str]) -> list[Any]:
        lists = [self.by_room_id.get(room_id, []) for room_id in dict.fromkeys(room_ids)]
        lists = [rows for rows in lists if rows]
        if len(lists) == 1:
            return lists[0]
        return sorted((row for rows in lists for row in rows), key=lambda r: r.row)


def _page(rows: list[Any], start: int, limit: int, ascending: bool) -> list[Any]:
    """One page of ``rows`` (oldest first), newest first unless ``ascending``."""
    if ascending:
        return rows[start : start + limit]
    end = len(rows) - start
    if end <= 0:
        return []
    return rows[max(0, end - limit) : end][::-1]


# --- reading a request as protojson does ---------------------------------------------------------


class _BadRequest(Exception):
    """The body cannot be read as the request message: INVALID_PARAMETERS with this text."""


_UINT_MAX = {"uint32": 2**32 - 1, "uint64": 2**64 - 1}

# path → (request message, {field: kind}, required fields); unknown fields are discarded.
_REQUESTS: dict[str, tuple[str, dict[str, str], tuple[str, ...]]] = {
    "/auth/room/getActiveRoomInfo": ("GetActiveRoomInfoReq", {"room_id": "string"}, ("room_id",)),
    "/auth/room/isRoomActive": ("IsRoomActiveReq", {"room_id": "string"}, ("room_id",)),
    "/auth/room/fetchPastRooms": (
        "FetchPastRoomsReq",
        {"room_ids": "repeated", "from": "uint32", "limit": "uint32", "order_by": "string"},
        (),
    ),
    "/auth/artifact/fetch": (
        "FetchArtifactsReq",
        {
            "room_ids": "repeated",
            "room_sid": "string",
            "type": "enum",
            "from": "uint64",
            "limit": "uint64",
            "order_by": "string",
        },
        (),
    ),
    "/auth/artifact/info": ("ArtifactInfoReq", {"artifact_id": "string"}, ("artifact_id",)),
    "/auth/recording/fetch": (
        "FetchRecordingsReq",
        {
            "room_ids": "repeated",
            "room_sid": "string",
            "from": "uint32",
            "limit": "uint32",
            "order_by": "string",
        },
        (),
    ),
    "/auth/recording/info": ("RecordingInfoReq", {"record_id": "string"}, ("record_id",)),
}


def _read_field(message: str, name: str, kind: str, value: Any) -> Any:
    def bad() -> _BadRequest:
        shown = json.dumps(value, ensure_ascii=False)
        label = "string" if kind == "repeated" else kind
        return _BadRequest(f"proto: ({message}) invalid value for {label} field {name}: {shown}")

    if kind == "string":
        if not isinstance(value, str):
            raise bad()
        return value
    if kind == "repeated":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise bad()
        return value
    if kind == "enum":
        if isinstance(value, str) and value in ARTIFACT_TYPES:
            return value
        if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
            return ARTIFACT_TYPES[value] if 0 <= value < len(ARTIFACT_TYPES) else str(value)
        raise bad()
    # uint32 / uint64: a JSON number or a string holding one, whole and in range.
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise bad() from None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise bad()
    if isinstance(number, float):
        if not number.is_integer():
            raise bad()
        number = int(number)
    if not 0 <= number <= _UINT_MAX[kind]:
        raise bad()
    return number


def read_request(path: str, body: bytes) -> dict[str, Any]:
    """The request message for ``path`` from ``body``: set fields only, by proto name."""
    message, fields, required = _REQUESTS[path]
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise _BadRequest(f"proto: ({message}) syntax error: {error}") from None
    if not isinstance(payload, dict):
        token = body.strip()[:1].decode(errors="replace")
        raise _BadRequest(f"proto: ({message}) syntax error: unexpected token {token}")
    request: dict[str, Any] = {}
    for name, kind in fields.items():
        value = _get(payload, name)
        if value is not None:
            request[name] = _read_field(message, name, kind, value)
    missing = [name for name in required if not request.get(name)]
    if missing:
        raise _BadRequest(
            "validation error:"
            + "".join(f"\n - {name}: value is required [required]" for name in missing)
        )
    return request


def _participant(number: int, joined_at: int) -> dict[str, Any]:
    """A livekit ParticipantInfo for a made-up participant, every field as the API writes it."""
    return {
        "sid": f"PA_{number}",
        "identity": f"user-{number}",
        "state": "ACTIVE",
        "tracks": [],
        "metadata": "{}",
        "joined_at": str(joined_at),
        "joined_at_ms": str(joined_at * 1000),
        "name": f"User {number}",
        "version": 1,
        "permission": {
            "can_subscribe": True,
            "can_publish": True,
            "can_publish_data": True,
            "can_publish_sources": [],
            "hidden": False,
            "recorder": False,
            "can_update_metadata": False,
            "agent": False,
            "can_subscribe_metrics": False,
            "can_manage_agent_session": False,
        },
        "region": "",
        "is_publisher": False,
        "kind": "STANDARD",
        "attributes": {},
        "disconnect_reason": "UNKNOWN_REASON",
        "kind_details": [],
        "data_tracks": [],
        "client_protocol": 1,
        "capabilities": [],
    }


def _sample(name: str) -> dict[str, Any]:
    """One recorded call of ``tests/api_samples`` by its file name's start (``"13_"``)."""
    (path,) = SAMPLES_DIR.glob(f"{name}*.json")
    sample: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return sample


def _answer_of(name: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(_sample(name)["response_body"])
    return answer


def _ok(**fields: Any) -> dict[str, Any]:
    return {"status": True, "msg": "success", "status_code": "SUCCESS", **fields}


def _not_found(msg: str, **fields: Any) -> dict[str, Any]:
    return {"status": False, "msg": msg, "status_code": "NOT_FOUND", **fields}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (its timeout, a test's fault) is no error of the server."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class PlugNmeetApi:
    """The plugNmeet REST API on a local port, answering from the state a test puts in.

    State and knobs may change while the server runs (the state is behind a lock). ``fault``:
    None, ``"503"`` (HTTP 503 with a text body), ``"hang"`` (wait ``hang_seconds``, then answer;
    :meth:`stop` ends the wait and drops the connection), ``"status_false"`` (HTTP 200 with an
    INTERNAL_ERROR answer) or ``"close"`` (close the connection without an answer); with
    ``fault_paths`` set, only for those paths. ``delay`` is added to every answer. A fault or
    delay comes before the signature is checked, as a proxy's would.
    """

    def __init__(
        self,
        api_key: str = SAMPLE_KEY,
        secret: str = SAMPLE_SECRET,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.api_key = api_key
        self.tls = tls  # serve HTTPS with this context
        self.secret = secret
        self.url = ""
        self.fault: str | None = None
        self.fault_paths: set[str] | None = None
        self.hang_seconds = 30.0
        self.delay = 0.0
        self.seen: list[Seen] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._routes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "/auth/room/getActiveRoomsInfo": self._on_active_rooms,
            "/auth/room/getActiveRoomInfo": self._on_active_room,
            "/auth/room/isRoomActive": self._on_is_room_active,
            "/auth/room/fetchPastRooms": self._on_past_rooms,
            "/auth/artifact/fetch": self._on_artifacts,
            "/auth/artifact/info": self._on_artifact_info,
            "/auth/recording/fetch": self._on_recordings,
            "/auth/recording/info": self._on_recording_info,
        }
        self.reset()

    # --- life ------------------------------------------------------------------------------------

    def start(self) -> PlugNmeetApi:
        """Listen on a free port of 127.0.0.1 (``url``) and serve in a thread."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        scheme = "http"
        if self.tls is not None:
            self._server.socket = self.tls.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="plugnmeet-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end any hang or delay, close every open connection, free the port."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PlugNmeetApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- state -----------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every room, artifact and recording (not what was seen)."""
        with self._lock:
            self._next_row = 1
            self._active: dict[str, _ActiveRoom] = {}  # by sid, in insertion order
            self._active_by_room_id: dict[str, _ActiveRoom] = {}
            self._past = _Rows()
            self._artifacts = _Rows()
            self._recordings = _Rows()

    def _row(self) -> int:
        row = self._next_row
        self._next_row += 1
        return row

    def add_active_room(
        self,
        room_id: str,
        sid: str,
        *,
        title: str = "",
        creation_time: int,
        participants: int = 0,
    ) -> None:
        """A running session of ``room_id`` with ``participants`` made-up participants."""
        room_info = {
            "room_title": title,
            "room_id": room_id,
            "sid": sid,
            "joined_participants": str(participants),
            "is_running": 1,
            "is_recording": 0,
            "is_active_rtmp": 0,
            "webhook_url": "",
            "is_breakout_room": 0,
            "parent_room_id": "",
            "creation_time": str(creation_time),
            "metadata": json.dumps({"room_title": title}),
        }
        people = [_participant(n, creation_time) for n in range(1, participants + 1)]
        self._add_active(room_info, people)

    def _add_active(self, room_info: dict[str, Any], participants: list[dict[str, Any]]) -> None:
        with self._lock:
            sid, room_id = room_info["sid"], room_info["room_id"]
            if sid in self._active or sid in self._past.by_key:
                raise ValueError(f"session {sid!r} is already there")
            if room_id in self._active_by_room_id:
                raise ValueError(f"room {room_id!r} is already running")
            room = _ActiveRoom(self._row(), room_info, participants)
            self._active[sid] = room
            self._active_by_room_id[room_id] = room

    def end_room(self, sid: str, ended: int | None) -> None:
        """Move a running session to the past (``ended`` None: it never ended cleanly).

        It keeps the row it had while running, so it sorts by when it was created.
        """
        with self._lock:
            room = self._active.pop(sid)
            del self._active_by_room_id[room.room_info["room_id"]]
            info = room.room_info
            past = _PastRoom(
                room.row,
                info["room_title"],
                info["room_id"],
                sid,
                int(info["joined_participants"]),
                info["webhook_url"],
                int(info["creation_time"]),
                ended,
                None,
            )
            self._past.add(sid, sid, past.room_id, past)

    def add_past_room(
        self,
        room_id: str,
        sid: str,
        *,
        title: str = "",
        created: int,
        ended: int | None,
        joined_participants: int = 0,
        analytics_file_id: str | None = None,
    ) -> None:
        """An ended session (``ended`` None: it never ended cleanly)."""
        self._add_past(room_id, sid, title, created, ended, joined_participants, analytics_file_id)

    def _add_past(
        self,
        room_id: str,
        sid: str,
        title: str,
        created: int,
        ended: int | None,
        joined_participants: int,
        analytics_file_id: str | None,
        webhook_url: str = "",
    ) -> None:
        with self._lock:
            if sid in self._active:
                raise ValueError(f"session {sid!r} is running")
            past = _PastRoom(
                self._row(),
                title,
                room_id,
                sid,
                joined_participants,
                webhook_url,
                created,
                ended,
                analytics_file_id,
            )
            self._past.add(sid, sid, room_id, past)

    def add_artifact(
        self,
        room_sid: str,
        room_id: str,
        artifact_id: str,
        type: str,
        created: int,
        metadata: dict[str, Any],
    ) -> None:
        """An artifact; ``metadata`` as a webhook's ``room_artifact.metadata`` (proto names)."""
        full = full_metadata(metadata)
        with self._lock:
            artifact = _Artifact(self._row(), artifact_id, room_id, room_sid, type, created, full)
            self._artifacts.add(artifact_id, room_sid, room_id, artifact)

    def add_recording(
        self,
        room_sid: str,
        room_id: str,
        record_id: str,
        *,
        file_path: str,
        file_size: float,
        creation_time: int,
        room_creation_time: int,
    ) -> None:
        """A recording; ``file_size`` in MB (kept to 2 places, as the server stores it)."""
        with self._lock:
            recording = _Recording(
                self._row(),
                record_id,
                room_id,
                room_sid,
                file_path,
                round(float(file_size), 2),
                creation_time,
                room_creation_time,
            )
            self._recordings.add(record_id, room_sid, room_id, recording)

    def load_corpus_session(self, state: str = "ended") -> None:
        """Replace the state with the corpus session as ``tests/api_samples`` records it.

        ``"running"``: the room active with its three participants, nothing past (sample 01).
        ``"ended"``: the past session, its 9 artifacts and its recording (samples 09, 13, 19).
        """
        if state not in ("running", "ended"):
            raise ValueError(f"state is 'running' or 'ended', not {state!r}")
        self.reset()
        if state == "running":
            (room,) = _answer_of("01_")["rooms"]
            self._add_active(room["room_info"], room["participants_info"])
            return
        (past,) = _answer_of("09_")["result"]["rooms_list"]
        self._add_past(
            past["room_id"],
            past["room_sid"],
            past["room_title"],
            _created(past["created"]),
            parse_rfc3339(past["ended"]),
            int(past["joined_participants"]),
            past.get("analytics_file_id"),
            past["webhook_url"],
        )
        listing = _sample("13_")
        sid = json.loads(listing["request_body"])["room_sid"]
        for artifact in reversed(json.loads(listing["response_body"])["result"]["artifacts_list"]):
            self.add_artifact(
                sid,
                artifact["room_id"],
                artifact["artifact_id"],
                artifact["type"],
                _created(artifact["created"]),
                artifact["metadata"],
            )
        for recording in reversed(_answer_of("19_")["result"]["recordings_list"]):
            self.add_recording(
                recording["room_sid"],
                recording["room_id"],
                recording["record_id"],
                file_path=recording["file_path"],
                file_size=recording["file_size"],
                creation_time=int(recording["creation_time"]),
                room_creation_time=int(recording["room_creation_time"]),
            )

    # --- what it saw -----------------------------------------------------------------------------

    def calls(self, path: str) -> list[Seen]:
        """The requests taken on ``path``, in order."""
        with self._lock:
            return [seen for seen in self.seen if seen.path == path]

    # --- the answers (called with the lock held) -------------------------------------------------

    def _on_active_rooms(self, _request: dict[str, Any]) -> dict[str, Any]:
        rooms = [
            {"room_info": room.room_info, "participants_info": room.participants}
            for room in self._active.values()
        ]
        if not rooms:
            return {**_not_found("no active room found"), "rooms": []}
        return _ok(rooms=rooms)

    def _on_active_room(self, request: dict[str, Any]) -> dict[str, Any]:
        room = self._active_by_room_id.get(request["room_id"])
        if room is None:
            return {
                "status": False,
                "msg": "room not found in active state",
                "status_code": "ROOM_NOT_FOUND",
                "room": None,
            }
        return _ok(room={"room_info": room.room_info, "participants_info": room.participants})

    def _on_is_room_active(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["room_id"] in self._active_by_room_id:
            return {
                "status": True,
                "msg": "room is active",
                "status_code": "SUCCESS",
                "is_active": True,
            }
        return {
            "status": True,
            "msg": "room not found",
            "status_code": "ROOM_NOT_FOUND",
            "is_active": False,
        }

    @staticmethod
    def _paging(request: dict[str, Any]) -> tuple[int, int, str, bool]:
        """``from``, ``limit`` (20 by default, at most 100), ``order_by`` as echoed, ascending."""
        order_by = request.get("order_by") or "DESC"
        limit = min(request.get("limit") or DEFAULT_LIMIT, MAX_LIMIT)
        return request.get("from", 0), limit, order_by, order_by == "ASC"

    def _on_past_rooms(self, request: dict[str, Any]) -> dict[str, Any]:
        room_ids = request.get("room_ids")
        rows: list[_PastRoom] = self._past.of_rooms(room_ids) if room_ids else self._past.ordered
        if not rows:
            return _not_found("no room found")
        start, limit, order_by, ascending = self._paging(request)
        page = _page(rows, start, limit, ascending)
        result = {
            "total_rooms": str(len(rows)),
            "from": start,
            "limit": limit,
            "order_by": order_by,
            "rooms_list": [room.listed for room in page],
        }
        return _ok(result=result)

    def _of_session(self, kept: _Rows, request: dict[str, Any]) -> list[Any]:
        """Rows of ``room_sid`` when given (it wins), else of ``room_ids``, else every row."""
        if request.get("room_sid"):
            return kept.by_sid.get(request["room_sid"], [])
        if request.get("room_ids"):
            return kept.of_rooms(request["room_ids"])
        return kept.ordered

    def _on_artifacts(self, request: dict[str, Any]) -> dict[str, Any]:
        rows: list[_Artifact] = self._of_session(self._artifacts, request)
        kind = request.get("type")
        if kind is not None:
            rows = [artifact for artifact in rows if artifact.type == kind]
        if not rows:
            return _not_found("no artifact found")
        start, limit, order_by, ascending = self._paging(request)
        page = _page(rows, start, limit, ascending)
        result: dict[str, Any] = {
            "total_artifacts": str(len(rows)),
            "from": str(start),
            "limit": str(limit),
            "order_by": order_by,
        }
        if kind is not None:
            result["type"] = kind  # an optional field: written only when the request set it
        result["artifacts_list"] = [artifact.info for artifact in page]
        return _ok(result=result)

    def _session_info(self, sid: str, *, analytics: bool) -> dict[str, Any] | None:
        """PastRoomInfo of a session with ``"2006-01-02 15:04:05"`` times, or None."""
        past: _PastRoom | None = self._past.by_key.get(sid)
        if past is not None:
            return past.info(datetime_text, analytics=analytics)
        room = self._active.get(sid)
        if room is None:
            return None
        info = room.room_info
        return {
            "room_title": info["room_title"],
            "room_id": info["room_id"],
            "room_sid": sid,
            "joined_participants": info["joined_participants"],
            "webhook_url": info["webhook_url"],
            "created": datetime_text(int(info["creation_time"])),
            "ended": NEVER_ENDED_TEXT,
        }

    def _on_artifact_info(self, request: dict[str, Any]) -> dict[str, Any]:
        artifact: _Artifact | None = self._artifacts.by_key.get(request["artifact_id"])
        if artifact is None:
            return _not_found("artifact not found")
        answer = _ok(artifact_info=artifact.info)
        # Sample 17: this answer's room_info has no analytics_file_id, even when one is set.
        room = self._session_info(artifact.room_sid, analytics=False)
        if room is not None:
            answer["room_info"] = room
        return answer

    def _on_recordings(self, request: dict[str, Any]) -> dict[str, Any]:
        rows: list[_Recording] = self._of_session(self._recordings, request)
        if not rows:
            return _not_found("no recording found")
        start, limit, order_by, ascending = self._paging(request)
        page = _page(rows, start, limit, ascending)
        result = {
            "total_recordings": str(len(rows)),
            "from": start,
            "limit": limit,
            "order_by": order_by,
            "recordings_list": [recording.info for recording in page],
        }
        return _ok(result=result)

    def _on_recording_info(self, request: dict[str, Any]) -> dict[str, Any]:
        recording: _Recording | None = self._recordings.by_key.get(request["record_id"])
        if recording is None:
            return _not_found("recording not found")
        return _ok(
            recording_info=recording.info,
            room_info=self._session_info(recording.room_sid, analytics=True),
        )

    # --- HTTP ------------------------------------------------------------------------------------

    def _signed_ok(self, headers: Message, body: bytes) -> bool:
        key = headers.get("API-KEY") or ""
        given = headers.get("HASH-SIGNATURE") or ""
        expected = signature(body, self.secret)
        return hmac.compare_digest(key.encode(), self.api_key.encode()) and hmac.compare_digest(
            given.encode(), expected.encode()
        )

    def _wait(self, seconds: float) -> bool:
        """Wait ``seconds``; False when :meth:`stop` ended the wait."""
        return seconds <= 0 or not self._stopping.wait(seconds)

    def _answer(self, path: str, body: bytes, headers: Message) -> tuple[int, Any] | None:
        """(HTTP status, JSON answer or text) for one POST, or None to close without answering."""
        signed_ok = self._signed_ok(headers, body)
        with self._lock:
            self.seen.append(Seen(path, body, Headers(headers.items()), signed_ok))
            fault = self.fault
            if self.fault_paths is not None and path not in self.fault_paths:
                fault = None
            delay, hang = self.delay, self.hang_seconds
        if not self._wait(delay):
            return None
        if fault == "close":
            return None
        if fault == "503":
            return 503, "Service Unavailable"
        if fault == "hang" and not self._wait(hang):
            return None
        if fault == "status_false":
            return 200, INTERNAL_ERROR
        if not path.startswith("/auth/"):
            return 404, f"Cannot POST {path}"
        if not signed_ok:
            with self._lock:
                self.bad_signatures += 1
            return 401, UNAUTHORIZED
        route = self._routes.get(path)
        if route is None:
            return 404, f"Cannot POST {path}"
        try:
            request = read_request(path, body) if path in _REQUESTS else {}
        except _BadRequest as error:
            return 200, {"status": False, "msg": str(error), "status_code": "INVALID_PARAMETERS"}
        with self._lock:
            return 200, route(request)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a Go server offers

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with api._lock:
                    api._connections.add(self.connection)

            def finish(self) -> None:
                with api._lock:
                    api._connections.discard(self.connection)
                with contextlib.suppress(OSError):
                    super().finish()

            def do_POST(self) -> None:
                path = self.path.split("?", 1)[0]
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = api._answer(path, body, self.headers)
                if answer is None:
                    self.close_connection = True
                    return
                status, content = answer
                if isinstance(content, str):
                    self._send(status, content.encode(), "text/plain; charset=utf-8")
                else:
                    text = json.dumps(content, ensure_ascii=False, separators=(",", ":"))
                    self._send(status, text.encode(), "application/json")

            def _other_method(self) -> None:
                path = self.path.split("?", 1)[0]
                status = 405 if path in api._routes else 404
                text = "Method Not Allowed" if status == 405 else f"Cannot {self.command} {path}"
                self._send(status, text.encode(), "text/plain; charset=utf-8")

            do_GET = do_PUT = do_DELETE = do_PATCH = _other_method

            def _send(self, status: int, content: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def _created(text: str) -> int:
    moment = parse_rfc3339(text)
    if moment is None:
        raise ValueError(f"no creation time in {text!r}")
    return moment
