"""The local plugNmeet API server: it answers the recorded calls as recorded, pages, refuses a bad
signature, and fails on demand."""

from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.helpers import CORPUS
from tests.support.plugnmeet_api import (
    CORPUS_ROOM_ID,
    CORPUS_ROOM_SID,
    SAMPLE_KEY,
    SAMPLE_SECRET,
    SAMPLES_DIR,
    PlugNmeetApi,
    signature,
)

SAMPLES = sorted(SAMPLES_DIR.glob("*.json"))
PAST = "/auth/room/fetchPastRooms"
ARTIFACTS = "/auth/artifact/fetch"
RECORDINGS = "/auth/recording/fetch"


def post(
    api: PlugNmeetApi,
    path: str,
    body: bytes | dict[str, Any] = b"{}",
    *,
    key: str = SAMPLE_KEY,
    secret: str = SAMPLE_SECRET,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
    method: str = "POST",
) -> tuple[int, Any]:
    """Send one signed call; return the HTTP status and the JSON answer (or the text)."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    if headers is None:
        headers = {
            "Content-Type": "application/json",
            "API-KEY": key,
            "HASH-SIGNATURE": signature(body, secret),
        }
    address = urlsplit(api.url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.getheader("Content-Type") == "application/json":
        return response.status, json.loads(data)
    return response.status, data.decode()


@pytest.fixture
def api():
    with PlugNmeetApi() as server:
        yield server


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_each_recorded_call_is_answered_as_recorded(api, path: Path):
    sample = json.loads(path.read_text(encoding="utf-8"))
    api.load_corpus_session(sample["state"])
    status, answer = post(
        api,
        sample["path"],
        sample["request_body"].encode(),
        headers=sample["request_headers"],
    )
    assert status == sample["http_status"]
    assert answer == json.loads(sample["response_body"])


def test_every_sample_is_replayed():
    assert len(SAMPLES) == 23
    states = {json.loads(p.read_text())["state"] for p in SAMPLES}
    assert states == {"running", "ended"}


# --- the signature -------------------------------------------------------------------------------


def test_a_wrong_signature_is_a_401_and_counted(api):
    api.load_corpus_session("ended")
    status, answer = post(api, PAST, secret="not-the-secret")
    assert status == 401
    assert answer == {
        "status": False,
        "msg": "Failed to verify provided authentication details.",
        "status_code": "INVALID_TOKEN_OR_SIGNATURE",
    }
    assert api.bad_signatures == 1
    assert [seen.signed_ok for seen in api.seen] == [False]

    status, answer = post(api, PAST)
    assert (status, answer["status"]) == (200, True)
    assert api.bad_signatures == 1
    assert api.seen[-1].signed_ok is True


def test_a_wrong_or_missing_key_and_a_missing_signature_are_refused(api):
    body = b"{}"
    assert post(api, PAST, key="someone-else")[0] == 401
    assert post(api, PAST, headers={"HASH-SIGNATURE": signature(body)})[0] == 401
    assert post(api, PAST, headers={"API-KEY": SAMPLE_KEY})[0] == 401
    upper = {"API-KEY": SAMPLE_KEY, "HASH-SIGNATURE": signature(body).upper()}
    assert post(api, PAST, headers=upper)[0] == 401  # lowercase hex only
    assert api.bad_signatures == 4


def test_the_signature_covers_the_exact_bytes(api):
    api.load_corpus_session("ended")
    spaced = b'{ "limit": 5 }'
    status, answer = post(api, PAST, spaced)
    assert (status, answer["result"]["limit"]) == (200, 5)
    headers = {"API-KEY": SAMPLE_KEY, "HASH-SIGNATURE": signature(b'{"limit":5}')}
    assert post(api, PAST, spaced, headers=headers)[0] == 401


def test_a_server_with_its_own_key_pair():
    with PlugNmeetApi("key-b", "secret-b") as api:
        assert post(api, PAST)[0] == 401
        status, answer = post(api, PAST, key="key-b", secret="secret-b")
        assert (status, answer["status_code"]) == (200, "NOT_FOUND")


def test_what_it_saw(api):
    post(api, PAST, {"limit": 3})
    post(api, "/auth/room/isRoomActive", {"room_id": "r"})
    post(api, PAST, b"{}")
    assert [seen.path for seen in api.calls(PAST)] == [PAST, PAST]
    first = api.calls(PAST)[0]
    assert first.json() == {"limit": 3}
    assert first.body == b'{"limit": 3}'
    assert first.headers["api-key"] == first.headers["API-KEY"] == SAMPLE_KEY
    assert "Hash-Signature" in first.headers
    assert api.calls("/auth/artifact/fetch") == []


# --- past rooms: paging and order ----------------------------------------------------------------


@pytest.fixture
def many(api):
    for n in range(250):
        api.add_past_room(
            f"room-{n % 7}",
            f"RM_{n:03d}",
            title=f"Room {n}",
            created=1_764_000_000 + 60 * n,
            ended=1_764_000_030 + 60 * n,
            joined_participants=n,
        )
    return api


def _sids(answer: dict[str, Any]) -> list[str]:
    return [room["room_sid"] for room in answer["result"]["rooms_list"]]


def test_250_past_rooms_in_pages_of_100_newest_first(many):
    pages = [post(many, PAST, {"from": start, "limit": 100})[1] for start in (0, 100, 200, 300)]
    assert [len(_sids(page)) for page in pages] == [100, 100, 50, 0]
    assert all(page["status"] is True for page in pages)
    assert {page["result"]["total_rooms"] for page in pages} == {"250"}
    assert [page["result"]["from"] for page in pages] == [0, 100, 200, 300]
    every = [sid for page in pages for sid in _sids(page)]
    assert every == [f"RM_{n:03d}" for n in reversed(range(250))]
    assert pages[3]["result"]["order_by"] == "DESC"


def test_a_limit_over_100_is_100_and_none_is_20(many):
    status, answer = post(many, PAST, {"limit": 500})
    assert (status, answer["result"]["limit"], len(_sids(answer))) == (200, 100, 100)
    answer = post(many, PAST, {})[1]
    assert (answer["result"]["limit"], len(_sids(answer))) == (20, 20)
    assert answer["result"]["from"] == 0


def test_only_ASC_sorts_oldest_first(many):
    ascending = post(many, PAST, {"order_by": "ASC", "limit": 3, "from": 1})[1]
    assert _sids(ascending) == ["RM_001", "RM_002", "RM_003"]
    assert ascending["result"]["order_by"] == "ASC"
    for order_by in ("asc", "DESC", "sideways"):
        answer = post(many, PAST, {"order_by": order_by, "limit": 3})[1]
        assert _sids(answer) == ["RM_249", "RM_248", "RM_247"]
        assert answer["result"]["order_by"] == order_by  # echoed as sent


def test_room_ids_filter_sessions_of_those_rooms(many):
    answer = post(many, PAST, {"room_ids": ["room-3", "room-5", "room-3"], "limit": 100})[1]
    expected = [f"RM_{n:03d}" for n in reversed(range(250)) if n % 7 in (3, 5)]
    assert answer["result"]["total_rooms"] == str(len(expected))
    assert _sids(answer) == expected[:100]
    room = answer["result"]["rooms_list"][0]
    assert room == {
        "room_title": "Room 248",
        "room_id": "room-3",
        "room_sid": "RM_248",
        "joined_participants": "248",
        "webhook_url": "",
        "created": "2025-11-24T20:08:00Z",
        "ended": "2025-11-24T20:08:30Z",
    }  # analytics_file_id unset: left out
    assert post(many, PAST, {"room_ids": ["nobody"]})[1] == {
        "status": False,
        "msg": "no room found",
        "status_code": "NOT_FOUND",
    }


def test_a_session_that_never_ended_cleanly(api):
    api.add_past_room("r", "RM_x", created=1_764_171_000, ended=None, analytics_file_id="f-1")
    (room,) = post(api, PAST)[1]["result"]["rooms_list"]
    assert room["ended"] == "0001-01-01T00:00:00Z"
    assert room["analytics_file_id"] == "f-1"


def test_a_room_runs_then_ends(api):
    api.add_past_room("r", "RM_old", created=1_764_100_000, ended=1_764_100_600)
    api.add_active_room("r", "RM_live", title="Live", creation_time=1_764_171_000, participants=2)
    api.add_past_room("other", "RM_later", created=1_764_172_000, ended=1_764_172_100)

    status, answer = post(api, "/auth/room/getActiveRoomInfo", {"room_id": "r"})
    assert (status, answer["status"]) == (200, True)
    info = answer["room"]["room_info"]
    assert info["sid"] == "RM_live"
    assert (info["joined_participants"], info["creation_time"]) == ("2", "1764171000")
    assert (info["is_running"], info["room_title"]) == (1, "Live")
    people = answer["room"]["participants_info"]
    assert [p["identity"] for p in people] == ["user-1", "user-2"]
    assert people[0]["joined_at"] == "1764171000"
    assert post(api, "/auth/room/isRoomActive", {"room_id": "r"})[1]["is_active"] is True
    assert _sids(post(api, PAST)[1]) == ["RM_later", "RM_old"]

    api.end_room("RM_live", 1_764_173_565)
    assert post(api, "/auth/room/isRoomActive", {"room_id": "r"})[1]["is_active"] is False
    assert post(api, "/auth/room/getActiveRoomsInfo")[1]["status_code"] == "NOT_FOUND"
    answer = post(api, PAST)[1]
    assert _sids(answer) == ["RM_later", "RM_live", "RM_old"]  # by row: created while running
    live = answer["result"]["rooms_list"][1]
    assert (live["created"], live["ended"]) == ("2025-11-26T15:30:00Z", "2025-11-26T16:12:45Z")
    assert (live["room_title"], live["joined_participants"]) == ("Live", "2")

    api.add_active_room("r", "RM_crash", creation_time=1_764_180_000)
    api.end_room("RM_crash", None)
    assert post(api, PAST, {"limit": 1})[1]["result"]["rooms_list"][0]["ended"] == (
        "0001-01-01T00:00:00Z"
    )


def test_load_corpus_session_replaces_the_state(api):
    api.add_past_room("x", "RM_x", created=1, ended=2)
    api.load_corpus_session("running")
    assert post(api, PAST)[1]["status_code"] == "NOT_FOUND"
    rooms = post(api, "/auth/room/getActiveRoomsInfo")[1]["rooms"]
    assert [room["room_info"]["sid"] for room in rooms] == [CORPUS_ROOM_SID]
    assert len(rooms[0]["participants_info"]) == 3
    api.load_corpus_session("ended")
    assert post(api, "/auth/room/getActiveRoomsInfo")[1]["rooms"] == []
    assert _sids(post(api, PAST)[1]) == [CORPUS_ROOM_SID]
    with pytest.raises(ValueError):
        api.load_corpus_session("paused")


# --- artifacts and recordings --------------------------------------------------------------------


def test_artifacts_from_the_webhooks_are_written_as_the_api_writes_them(api):
    """The webhook corpus's artifacts, added as a test would, give sample 13's answer."""
    for path in CORPUS:
        event = json.loads(path.read_bytes())
        if event["event"] == "artifact_created":
            artifact = event["room_artifact"]
            api.add_artifact(
                event["room"]["sid"],
                event["room"]["room_id"],
                artifact["artifact_id"],
                artifact["type"],
                int(event["created_at"]),
                artifact["metadata"],
            )
    sample = json.loads((SAMPLES_DIR / "13_artifact_fetch_by_room_sid.json").read_text())
    status, answer = post(api, ARTIFACTS, sample["request_body"].encode())
    assert (status, answer) == (200, json.loads(sample["response_body"]))


def test_artifact_metadata_fields_all_written(api):
    api.add_artifact("RM_a", "r", "a-1", "MEETING_SUMMARY_USAGE", 1_764_171_000, {})
    api.add_artifact(
        "RM_a",
        "r",
        "a-2",
        "SPEECH_TRANSCRIPTION_USAGE",
        1_764_171_001,
        {"durationUsage": {"durationSec": "60", "breakdown": {"u": 60}}, "userInfo": {}},
    )
    listed = post(api, ARTIFACTS, {"room_sid": "RM_a", "order_by": "ASC"})[1]
    first, second = (a["metadata"] for a in listed["result"]["artifacts_list"])
    assert first == {"user_info": None, "provider_job_info": None, "file_info": None}
    assert second == {
        "user_info": {"user_id": "", "name": ""},
        "provider_job_info": None,
        "file_info": None,
        "duration_usage": {"duration_sec": 60, "breakdown": {"u": "60"}},
    }


@pytest.fixture
def two_sessions(api):
    for n, sid in enumerate(("RM_1", "RM_2")):
        for k in range(3):
            api.add_artifact(
                sid,
                "r",
                f"{sid}-{k}",
                "CHAT_TRANSLATION_USAGE" if k else "MEETING_ANALYTICS",
                1_764_171_000 + 10 * n + k,
                {"character_count_usage": {"total_characters": k}},
            )
        api.add_recording(
            sid,
            "r",
            f"REC_{n}",
            file_path=f"node/{sid}.mp4",
            file_size=12.346,
            creation_time=1_764_172_000 + n,
            room_creation_time=1_764_171_000,
        )
    api.add_past_room("r", "RM_1", created=1_764_171_000, ended=1_764_171_900)
    return api


def _ids(answer: dict[str, Any], kind: str = "artifacts_list", key: str = "artifact_id"):
    return [item[key] for item in answer["result"][kind]]


def test_artifacts_by_session_by_room_and_by_type(two_sessions):
    api = two_sessions
    answer = post(api, ARTIFACTS, {"room_sid": "RM_2", "room_ids": ["elsewhere"]})[1]
    assert _ids(answer) == ["RM_2-2", "RM_2-1", "RM_2-0"]  # room_sid wins over room_ids
    result = answer["result"]
    assert (result["total_artifacts"], result["from"], result["limit"]) == ("3", "0", "20")
    assert "type" not in result
    answer = post(api, ARTIFACTS, {"room_ids": ["r"], "from": 1, "limit": 2, "order_by": "ASC"})[1]
    assert _ids(answer) == ["RM_1-1", "RM_1-2"]
    assert answer["result"]["total_artifacts"] == "6"
    answer = post(api, ARTIFACTS, {"type": "MEETING_ANALYTICS"})[1]
    assert (_ids(answer), answer["result"]["type"]) == (["RM_2-0", "RM_1-0"], "MEETING_ANALYTICS")
    assert _ids(post(api, ARTIFACTS, {"room_sid": "RM_1", "type": 1})[1]) == ["RM_1-0"]
    assert post(api, ARTIFACTS, {"room_sid": "RM_1", "type": "MEETING_SUMMARY"})[1] == {
        "status": False,
        "msg": "no artifact found",
        "status_code": "NOT_FOUND",
    }
    past_the_end = post(api, ARTIFACTS, {"room_sid": "RM_1", "from": 3})[1]
    assert (past_the_end["status"], _ids(past_the_end)) == (True, [])


def test_artifact_info_names_its_session(two_sessions):
    api = two_sessions
    answer = post(api, "/auth/artifact/info", {"artifact_id": "RM_1-1"})[1]
    assert answer["artifact_info"]["created"] == "2025-11-26T15:30:01Z"
    assert answer["room_info"]["created"] == "2025-11-26 15:30:00"
    assert answer["room_info"]["ended"] == "2025-11-26 15:45:00"
    no_room = post(api, "/auth/artifact/info", {"artifact_id": "RM_2-1"})[1]
    assert no_room["status"] is True
    assert "room_info" not in no_room  # an optional message: left out when there is no room


def test_recordings(two_sessions):
    api = two_sessions
    answer = post(api, RECORDINGS, {"room_ids": ["r"]})[1]
    assert _ids(answer, "recordings_list", "record_id") == ["REC_1", "REC_0"]
    result = answer["result"]
    assert (result["total_recordings"], result["from"], result["limit"]) == ("2", 0, 20)
    recording = result["recordings_list"][0]
    assert recording == {
        "record_id": "REC_1",
        "room_id": "r",
        "room_sid": "RM_2",
        "file_path": "node/RM_2.mp4",
        "file_size": 12.35,
        "creation_time": "1764172001",
        "room_creation_time": "1764171000",
    }
    assert _ids(post(api, RECORDINGS, {"room_sid": "RM_1"})[1], "recordings_list", "record_id") == [
        "REC_0"
    ]
    assert post(api, RECORDINGS, {"room_sid": "RM_9"})[1] == {
        "status": False,
        "msg": "no recording found",
        "status_code": "NOT_FOUND",
    }
    info = post(api, "/auth/recording/info", {"record_id": "REC_0"})[1]
    assert info["room_info"]["room_sid"] == "RM_1"
    assert post(api, "/auth/recording/info", {"record_id": "REC_1"})[1]["room_info"] is None
    assert post(api, "/auth/recording/info", {"record_id": "REC_9"})[1]["status_code"] == (
        "NOT_FOUND"
    )


def test_the_corpus_session_ids():
    with PlugNmeetApi() as api:
        api.load_corpus_session("ended")
        answer = post(api, ARTIFACTS, {"room_ids": [CORPUS_ROOM_ID], "limit": 100})[1]
        assert answer["result"]["total_artifacts"] == "9"
        assert post(api, RECORDINGS, {"room_ids": [CORPUS_ROOM_ID]})[1]["status"] is True


# --- bodies it cannot read -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "msg"),
    [
        (PAST, b"not json", "proto: (FetchPastRoomsReq) syntax error: "),
        (PAST, b"[]", "proto: (FetchPastRoomsReq) syntax error: unexpected token ["),
        (PAST, b"", "proto: (FetchPastRoomsReq) syntax error: "),
        (
            PAST,
            b'{"from":-1}',
            "proto: (FetchPastRoomsReq) invalid value for uint32 field from: -1",
        ),
        (PAST, b'{"limit":1.5}', "proto: (FetchPastRoomsReq) invalid value for uint32 field limit"),
        (PAST, b'{"room_ids":"r"}', "proto: (FetchPastRoomsReq) invalid value for string field"),
        (ARTIFACTS, b'{"type":"NOPE"}', 'invalid value for enum field type: "NOPE"'),
        (ARTIFACTS, b'{"room_sid":5}', "invalid value for string field room_sid: 5"),
        ("/auth/artifact/info", b"{}", "validation error:\n - artifact_id: value is required"),
        ("/auth/recording/info", b'{"record_id":""}', " - record_id: value is required"),
    ],
)
def test_a_body_it_cannot_read_is_invalid_parameters(api, path, body, msg):
    status, answer = post(api, path, body)
    assert (status, answer["status"], answer["status_code"]) == (200, False, "INVALID_PARAMETERS")
    assert answer["msg"].startswith(msg) or msg in answer["msg"]
    assert set(answer) == {"status", "msg", "status_code"}


def test_what_protojson_reads_besides_proto_names(many):
    # Quoted numbers, lowerCamelCase names and unknown fields (discarded) are all read.
    answer = post(many, PAST, {"limit": "2", "roomIds": ["room-1"], "orderBy": "ASC", "x": 1})[1]
    assert _sids(answer) == ["RM_001", "RM_008"]
    assert post(many, PAST, {"limit": None})[1]["result"]["limit"] == 20


def test_unknown_paths_and_other_methods(api):
    assert post(api, "/auth/room/noSuchMethod") == (404, "Cannot POST /auth/room/noSuchMethod")
    assert post(api, "/elsewhere")[0] == 404
    assert post(api, "/auth/room/noSuchMethod", key="wrong")[0] == 401  # auth comes first
    assert post(api, PAST, method="GET")[0] == 405


# --- faults and delay ----------------------------------------------------------------------------


def test_fault_503(api):
    api.fault = "503"
    assert post(api, PAST) == (503, "Service Unavailable")
    assert len(api.seen) == 1


def test_fault_status_false(api):
    api.load_corpus_session("ended")
    api.fault = "status_false"
    assert post(api, PAST) == (
        200,
        {"status": False, "msg": "internal error", "status_code": "INTERNAL_ERROR"},
    )


def test_fault_close(api):
    api.fault = "close"
    with pytest.raises(ConnectionError):
        post(api, PAST)
    api.fault = None
    assert post(api, PAST)[0] == 200


def test_a_fault_only_on_its_paths(api):
    api.load_corpus_session("ended")
    api.fault, api.fault_paths = "503", {ARTIFACTS}
    assert post(api, ARTIFACTS, {"room_sid": CORPUS_ROOM_SID})[0] == 503
    assert post(api, PAST)[1]["status"] is True


def test_fault_hang_answers_after_hang_seconds(api):
    api.load_corpus_session("ended")
    api.fault, api.hang_seconds = "hang", 0.3
    with pytest.raises(TimeoutError):
        post(api, PAST, timeout=0.1)
    began = time.monotonic()
    status, answer = post(api, PAST, timeout=5)
    took = time.monotonic() - began
    assert (status, answer["status"]) == (200, True)
    assert 0.3 <= took < 2


def test_stop_ends_a_hang_promptly():
    api = PlugNmeetApi().start()
    api.fault = "hang"  # 30 s by default
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(post(api, PAST, timeout=20))
        except Exception as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not api.seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert api.seen
    began = time.monotonic()
    api.stop()
    caller.join(timeout=5)
    assert time.monotonic() - began < 1.5
    assert not caller.is_alive()
    assert isinstance(outcome[0], ConnectionError)  # dropped, never answered


def test_delay_is_added_to_every_answer(api):
    api.delay = 0.2
    began = time.monotonic()
    assert post(api, PAST)[0] == 200
    assert time.monotonic() - began >= 0.2


def test_stop_twice_and_before_start():
    PlugNmeetApi().stop()
    api = PlugNmeetApi().start()
    assert api.url.startswith("http://127.0.0.1:")
    api.stop()
    api.stop()


def test_keep_alive_connections_are_served_and_closed_on_stop():
    with PlugNmeetApi() as api:
        api.load_corpus_session("ended")
        address = urlsplit(api.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=5)
        for _ in range(3):
            connection.request(
                "POST",
                PAST,
                body=b"{}",
                headers={"API-KEY": SAMPLE_KEY, "HASH-SIGNATURE": signature(b"{}")},
            )
            response = connection.getresponse()
            assert json.loads(response.read())["status"] is True
    assert len(api.seen) == 3
    connection.close()
