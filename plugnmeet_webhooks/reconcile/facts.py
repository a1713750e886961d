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

from plugnmeet_webhooks.reconcile.api import PastRoom, rfc3339


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


def _fact(event: str, key: str, room: dict[str, Any], created_at: int | None, extra: dict[str, Any],
          path: str, answer: dict[str, Any]) -> Fact:  # fmt: skip
    body: dict[str, Any] = {"event": event, "id": key}
    if created_at:
        body["created_at"] = str(created_at)
    body["room"] = room
    body |= extra
    body["api"] = {"path": path, "answer": answer}
    text = json.dumps(body, ensure_ascii=False, sort_keys=False, separators=(",", ":"))
    return Fact(event, key, room.get("room_id") or None, room["sid"], created_at, text.encode())


def session_end_key(room_sid: str) -> str:
    """The key of the fact that ends a session."""
    return f"api:session_ended:{room_sid}"


def session_ended(past: PastRoom, *, with_start: bool) -> Fact:
    """The ``session_ended`` of a past session: its end is the API's ``ended``; its start
    (``with_start``: for a session the ledger has no start for) the API's ``created``."""
    room: dict[str, Any] = {"sid": past.room_sid}
    if past.room_id:
        room["room_id"] = past.room_id
    if with_start and past.created:
        room["creation_time"] = str(past.created)
    if past.title:
        room["metadata"] = json.dumps({"room_title": past.title}, ensure_ascii=False)
    key = session_end_key(past.room_sid)
    return _fact("session_ended", key, room, past.ended, {}, "/auth/room/fetchPastRooms", past.item)


def artifact_created(room_sid: str, item: dict[str, Any]) -> Fact | None:
    """The ``artifact_created`` of an artifact ``artifact/fetch`` listed for a session."""
    artifact_id = item.get("artifact_id")
    if not isinstance(artifact_id, str) or not artifact_id:
        return None
    room: dict[str, Any] = {"sid": room_sid}
    if isinstance(item.get("room_id"), str) and item["room_id"]:
        room["room_id"] = item["room_id"]
    artifact: dict[str, Any] = {"artifact_id": artifact_id}
    for name in ("type", "metadata"):
        if item.get(name) is not None:
            artifact[name] = item[name]
    return _fact(
        "artifact_created",
        f"api:artifact:{artifact_id}",
        room,
        rfc3339(item.get("created")),
        {"room_artifact": artifact},
        "/auth/artifact/fetch",
        item,
    )


def recording_proceeded(item: dict[str, Any]) -> Fact | None:
    """The ``recording_proceeded`` of a recording ``recording/fetch`` listed for a session."""
    record_id, sid = item.get("record_id"), item.get("room_sid")
    if not (isinstance(record_id, str) and record_id and isinstance(sid, str) and sid):
        return None
    room: dict[str, Any] = {"sid": sid}
    if isinstance(item.get("room_id"), str) and item["room_id"]:
        room["room_id"] = item["room_id"]
    info = {"record_id": record_id}
    info |= {k: item[k] for k in ("file_path", "file_size") if item.get(k) is not None}
    created = item.get("creation_time")
    created_at = int(created) if isinstance(created, str) and created.isdigit() else None
    return _fact(
        "recording_proceeded",
        f"api:recording:{record_id}",
        room,
        created_at or None,
        {"recording_info": info},
        "/auth/recording/fetch",
        item,
    )
