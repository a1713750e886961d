"""The plugNmeet REST API client: signed bytes, paging, answers read as plugNmeet writes them,
errors named, TLS verified, and no secret in a log line."""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from config import PlugNmeetServer
from plugnmeet_webhooks.reconcile.api import (
    Failed,
    PlugNmeetApi,
    Refused,
    Unreachable,
    rfc3339,
)
from tests.support.plugnmeet_api import CORPUS_ROOM_SID
from tests.support.plugnmeet_api import PlugNmeetApi as LocalApi

KEY = "plugnmeet"
SECRET = "client-test-secret-0123456789abcdefgh"


@pytest.fixture
def local() -> Iterator[LocalApi]:
    with LocalApi(api_key=KEY, secret=SECRET) as api:
        yield api
        assert api.bad_signatures == 0


def client(url: str, secret: str = SECRET, **kwargs: object) -> PlugNmeetApi:
    return PlugNmeetApi(PlugNmeetServer("t", url, KEY, secret), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2025-11-26T15:30:00Z", 1764171000),
        ("2025-11-26T17:30:00+02:00", 1764171000),
        ("2025-11-26T15:30:00.750Z", 1764171000),
        ("0001-01-01T00:00:00Z", None),  # plugNmeet's "never ended cleanly"
        ("2025-11-26 15:30:00", None),  # no zone: not a time to trust
        ("", None),
        ("yesterday", None),
        (1764171000, None),
    ],
)
def test_times_are_read_as_rfc_3339(text, seconds):
    assert rfc3339(text) == seconds


def test_the_corpus_session_as_the_api_tells_it(local):
    local.load_corpus_session("ended")
    api = client(local.url)
    assert api.active_rooms() == []  # NOT_FOUND: nothing running
    [past] = api.past_rooms()
    assert (past.room_id, past.room_sid, past.title) == (
        "weekly-standup",
        CORPUS_ROOM_SID,
        "Weekly stand-up",
    )
    assert (past.created, past.ended) == (1764171000, 1764173565)
    artifacts = api.artifacts(CORPUS_ROOM_SID)
    assert len(artifacts) == 9
    assert {a["type"] for a in artifacts} >= {"MEETING_SUMMARY_USAGE", "SPEECH_TRANSCRIPTION"}
    [recording] = api.recordings(CORPUS_ROOM_SID)
    assert (recording["record_id"], recording["file_size"]) == ("REC_7f3a", 187.42)
    assert api.artifacts("RM_unknown") == [] and api.recordings("RM_unknown") == []
    for seen in local.seen:  # every request signed over the exact bytes sent
        assert seen.signed_ok and seen.headers["API-KEY"] == KEY


def test_a_running_session_is_active(local):
    local.load_corpus_session("running")
    [room] = client(local.url).active_rooms()
    assert (room.room_id, room.sid) == ("weekly-standup", CORPUS_ROOM_SID)
    assert list(client(local.url).past_rooms()) == []


def test_past_sessions_are_read_newest_first_100_a_page(local):
    for n in range(250):
        local.add_past_room("room", f"RM_{n:04d}", created=1764171000 + n, ended=1764172000 + n)
    sids = [p.room_sid for p in client(local.url).past_rooms()]
    assert sids == [f"RM_{n:04d}" for n in reversed(range(250))]
    pages = [s.json() for s in local.calls("/auth/room/fetchPastRooms")]
    assert [(p["from"], p["limit"], p["order_by"]) for p in pages] == [
        (0, 100, "DESC"),
        (100, 100, "DESC"),
        (200, 100, "DESC"),
    ]


def test_reading_stops_when_the_reader_does(local):
    for n in range(250):
        local.add_past_room("room", f"RM_{n:04d}", created=1764171000 + n, ended=1764172000 + n)
    rooms = client(local.url).past_rooms()
    assert [next(rooms).room_sid for _ in range(3)] == ["RM_0249", "RM_0248", "RM_0247"]
    assert len(local.calls("/auth/room/fetchPastRooms")) == 1


def test_a_wrong_secret_is_refused_and_says_what_to_check(local):
    with pytest.raises(Refused) as caught:
        client(local.url, secret="not-the-servers-secret-0123456789").active_rooms()
    assert "client.secret" in str(caught.value) and "not-the-servers" not in str(caught.value)
    assert caught.value.endpoint == "room/getActiveRoomsInfo"
    assert local.bad_signatures == 1
    local.bad_signatures = 0  # expected here


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("503", Unreachable, "HTTP 503"),
        ("status_false", Failed, "INTERNAL_ERROR"),
        ("close", Unreachable, "did not answer"),
        ("hang", Unreachable, "no whole answer within 0.3 s"),
    ],
)
def test_faults_are_named_by_call(local, fault, error, words):
    local.fault, local.hang_seconds = fault, 3.0
    with pytest.raises(error) as caught:
        list(client(local.url, timeout=0.3).past_rooms())
    assert words in str(caught.value) and caught.value.endpoint == "room/fetchPastRooms"


def test_a_server_that_is_down_is_named(local):
    local.stop()
    with pytest.raises(Unreachable, match="connection refused"):
        client(local.url).active_rooms()


def test_no_secret_or_signature_reaches_a_log_line(local, caplog):
    caplog.set_level(logging.DEBUG)
    local.load_corpus_session("ended")
    api = client(local.url)
    api.artifacts(CORPUS_ROOM_SID)
    local.fault = "503"
    with pytest.raises(Unreachable):
        api.active_rooms()
    signatures = [s.headers["HASH-SIGNATURE"] for s in local.seen]
    for secret in (SECRET, *signatures):
        assert secret not in caplog.text


# --- servers that misbehave ------------------------------------------------------------------

Answer = Callable[[BaseHTTPRequestHandler, dict[str, Any]], None]


@contextmanager
def serving(answer: Answer) -> Iterator[str]:
    """A one-off local server that answers every POST with ``answer``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            answer(self, json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _json(handler: BaseHTTPRequestHandler, payload: Any) -> None:
    body = json.dumps(payload).encode()
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_server_that_drips_its_answer_is_cut_at_the_deadline():
    def drip(handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(100):  # a byte every 0.1 s: each read is quick, the whole is not
                handler.wfile.write(b" ")
                handler.wfile.flush()
                time.sleep(0.1)

    with serving(drip) as url:
        started = time.monotonic()
        with pytest.raises(Unreachable, match=r"no whole answer within 0\.5 s"):
            client(url, timeout=0.5).active_rooms()
        assert time.monotonic() - started < 2.0


def test_a_server_that_answers_the_same_page_again_is_not_read_for_ever():
    page = [{"room_sid": f"RM_{n}"} for n in range(100)]

    def same(handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        _json(handler, {"status": True, "result": {"total_rooms": "100000", "rooms_list": page}})

    with serving(same) as url, pytest.raises(Unreachable, match="same page again"):
        list(client(url).past_rooms())


def test_a_junk_item_in_a_full_page_does_not_end_the_list():
    def pages(handler: BaseHTTPRequestHandler, request: dict[str, Any]) -> None:
        start = request["from"]
        rooms: list[Any] = [{"room_sid": f"RM_{start + n}"} for n in range(min(100, 250 - start))]
        rooms[5] = "junk"  # one item a page that is no session
        _json(handler, {"status": True, "result": {"total_rooms": "250", "rooms_list": rooms}})

    with serving(pages) as url:
        sids = [p.room_sid for p in client(url).past_rooms()]
    assert len(sids) == 250 - 3 and sids[-1] == "RM_249"


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def test_tls_is_verified_and_a_private_ca_can_be_named(certificate):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with LocalApi(api_key=KEY, secret=SECRET, tls=context) as local:
        local.load_corpus_session("running")
        assert local.url.startswith("https://")
        with pytest.raises(Unreachable, match="PNM_PLUGNMEET_CA"):
            client(local.url).active_rooms()
        [room] = client(local.url, ca=str(cert)).active_rooms()
        assert room.sid == CORPUS_ROOM_SID
