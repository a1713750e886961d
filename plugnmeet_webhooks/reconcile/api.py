"""A client of plugNmeet's REST API: what a lost delivery would have said.

Every call is a ``POST`` of a JSON body to ``<server>/auth/<group>/<method>``, signed with
the headers ``API-KEY`` and ``HASH-SIGNATURE`` (the lowercase hex HMAC-SHA256 of the exact
body bytes, keyed with the server's secret). The body is serialised once and those bytes are
both signed and sent. Answers are HTTP 200 whatever happened: ``status`` says whether the
call worked, and "nothing found" is ``status: false`` with ``NOT_FOUND``, which the list
calls turn into an empty list. Only a refused key or signature is an HTTP error (401).

Each call has a deadline (the server sets none), TLS is verified (against ``ca`` when
given), and neither the secret nor a signature reaches a log line or an error message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, ReadTimeoutError

from config import PlugNmeetServer
from plugnmeet_webhooks.normalize import EARLIEST, TIME_MAX
from plugnmeet_webhooks.outbound import Watch, watched_pools, watching
from plugnmeet_webhooks.text import plain

PAGE = 100  # the most a list call answers at once
MAX_PAGES = 10_000  # a million sessions or artifacts: more is a server that does not page
DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a page of 100 artifacts is a few hundred KB


class ApiError(Exception):
    """A call to the plugNmeet API did not give an answer to use; ``endpoint`` says which."""

    def __init__(self, endpoint: str, message: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint


class Unreachable(ApiError):
    """The server did not answer in time, could not be reached, or answered no API answer."""


class Refused(ApiError):
    """The server refused the API key or the signature (HTTP 401)."""


class Failed(ApiError):
    """The server answered ``status: false`` for a reason other than "nothing found"."""


@dataclass(frozen=True, slots=True)
class ActiveRoom:
    """A room plugNmeet has running now."""

    room_id: str
    sid: str


@dataclass(frozen=True, slots=True)
class PastRoom:
    """An ended session as ``room/fetchPastRooms`` lists it (``item``: as answered)."""

    room_id: str
    room_sid: str
    title: str
    created: int | None
    ended: int | None  # None: plugNmeet has no end for it (it never ended cleanly)
    item: dict[str, Any]


def rfc3339(value: Any) -> int | None:
    """Read an RFC 3339 time as unix seconds; None for plugNmeet's zero time or no time."""
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    seconds = int(when.timestamp())
    return seconds if EARLIEST <= seconds < TIME_MAX else None


def _text(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    return value if isinstance(value, str) else ""


class _Clock:
    """Keeps the deadline of the one call in flight: past it, its connection is shut."""

    def __init__(self) -> None:
        self._watch: Watch | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def begin(self, seconds: float) -> Watch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pnm-api-deadline", daemon=True)
            self._thread.start()
        self._watch = Watch(time.monotonic() + seconds)
        return self._watch

    def end(self) -> None:
        self._watch = None

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            watch = self._watch
            if watch is not None and not watch.expired and time.monotonic() > watch.deadline:
                watch.expire()


class PlugNmeetApi:
    """The REST API of one plugNmeet server, signed with its key pair (one caller at a time).

    ``before_call`` runs before each call (reconciliation renews its lease there, and stops
    by raising).
    """

    def __init__(
        self,
        server: PlugNmeetServer,
        *,
        ca: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        before_call: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        self.timeout = timeout
        self._secret = server.secret.encode()
        self._http = watched_pools(2, 1, cert_reqs="CERT_REQUIRED", ca_certs=ca)
        self._clock = _Clock()
        self._before_call = before_call

    def close(self) -> None:
        """Close the connections kept open to the server."""
        self._clock.stop()
        self._http.clear()

    def call(self, endpoint: str, request: dict[str, Any]) -> dict[str, Any]:
        """POST ``request`` to ``/auth/<endpoint>``; return the answer, or raise ApiError.

        A ``status: false`` answer is returned when it says ``NOT_FOUND`` (nothing found);
        any other raises :class:`Failed`.
        """
        body = json.dumps(request, separators=(",", ":")).encode()
        signature = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "API-KEY": self.server.api_key,
            "HASH-SIGNATURE": signature,
        }
        url = f"{self.server.url}/auth/{endpoint}"
        if self._before_call is not None:
            self._before_call()
        # A hard deadline for the whole call: a read timeout alone restarts with every byte
        # a slow server drips.
        watch = self._clock.begin(self.timeout)
        watching(watch)
        try:
            response = self._http.request(
                "POST",
                url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(
                    connect=min(CONNECT_TIMEOUT, self.timeout), read=self.timeout
                ),
                retries=False,
                redirect=False,
                preload_content=False,
            )
            try:
                raw = response.read(MAX_ANSWER_BYTES + 1)
            finally:
                response.release_conn()
        except (HTTPError, OSError) as exc:
            # The read timeout is the deadline too: whichever fires first, the same words.
            late = watch.expired or isinstance(exc, ReadTimeoutError)
            reason = self._late() if late else _reason(exc)
            raise Unreachable(
                endpoint, f"the plugNmeet server did not answer {endpoint} ({reason})"
            ) from None
        finally:
            watching(None)
            watch.detach()
            self._clock.end()
        if watch.expired:
            raise Unreachable(
                endpoint, f"the plugNmeet server did not answer {endpoint} ({self._late()})"
            )
        if response.status == 401:
            raise Refused(
                endpoint,
                "the plugNmeet server refused the API key or its signature: the key and "
                "secret (PNM_API_KEY, PNM_API_SECRET or the keys file) must be its "
                "client.api_key and client.secret",
            )
        if response.status != 200:
            raise Unreachable(endpoint, f"the plugNmeet server answered {endpoint} with HTTP "
                                        f"{response.status}")  # fmt: skip
        if len(raw) > MAX_ANSWER_BYTES:
            raise Unreachable(endpoint, f"the answer to {endpoint} is larger than allowed")
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict) or not isinstance(answer.get("status"), bool):
            raise Unreachable(
                endpoint, f"the answer to {endpoint} is not plugNmeet's: is the URL right?"
            )
        if not answer["status"] and answer.get("status_code") != "NOT_FOUND":
            code = plain(str(answer.get("status_code") or "?"), 60)
            msg = plain(str(answer.get("msg") or ""), 200)
            raise Failed(endpoint, f"the plugNmeet server refused {endpoint}: {code} {msg}".strip())
        return answer

    def _late(self) -> str:
        return f"no whole answer within {self.timeout:g} s"

    def _pages(
        self, endpoint: str, request: dict[str, Any], key: str, total_key: str
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paged list, a page at a time, as long as the caller reads on."""
        start, first = 0, None
        for _ in range(MAX_PAGES):
            answer = self.call(endpoint, request | {"from": start, "limit": PAGE})
            if not answer["status"]:
                return  # NOT_FOUND: nothing at all matches
            result = answer.get("result")
            if not isinstance(result, dict):
                raise Unreachable(endpoint, f"the answer to {endpoint} has no result")
            listed = result.get(key)
            if not isinstance(listed, list):
                raise Unreachable(endpoint, f"the answer to {endpoint} has no {key}")
            if listed and listed[0] == first:
                raise Unreachable(
                    endpoint, f"the server answers {endpoint} with the same page again"
                )
            first = listed[0] if listed else None
            yield from (item for item in listed if isinstance(item, dict))
            start += len(listed)
            total = _count(result.get(total_key))
            if len(listed) < PAGE or (total is not None and start >= total):
                return
        raise Unreachable(endpoint, f"{endpoint} has more than {MAX_PAGES} pages")

    def active_rooms(self) -> list[ActiveRoom]:
        """The rooms running now (``room/getActiveRoomsInfo``)."""
        endpoint = "room/getActiveRoomsInfo"
        answer = self.call(endpoint, {})
        rooms = answer.get("rooms") or []
        if not isinstance(rooms, list):
            raise Unreachable(endpoint, f"the answer to {endpoint} has no rooms")
        found = []
        for entry in rooms:
            info = entry.get("room_info") if isinstance(entry, dict) else None
            if isinstance(info, dict) and _text(info, "sid"):
                found.append(ActiveRoom(_text(info, "room_id"), _text(info, "sid")))
        return found

    def past_rooms(self, room_ids: tuple[str, ...] = ()) -> Iterator[PastRoom]:
        """Ended sessions, newest first, 100 a page, as long as the caller reads on."""
        request: dict[str, Any] = {"order_by": "DESC"}
        if room_ids:
            request["room_ids"] = list(room_ids)
        for item in self._pages("room/fetchPastRooms", request, "rooms_list", "total_rooms"):
            sid = _text(item, "room_sid")
            if sid:
                yield PastRoom(
                    room_id=_text(item, "room_id"),
                    room_sid=sid,
                    title=_text(item, "room_title"),
                    created=rfc3339(item.get("created")),
                    ended=rfc3339(item.get("ended")),
                    item=item,
                )

    def artifacts(self, room_sid: str) -> list[dict[str, Any]]:
        """Every artifact of one session (``artifact/fetch`` by ``room_sid``), as answered."""
        request = {"room_sid": room_sid, "order_by": "ASC"}
        return list(self._pages("artifact/fetch", request, "artifacts_list", "total_artifacts"))

    def recordings(self, room_sid: str) -> list[dict[str, Any]]:
        """Every recording of one session (``recording/fetch`` by ``room_sid``), as answered."""
        request = {"room_sid": room_sid, "order_by": "ASC"}
        return list(self._pages("recording/fetch", request, "recordings_list", "total_recordings"))


def _count(value: Any) -> int | None:
    """Read a count written as a number or as an int64 string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _reason(exc: BaseException) -> str:
    """Say why a call failed without the URL (it may hold credentials) or any secret."""
    text = type(exc).__name__
    if "timeout" in text.lower() or "timed out" in str(exc).lower():
        return "no answer within the time allowed"
    if "refused" in str(exc).lower():
        return "connection refused"
    if "SSL" in text or "certificate" in str(exc).lower():
        return "its TLS certificate was not trusted; see PNM_PLUGNMEET_CA"
    return text
