"""What the plugNmeet API says, written as the delivery that was lost would have said it.

Each fact is stored in the events table like a delivery (source ``api``) and applied by the
same handlers, so ``rebuild-ledger`` and ``replay`` reproduce it. Its body is the event the
lost delivery would have carried, with the API's answer for that item kept beside it under
``api`` (``path`` and ``answer``), so the events page shows where the fact came from. Each has
a key of its own kind (``api:session_ended:<room_sid>``, ``api:artifact:<artifact_id>``,
``api:recording:<record_id>``): a second pass stores nothing new, while the ledger rows the
fact writes are keyed as the webhook's are (the session by ``room_sid``, usage and files by
``artifact_id``, recordings by ``record_id``), so a late delivery changes no figure.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from plugnmeet_webhooks.normalize import MAX_KEY, MAX_PATH, NormalizationError, to_time
from plugnmeet_webhooks.reconcile.api import PastRoom, rfc3339

MAX_EVENT_KEY = 200  # the events table's dedupe_key


class Unusable(ValueError):
    """An item of the API's answer that no fact can be made of; the message says why."""


@dataclass(frozen=True, slots=True)
class Fact:
    """One stored event's worth of what the API said."""

    event: str
    dedupe_key: str
    room_id: str | None
    room_sid: str
    created_at: int | None
    body: bytes

    @property
    def sha256(self) -> str:
        """The hex digest of the body, as kept for deliveries."""
        return hashlib.sha256(self.body).hexdigest()

    @property
    def payload(self) -> dict[str, Any]:
        """The body, parsed."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


def _id(item: dict[str, Any], name: str, what: str) -> str:
    """An id of the answer that the ledger can key: text of 1 to 200 characters."""
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise Unusable(f"{what} without a {name}")
    if len(value) > MAX_KEY:
        raise Unusable(f"{what} whose {name} is longer than {MAX_KEY} characters")
    return value


def key(kind: str, id_: str) -> str:
    """The dedupe key of a fact: ``api:<kind>:<id>``, or its digest when that is too long."""
    made = f"api:{kind}:{id_}"
    if len(made) <= MAX_EVENT_KEY:
        return made
    return f"api:{kind}:sha256:{hashlib.sha256(id_.encode()).hexdigest()}"


def _room(sid: str, item: dict[str, Any]) -> dict[str, Any]:
    room: dict[str, Any] = {"sid": sid}
    room_id = item.get("room_id")
    if isinstance(room_id, str) and room_id and len(room_id) <= MAX_KEY:
        room["room_id"] = room_id
    return room


def _fact(
    event: str,
    key: str,
    room: dict[str, Any],
    created_at: int | None,
    extra: dict[str, Any],
    path: str,
    answer: dict[str, Any],
) -> Fact:
    body: dict[str, Any] = {"event": event, "id": key}
    if created_at:
        body["created_at"] = str(created_at)
    body["room"] = room
    body |= extra
    body["api"] = {"path": path, "answer": answer}
    text = json.dumps(body, ensure_ascii=False, sort_keys=False, separators=(",", ":"))
    return Fact(event, key, room.get("room_id") or None, room["sid"], created_at, text.encode())


def session_ended(past: PastRoom, *, with_start: bool) -> Fact:
    """The ``session_ended`` of a past session: its end is the API's ``ended``; its start
    (``with_start``: for a session the ledger has no start for) the API's ``created``.

    The room's ``webhook_url`` is left out of the answer kept: it may hold a token.
    """
    sid = _id(past.item, "room_sid", "a past session")
    room = _room(sid, past.item)
    if with_start and past.created:
        room["creation_time"] = str(past.created)
    if past.title:
        room["metadata"] = json.dumps({"room_title": past.title[:500]}, ensure_ascii=False)
    answer = {k: v for k, v in past.item.items() if k != "webhook_url"}
    return _fact(
        "session_ended",
        key("session_ended", sid),
        room,
        past.ended,
        {},
        "/auth/room/fetchPastRooms",
        answer,
    )


def artifact_created(room_sid: str, item: dict[str, Any]) -> Fact:
    """The ``artifact_created`` of an artifact ``artifact/fetch`` listed for a session."""
    artifact_id = _id(item, "artifact_id", "an artifact")
    artifact: dict[str, Any] = {"artifact_id": artifact_id}
    for name in ("type", "metadata"):
        if item.get(name) is not None:
            artifact[name] = item[name]
    return _fact(
        "artifact_created",
        key("artifact", artifact_id),
        _room(room_sid, item),
        rfc3339(item.get("created")),
        {"room_artifact": artifact},
        "/auth/artifact/fetch",
        item,
    )


def recording_proceeded(item: dict[str, Any]) -> Fact:
    """The ``recording_proceeded`` of a recording ``recording/fetch`` listed for a session."""
    record_id = _id(item, "record_id", "a recording")
    sid = _id(item, "room_sid", "a recording")
    path = item.get("file_path")
    if not isinstance(path, str) or not path or len(path) > MAX_PATH:
        raise Unusable("a recording without a file path (not ready yet?)")
    info = {"record_id": record_id, "file_path": path}
    if item.get("file_size") is not None:
        info["file_size"] = item["file_size"]
    try:
        created_at = to_time(item.get("creation_time"), "creation_time") or None
    except NormalizationError:
        created_at = None
    return _fact(
        "recording_proceeded",
        key("recording", record_id),
        _room(sid, item),
        created_at,
        {"recording_info": info},
        "/auth/recording/fetch",
        item,
    )
