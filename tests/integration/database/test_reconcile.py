"""Reconciliation: the ledger repaired from plugNmeet's API when deliveries were lost.

Against a local server standing for plugNmeet's REST API (tests/support/plugnmeet_api.py),
which answers as the real one does and checks every request's signature.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from config import PlugNmeetServer
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.reconcile import facts
from plugnmeet_webhooks.reconcile.api import PlugNmeetApi as ApiClient
from plugnmeet_webhooks.reconcile.reconciler import Report, as_delivery
from plugnmeet_webhooks.reconcile.worker import ReconcileWorker, run_pass
from plugnmeet_webhooks.storage import passes
from plugnmeet_webhooks.storage.batch import store_batch
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.events import events
from tests.support.chat import ChatServer
from tests.support.helpers import (
    CORPUS,
    KEY,
    ROOT,
    SECRET,
    deliver,
    ledger_snapshot,
    report,
    reset_database,
    stored_text,
)
from tests.support.plugnmeet_api import PlugNmeetApi

SID = "RM_hK3v9QpZt2Lx"
SINCE = datetime(2025, 11, 1, tzinfo=UTC).timestamp()  # the corpus session is from 2025-11-26
BODIES = {path.stem: path.read_bytes() for path in CORPUS}
ENDS = {name for name in BODIES if name.endswith(("room_finished", "session_ended"))}
ARTIFACTS = {name for name in BODIES if "artifact_created" in name}
RECORDING = {name for name in BODIES if name.endswith("recording_proceeded")}
FIGURES = ("sessions", "usage", "rooms", "days", "files")
SHUFFLES = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def reconciling(make_app, plugnmeet):
    """An app whose reconciliation asks the local plugNmeet API (no background pass)."""

    def make(**changes: Any) -> Any:
        server = PlugNmeetServer(KEY, plugnmeet.url, KEY, SECRET)
        return make_app(plugnmeet_servers=(server,), reconcile_interval=None, **changes)

    return make


def send(app: Any, names: Any) -> None:
    client = app.test_client()
    for name in sorted(names):
        assert deliver(client, BODIES[name]).status == 200, name


def reconcile(app: Any, *, timeout: float = 10.0) -> Report:
    rt = runtime.of(app)
    done = run_pass(rt.database(), rt.reconciler(timeout=timeout), since=SINCE)
    assert done is not None
    return done


def figures(app: Any, *, drop: tuple[str, ...] = ("end_source", "status")) -> dict[str, Any]:
    """Every report's rows and totals, without the fields that say where an end came from."""
    found = {}
    for name in FIGURES:
        built = report(app, name)
        rows = [{k: v for k, v in row.items() if k not in drop} for row in built["rows"]]
        found[name] = (rows, built["total"])
    return found


def full_stream_figures(app: Any) -> dict[str, Any]:
    send(app, BODIES)
    kept = figures(app)
    reset_database(app)
    return kept


def session_row(app: Any) -> dict[str, Any]:
    [row] = report(app, "sessions")["rows"]
    return row


def api_facts(app: Any) -> list[tuple[str, str]]:
    query = select(events.c.event, events.c.dedupe_key).where(events.c.source == "api")
    with runtime.of(app).database().connect() as conn:
        return sorted((r.event, r.dedupe_key) for r in conn.execute(query))


def test_a_pass_closes_a_session_whose_end_was_lost_with_the_full_streams_minutes(reconciling):
    app = reconciling()
    expected = full_stream_figures(app)
    send(app, BODIES.keys() - ENDS)
    assert session_row(app)["billable_minutes"] is None  # open: nothing billed

    done = reconcile(app)

    assert not done.failed
    assert done.totals() == {
        "sessions_closed": 1,
        "sessions_discovered": 0,
        "artifacts_added": 0,
        "recordings_added": 0,
        "unresolved": 0,
    }
    row = session_row(app)
    assert (row["billable_minutes"], row["duration_seconds"], row["end_source"]) == (
        43,
        2565,
        "api",
    )
    assert figures(app) == expected
    assert api_facts(app) == [("session_ended", f"api:session_ended:{SID}")]

    # A second pass changes nothing; the lost deliveries, sent late, change no figure.
    before = ledger_snapshot(app)
    again = reconcile(app)
    assert again.totals() == dict.fromkeys(again.totals(), 0)
    assert ledger_snapshot(app) == before
    send(app, ENDS)
    assert figures(app) == expected
    assert session_row(app)["end_source"] == "api"
    before = ledger_snapshot(app)

    # Rebuilt from the stored events (deliveries and facts alike): the same ledger.
    result = app.test_cli_runner().invoke(args=["rebuild-ledger", "--yes"])
    assert result.exit_code == 0, result.output
    assert ledger_snapshot(app) == before


def test_a_pass_adds_the_ai_usage_whose_deliveries_were_lost(reconciling):
    app = reconciling()
    expected = full_stream_figures(app)
    send(app, BODIES.keys() - ARTIFACTS)
    assert report(app, "usage")["rows"] == []

    done = reconcile(app)

    assert done.totals()["artifacts_added"] == len(ARTIFACTS) == 9
    assert done.totals()["sessions_closed"] == done.totals()["recordings_added"] == 0
    assert figures(app) == expected  # the AI cost per room, and every other figure
    [room] = report(app, "rooms")["rows"]
    assert room["ai_cost"] == expected["rooms"][0][0]["ai_cost"] > 0

    before = ledger_snapshot(app)
    assert reconcile(app).totals()["artifacts_added"] == 0
    send(app, ARTIFACTS)
    assert figures(app) == expected
    result = app.test_cli_runner().invoke(args=["rebuild-ledger", "--yes"])
    assert result.exit_code == 0, result.output
    assert figures(app) == expected
    assert report(app, "usage") == {**report(app, "usage")}  # rebuilt rows readable
    assert ledger_snapshot(app)["sessions"] == before["sessions"]


def test_a_session_whose_every_delivery_was_lost_is_discovered(reconciling):
    app = reconciling()
    expected = full_stream_figures(app)

    done = reconcile(app)

    assert done.totals() == {
        "sessions_closed": 0,
        "sessions_discovered": 1,
        "artifacts_added": 9,
        "recordings_added": 1,
        "unresolved": 0,
    }
    row = session_row(app)
    assert row["room_sid"] == SID and row["room_id"] == "weekly-standup"
    assert row["title"] == "Weekly stand-up"
    assert (row["started_at"], row["ended_at"]) == ("2025-11-26T15:30:00Z", "2025-11-26T16:12:45Z")
    assert (row["billable_minutes"], row["end_source"]) == (43, "api")
    for name in ("usage", "files"):
        assert figures(app)[name] == expected[name]
    minutes_and_cost = ("billable_minutes", "ai_cost", "artifacts")

    def money(found: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [tuple(r.get(k) for k in minutes_and_cost) for r in found["rooms"][0]]

    assert money(figures(app)) == money(expected)

    # Every delivery arrives after all: no minute and no cost changes.
    send(app, BODIES)
    assert money(figures(app)) == money(expected)
    assert figures(app)["sessions"] == expected["sessions"]
    assert figures(app)["usage"] == expected["usage"]


def test_an_active_room_stays_open(reconciling, plugnmeet):
    plugnmeet.load_corpus_session("running")
    app = reconciling()
    send(app, [name for name in BODIES if name < "13"])  # up to the recording's end

    done = reconcile(app)

    assert done.totals() == dict.fromkeys(done.totals(), 0)
    assert done.passes[0].live == 1
    assert session_row(app)["billable_minutes"] is None
    assert api_facts(app) == []


def test_a_session_that_ended_moments_ago_waits_for_its_session_ended(reconciling, plugnmeet):
    app = reconciling()
    send(app, BODIES.keys() - ENDS)
    rt = runtime.of(app)
    ended = datetime(2025, 11, 26, 16, 12, 45, tzinfo=UTC).timestamp()
    reconciler = rt.reconciler()
    reconciler.clock = lambda: ended + 30  # 30 s after the end: within the grace period

    done = run_pass(rt.database(), reconciler, since=SINCE)

    assert done is not None and done.totals()["sessions_closed"] == 0
    assert session_row(app)["billable_minutes"] is None


# --- the API failing: a clear error, an unchanged ledger ---------------------------------


FAULTS = {
    "connection refused": None,
    "503": "503",
    "a hang past the timeout": "hang",
    "status false": "status_false",
    "the connection closed": "close",
}


@pytest.mark.parametrize("fault", FAULTS)
def test_the_api_failing_leaves_the_ledger_as_it_was(reconciling, plugnmeet, fault):
    app = reconciling()
    send(app, BODIES.keys() - ENDS - ARTIFACTS)
    before = ledger_snapshot(app)
    if FAULTS[fault] is None:
        plugnmeet.stop()
    else:
        plugnmeet.fault, plugnmeet.hang_seconds = FAULTS[fault], 5.0

    started = time.monotonic()
    done = reconcile(app, timeout=0.5)

    assert time.monotonic() - started < 4.5  # the timeout held, not the server's hang
    [failed] = done.failed
    assert failed.error and SECRET not in failed.error
    assert ledger_snapshot(app) == before
    assert api_facts(app) == []
    [kept] = passes.latest(runtime.of(app).database())
    assert kept.outcome == passes.FAILED


def test_a_failure_late_in_the_pass_changes_nothing_either(reconciling, plugnmeet):
    app = reconciling()
    send(app, BODIES.keys() - ENDS - ARTIFACTS)
    before = ledger_snapshot(app)
    plugnmeet.fault, plugnmeet.fault_paths = "503", {"/auth/recording/fetch"}

    done = reconcile(app)

    [failed] = done.failed
    assert failed.endpoint == "recording/fetch"
    assert ledger_snapshot(app) == before


def test_a_wrong_secret_is_refused_with_what_to_do(make_app, plugnmeet):
    server = PlugNmeetServer(KEY, plugnmeet.url, KEY, "a-secret-that-is-not-the-servers")
    app = make_app(plugnmeet_servers=(server,), reconcile_interval=None)
    send(app, BODIES.keys() - ENDS)
    before = ledger_snapshot(app)

    result = app.test_cli_runner().invoke(args=["reconcile", "--since", "2025-11-01"])

    assert result.exit_code == 1
    assert "refused the API key or its signature" in result.output
    assert "client.secret" in result.output
    assert "a-secret-that-is-not-the-servers" not in result.output
    assert ledger_snapshot(app) == before
    assert plugnmeet.bad_signatures >= 1
    plugnmeet.bad_signatures = 0  # expected here


# --- the command ------------------------------------------------------------------------------


def test_the_command_says_what_it_changed_and_a_dry_run_changes_nothing(reconciling):
    app = reconciling()
    send(app, BODIES.keys() - ENDS - ARTIFACTS)
    before = ledger_snapshot(app)
    runner = app.test_cli_runner()

    dry = runner.invoke(args=["reconcile", "--since", "2025-11-01", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "Sessions closed: 1, discovered: 0; artifacts added: 9" in dry.output
    assert "would be changed" in dry.output
    assert ledger_snapshot(app) == before
    assert passes.latest(runtime.of(app).database()) == []

    done = runner.invoke(args=["reconcile", "--since", "2025-11-01", "--format", "json"])
    assert done.exit_code == 0, done.output
    answer = json.loads(done.output)
    assert answer["completed"] is True and answer["dry_run"] is False
    assert (answer["sessions_closed"], answer["artifacts_added"]) == (1, 9)
    [server] = answer["servers"]
    kinds = sorted({r["kind"] for r in server["repairs"]})
    assert kinds == ["artifact", "closed"]
    assert session_row(app)["billable_minutes"] == 43

    again = runner.invoke(args=["reconcile", "--since", "2025-11-01"])
    assert again.exit_code == 0
    assert "Sessions closed: 0, discovered: 0; artifacts added: 0" in again.output


def test_the_command_without_a_server_says_what_to_set(app):
    result = app.test_cli_runner().invoke(args=["reconcile"])
    assert result.exit_code == 1
    assert "PNM_PLUGNMEET_URL" in result.output


def test_a_bad_since_is_refused(reconciling):
    result = reconciling().test_cli_runner().invoke(args=["reconcile", "--since", "yesterday"])
    assert result.exit_code == 2
    assert "2026-01-31" in result.output


# --- in the background -------------------------------------------------------------------------


def test_two_receivers_never_run_passes_at_once(make_app, plugnmeet, settings):
    plugnmeet.delay = 0.02  # each call takes a while, so that passes last
    server = PlugNmeetServer(KEY, plugnmeet.url, KEY, SECRET)
    apps = [make_app(plugnmeet_servers=(server,), reconcile_interval=None) for _ in range(2)]
    for app in apps:
        runtime.of(app).database()
    workers = [
        ReconcileWorker(runtime.of(app).engine, runtime.of(app).reconciler(), 0.3, tick=0.02)
        for app in apps
    ]
    for worker in workers:
        worker.start()
    time.sleep(4)
    for worker in workers:
        worker.stop()
    kept = sorted(passes.latest(runtime.of(apps[0]).engine, limit=1000), key=lambda p: p.started_at)
    assert len(kept) >= 3
    for earlier, later in itertools.pairwise(kept):
        assert later.started_at >= earlier.finished_at  # never overlapping
    assert all(p.outcome == passes.COMPLETED for p in kept)


def test_the_background_pass_repairs_without_a_command(make_app, plugnmeet):
    server = PlugNmeetServer(KEY, plugnmeet.url, KEY, SECRET)
    app = make_app(plugnmeet_servers=(server,), reconcile_interval=None)
    send(app, BODIES.keys() - ENDS)
    rt = runtime.of(app)
    repaired = threading.Event()
    worker = ReconcileWorker(
        rt.engine, rt.reconciler(), 60, tick=0.05, on_report=lambda r: repaired.set()
    )
    worker.start()
    try:
        assert repaired.wait(10)
    finally:
        worker.stop()
    assert session_row(app)["billable_minutes"] == 43
    assert session_row(app)["end_source"] == "api"


# --- told, not silent ---------------------------------------------------------------------------


def test_a_pass_that_repairs_raises_a_reconciled_event_for_the_rules(reconciling, tmp_path):
    with ChatServer("slack", interval=None) as slack:
        rules = tmp_path / "rules.toml"
        lost = (ROOT / "samples" / "rules.toml").read_text().split("[[rules]]")[-1]
        rules.write_text(
            f'[destinations.ops-slack]\nkind = "slack"\nurl = "{slack.url}"\n\n'
            '[[rules]]\nname = "billed"\non = "session_ended"\nsend = ["ops-slack"]\n'
            'text = "{{ room.room_id }} ended"\n\n[[rules]]' + lost
        )
        app = reconciling(rules_file=str(rules), outbox_retries=(0.05,), api_keys={KEY: SECRET})
        send(app, BODIES.keys() - ENDS)
        reconcile(app)
        reconcile(app)  # repairs nothing: tells nothing
        runtime.of(app).dispatcher().start()
        slack.wait_for(1)
        time.sleep(0.3)
    # The session_ended learned from the API queues nothing of its own; the pass tells.
    assert [t.text for t in slack.taken] == [
        "1 sessions closed by reconciliation (weekly-standup): webhooks are being lost"
    ]


def test_the_metrics_count_passes_repairs_and_api_errors(reconciling, plugnmeet):
    app = reconciling()
    send(app, BODIES.keys() - ENDS - ARTIFACTS)
    rt = runtime.of(app)
    rt.count_pass(reconcile(app))
    plugnmeet.fault = "503"
    rt.count_pass(reconcile(app))
    page = app.test_client().get("/metrics").get_data(as_text=True)
    for line in (
        'pnm_reconcile_passes_total{outcome="completed"} 1.0',
        'pnm_reconcile_passes_total{outcome="failed"} 1.0',
        'pnm_reconcile_repairs_total{kind="closed"} 1.0',
        'pnm_reconcile_repairs_total{kind="artifact"} 9.0',
        'pnm_plugnmeet_api_errors_total{endpoint="room/getActiveRoomsInfo"} 1.0',
    ):
        assert line in page
    [age] = [x for x in page.splitlines() if x.startswith("pnm_reconcile_last_pass_age_seconds{")]
    assert age.startswith('pnm_reconcile_last_pass_age_seconds{tenant="plugnmeet"} ')
    assert 0 <= float(age.split()[1]) < 60
    assert 'pnm_reconcile_unresolved{tenant="plugnmeet"} 0.0' in page


def test_forgetting_someone_reaches_the_apis_answers_too(reconciling):
    app = reconciling()
    reconcile(app)  # every fact from the API: Alice is named in an artifact and a breakdown
    cost = report(app, "usage")["total"]["estimated_cost"]
    runner = app.test_cli_runner()

    result = runner.invoke(args=["forget-participant", "u-alice", "--yes"])

    assert result.exit_code == 0, result.output
    text = stored_text(app)
    assert "u-alice" not in text and "Alice Admin" not in text
    assert "u-bob" in text, "the others stay"
    assert report(app, "usage")["total"]["estimated_cost"] == cost
    assert runner.invoke(args=["rebuild-ledger", "--yes"]).exit_code == 0
    assert "u-alice" not in stored_text(app)
    assert report(app, "usage")["total"]["estimated_cost"] == cost


# --- merge rules: any order, both databases -----------------------------------------------------


def _api_facts(plugnmeet: PlugNmeetApi, *, ended: int) -> list[Any]:
    """What a pass learns of the corpus session, with the API's end ``ended``."""
    api = ApiClient(PlugNmeetServer(KEY, plugnmeet.url, KEY, SECRET))
    [past] = api.past_rooms()
    past = dataclasses.replace(past, ended=ended)
    found = [facts.session_ended(past, with_start=True)]
    found += [facts.artifact_created(SID, item) for item in api.artifacts(SID)]
    found += [facts.recording_proceeded(item) for item in api.recordings(SID)]
    server = PlugNmeetServer(KEY, plugnmeet.url, KEY, SECRET)
    return [as_delivery(server, fact, 1764180000.0) for fact in found if fact is not None]


@SHUFFLES
@given(order=st.permutations(range(28 + 11)))
def test_deliveries_and_facts_give_the_same_ledger_in_any_order(app, plugnmeet, order):
    # The API's end is 5 s after the session_ended's: whichever comes first, the API's stands.
    stream: list[Any] = [*BODIES.values(), *_api_facts(plugnmeet, ended=1764173570)]
    rt = runtime.of(app)

    def play(items: list[Any]) -> None:
        client = app.test_client()
        for item in items:
            if isinstance(item, bytes):
                assert deliver(client, item).status == 200
            else:
                assert store_batch(rt.database(), [item], rt.ingest.apply_delivery) != []

    reset_database(app)
    play(stream)
    expected = ledger_snapshot(app)
    reset_database(app)

    play([stream[i] for i in order])

    assert ledger_snapshot(app) == expected
    row = session_row(app)
    assert (row["end_source"], row["duration_seconds"], row["billable_minutes"]) == (
        "api",
        2570,
        43,
    )
    assert report(app, "usage")["total"]["artifacts"] == 6  # each usage record once


# --- answers a ledger must not take -------------------------------------------------------------

ENDED = 1764173565  # the corpus session's end


def _unresolved(done: Report) -> list[str]:
    return [u.reason for p in done.passes for u in p.unresolved]


@pytest.mark.parametrize(
    ("created", "ended", "why"),
    [
        (1764171000, 1764171000 - 7200, "before its start"),
        (1764171000 + 7200, ENDED + 7200, "7200 s from the webhooks'"),  # a zone 2 h off
    ],
)
def test_an_end_the_webhooks_contradict_is_not_taken(reconciling, plugnmeet, created, ended, why):
    plugnmeet.reset()
    plugnmeet.add_past_room("weekly-standup", SID, created=created, ended=ended)
    app = reconciling()
    send(app, BODIES.keys() - ENDS)

    done = reconcile(app)

    assert not done.failed and done.totals()["sessions_closed"] == 0
    [reason] = _unresolved(done)
    assert why in reason and "time zone" in reason
    assert session_row(app)["billable_minutes"] is None  # still open, not billed wrongly
    assert _unresolved(reconcile(app)) == [reason]  # said again on every pass


def test_artifacts_made_late_are_asked_for_again_each_hour(reconciling):
    app = reconciling()
    send(app, BODIES.keys() - ARTIFACTS)  # the session closed by its own webhook
    rt = runtime.of(app)
    earlier = ENDED + 3 * 3600  # a pass ran well after the end: its window starts later
    with write_transaction(rt.database()) as conn:
        passes.record(
            conn,
            passes.PassRecord(
                rt.settings.plugnmeet_servers[0].tenant,
                earlier,
                earlier + 1,
                earlier - 900,
                "completed",
            ),
        )
    reconciler = rt.reconciler()

    reconciler.clock = lambda: earlier + 60  # the same hour: the day is not asked again
    same_hour = run_pass(rt.database(), reconciler)
    assert same_hour is not None and same_hour.totals()["artifacts_added"] == 0

    reconciler.clock = lambda: earlier + 3600  # the next hour: the last day's sessions are
    next_hour = run_pass(rt.database(), reconciler)
    assert next_hour is not None and next_hour.totals()["artifacts_added"] == 9


def test_a_pass_longer_than_its_lease_keeps_it_and_finishes(reconciling, plugnmeet, monkeypatch):
    from plugnmeet_webhooks.reconcile import worker

    # A lease of 2 s renewed every 0.1 s, and five calls of 0.8 s: the pass lasts twice its
    # lease, and a busy machine that holds the heartbeat back for a second loses nothing.
    monkeypatch.setattr(worker, "LEASE_SECONDS", 2.0)
    plugnmeet.delay = 0.8
    app = reconciling()
    send(app, BODIES.keys() - ENDS)
    rt = runtime.of(app)
    reconciler = rt.reconciler()
    reconciler.heartbeat_every = 0.1

    done = run_pass(rt.database(), reconciler, since=SINCE)

    assert done is not None and not done.failed
    assert done.totals()["sessions_closed"] == 1


def _scripted(answers: dict[str, dict[str, Any]]) -> Any:
    """A plugNmeet server that answers each call with a fixed answer (bad ones included)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(answers[self.path]).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def _rooms(*rooms: tuple[str, str, str]) -> dict[str, Any]:
    listed = [
        {"room_id": "r", "room_sid": sid, "room_title": "", "created": c, "ended": e}
        for sid, c, e in rooms
    ]
    return {"status": True, "result": {"total_rooms": str(len(listed)), "rooms_list": listed}}


def test_odd_answers_are_reported_not_stored_and_the_pass_completes(make_app):
    tokens = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": "lots"}
    good = {"token_usage": {"total_tokens": 10, "total_tokens_estimated_cost": 0.5}}
    artifacts = [
        {"artifact_id": "a" * 300, "type": "MEETING_SUMMARY_USAGE", "metadata": good},
        {
            "artifact_id": "bad-tokens",
            "type": "MEETING_SUMMARY_USAGE",
            "metadata": {"token_usage": tokens},
            "created": "2025-11-26T16:20:00Z",
        },
        {
            "artifact_id": "good",
            "type": "MEETING_SUMMARY_USAGE",
            "metadata": good,
            "created": "2025-11-26T16:20:00Z",
        },
    ]
    recordings = [
        {"record_id": "REC_none", "room_sid": "RM_a", "file_path": ""},  # not ready yet
        {
            "record_id": "REC_big",
            "room_sid": "RM_a",
            "file_path": "x.mp4",
            "creation_time": "99999999999999999999",
            "file_size": 1.5,
        },
    ]
    server = _scripted(
        {
            "/auth/room/getActiveRoomsInfo": {"status": False, "status_code": "NOT_FOUND"},
            "/auth/room/fetchPastRooms": _rooms(
                ("RM_a", "2025-11-26T15:30:00Z", "2025-11-26T16:00:00Z"),
                ("RM_" + "x" * 300, "2025-11-26T15:30:00Z", "2025-11-26T16:00:00Z"),
                ("RM_backwards", "2025-11-26T17:30:00Z", "2025-11-26T16:00:00Z"),
                ("RM_future", "2025-11-26T15:30:00Z", "2999-01-01T00:00:00Z"),
            ),
            "/auth/artifact/fetch": {
                "status": True,
                "result": {"total_artifacts": "3", "artifacts_list": artifacts},
            },
            "/auth/recording/fetch": {
                "status": True,
                "result": {"total_recordings": "2", "recordings_list": recordings},
            },
        }
    )
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        app = make_app(plugnmeet_servers=(PlugNmeetServer(KEY, url, KEY, SECRET),))

        done = reconcile(app)
        again = reconcile(app)
    finally:
        server.shutdown()
        server.server_close()

    assert not done.failed and not again.failed
    assert done.totals() | {"unresolved": 0} == {
        "sessions_closed": 0,
        "sessions_discovered": 1,
        "artifacts_added": 1,
        "recordings_added": 1,
        "unresolved": 0,
    }
    reasons = _unresolved(done)
    assert any("room_sid is longer than 200" in r for r in reasons)
    assert any("artifact_id is longer than 200" in r for r in reasons)
    assert any("before its start" in r for r in reasons)
    assert any(
        "api:artifact:bad-tokens cannot be used" in r and "total_tokens" in r for r in reasons
    )
    assert again.totals()["sessions_discovered"] == again.totals()["artifacts_added"] == 0
    assert any("bad-tokens" in r for r in _unresolved(again))  # not forgotten on the next pass
    [row] = report(app, "sessions")["rows"]
    assert (row["room_sid"], row["billable_minutes"]) == ("RM_a", 30)
    assert report(app, "usage")["total"]["artifacts"] == 1
    [recording] = report(app, "files")["rows"]
    assert recording["path"] == "x.mp4"
