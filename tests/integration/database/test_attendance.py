"""Attendance as stays: reconnections, clipping to the session, several devices, any order.

Every case runs on SQLite and on PostgreSQL. The last test checks the ledger against a
model written here, second by second, for random joins and leaves.
"""

from __future__ import annotations

import json
import math
import random
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import corpus_json, deliver, report, reset_database, stored_text

START = 1764171000  # the corpus room's creation_time: its session starts here


def _body(template: str, changes: dict) -> bytes:
    payload = corpus_json(template)
    payload["participant"] = payload.get("participant", {})
    for key, value in changes.items():
        if key in ("sid", "identity", "name", "joined_at"):
            payload["participant"][key] = value
        elif key == "creation_time":
            payload["room"]["creation_time"] = value
        else:
            payload[key] = value
    if not payload["participant"]:
        del payload["participant"]
    payload["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(payload, sort_keys=True)))
    return json.dumps(payload).encode()


def joined(sid: str, identity: str, at: int) -> bytes:
    """A participant_joined at ``at`` (its participant.joined_at is the same second)."""
    changes = {"sid": sid, "identity": identity, "name": identity.title(), "joined_at": str(at)}
    return _body("participant_joined", changes | {"created_at": str(at)})


def left(sid: str, identity: str, at: int, joined_at: int | None = None) -> bytes:
    """A participant_left at ``at``; it repeats the stay's join time when given."""
    changes = {"sid": sid, "identity": identity, "name": identity.title(), "created_at": str(at)}
    if joined_at is not None:
        changes["joined_at"] = str(joined_at)
    else:
        changes["joined_at"] = "0"
    return _body("participant_left", changes)


def ended(at: int) -> bytes:
    return _body("session_ended", {"created_at": str(at)})


def track(sid: str, identity: str, name: str, at: int, *, published: bool = True) -> bytes:
    """A track_published (or track_unpublished) at ``at``; its participant is trimmed to sid,
    identity and name, as real servers send it."""
    changes = {"sid": sid, "identity": identity, "name": name, "created_at": str(at)}
    return _body("track_published" if published else "track_unpublished", changes)


def in_room(body: bytes, room_sid: str, room_id: str) -> bytes:
    """The same delivery in another room's session, under a new event id."""
    payload = json.loads(body)
    payload["room"] |= {"sid": room_sid, "room_id": room_id}
    payload["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(payload, sort_keys=True)))
    return json.dumps(payload).encode()


def rejoin_under_the_same_sid() -> list[bytes]:
    """In for 10 minutes, out for 20, in for 10 more, under one participant sid."""
    return [
        joined("PA_x", "u-x", START),
        left("PA_x", "u-x", START + 600, joined_at=START),
        joined("PA_x", "u-x", START + 1800),
        left("PA_x", "u-x", START + 2400, joined_at=START + 1800),
        ended(START + 3000),
    ]


def _deliver_all(client, bodies) -> None:
    answers = [deliver(client, body) for body in bodies]
    assert [a.status for a in answers] == [200] * len(bodies), [a.json for a in answers]


def _room(app) -> dict:
    [room] = report(app, "rooms")["rows"]
    return room


def test_a_rejoin_under_the_same_sid_is_a_second_stay_not_the_gap(app, client):
    _deliver_all(client, rejoin_under_the_same_sid())
    stays = report(app, "attendance")["rows"]
    assert [(s["seconds"], s["left_from"]) for s in stays] == [
        (600, "participant_left"),
        (600, "participant_left"),
    ]
    assert (_room(app)["attendees"], _room(app)["attendee_minutes"]) == (1, 20)


def test_a_leave_stamped_after_the_session_ended_closes_the_stay_at_the_end(app, client):
    _deliver_all(
        client,
        [
            joined("PA_x", "u-x", START + 60),
            ended(START + 1202),
            left("PA_x", "u-x", START + 1500, joined_at=START + 60),
        ],
    )
    [stay] = report(app, "attendance")["rows"]
    # The leave closed it (not the end), at the session's end (not the leave's own time).
    assert (stay["left_at"], stay["seconds"], stay["left_from"]) == (
        "2025-11-26T15:50:02Z",
        1142,
        "participant_left",
    )
    [session] = report(app, "sessions")["rows"]
    room = _room(app)
    assert (session["billable_minutes"], room["attendee_minutes"]) == (21, 20)


def test_a_join_stamped_before_the_room_was_created_is_clipped_to_the_start(app, client):
    _deliver_all(
        client,
        [
            joined("PA_x", "u-x", START - 900),
            left("PA_x", "u-x", START + 600, joined_at=START - 900),
            ended(START + 1200),
        ],
    )
    [stay] = report(app, "attendance")["rows"]
    assert (stay["joined_at"], stay["seconds"]) == ("2025-11-26T15:30:00Z", 600)
    assert _room(app)["attendee_minutes"] == 10


def test_two_devices_at_once_count_the_time_they_cover_once(app, client):
    _deliver_all(
        client,
        [
            joined("PA_phone", "u-x", START),
            joined("PA_laptop", "u-x", START + 300),
            left("PA_phone", "u-x", START + 600, joined_at=START),
            left("PA_laptop", "u-x", START + 900, joined_at=START + 300),
            ended(START + 1200),
        ],
    )
    assert len(report(app, "attendance")["rows"]) == 2
    assert (_room(app)["attendees"], _room(app)["attendee_minutes"]) == (1, 15)


def test_a_person_never_attends_longer_than_the_session(app, client):
    stream = [ended(START + 1000)]
    for n in range(4):  # four overlapping devices, all over the edges of the session
        sid = f"PA_{n}"
        stream += [joined(sid, "u-x", START - 100 * n), left(sid, "u-x", START + 1500 + n)]
    _deliver_all(client, stream)
    [session] = report(app, "sessions")["rows"]
    assert _room(app)["attendee_minutes"] == session["billable_minutes"] == 17


def test_open_stays_end_with_the_session_and_count_nothing_while_it_is_open(app, client):
    _deliver_all(client, [joined("PA_x", "u-x", START + 100)])
    [stay] = report(app, "attendance")["rows"]
    assert (stay["left_at"], stay["left_from"], stay["seconds"]) == (None, None, None)
    assert (_room(app)["attendees"], _room(app)["attendee_minutes"]) == (1, 0)
    _deliver_all(client, [ended(START + 700)])
    [stay] = report(app, "attendance")["rows"]
    assert (stay["left_from"], stay["seconds"]) == ("session_end", 600)
    assert _room(app)["attendee_minutes"] == 10


def test_a_leave_whose_join_was_lost_still_counts_from_its_join_time(app, client):
    _deliver_all(
        client, [left("PA_x", "u-x", START + 900, joined_at=START + 300), ended(START + 1000)]
    )
    [stay] = report(app, "attendance")["rows"]
    assert stay["seconds"] == 600


def test_a_session_delivered_months_later_is_billed_as_sent(app, client):
    # Recorded in November 2025, delivered now (from an archive, say): nothing is refused.
    _deliver_all(
        client,
        [joined("PA_x", "u-x", START + 60), left("PA_x", "u-x", START + 660, START + 60),
         ended(START + 1200)],
    )  # fmt: skip
    [session] = report(app, "sessions")["rows"]
    assert (session["billable_minutes"], _room(app)["attendee_minutes"]) == (20, 10)


# --- a model, second by second ------------------------------------------------------------


def model_minutes(marks: list[tuple[str, str, str, int]], start: int, end: int) -> int:
    """Attendee minutes by simulation: at each second of the session, who is in?

    ``marks`` are (identity, sid, kind, at). A sid is in from a join until the next leave;
    at one second, a leave is taken before a join when the sid is in, after it when not.
    """
    by_sid: dict[tuple[str, str], dict[int, set[str]]] = {}
    for identity, sid, kind, at in marks:
        by_sid.setdefault((identity, sid), {}).setdefault(at, set()).add(kind)
    present: dict[str, int] = {}
    for identity in {identity for identity, _ in by_sid}:
        count = 0
        for second in range(start, end):
            inside = False
            for (who, _), times in by_sid.items():
                if who != identity:
                    continue
                state = False
                for at in sorted(t for t in times if t <= second):
                    kinds = times[at]
                    if state and "leave" in kinds:
                        state = "join" in kinds  # left and came back in the same second
                    elif not state and "join" in kinds:
                        state = "leave" not in kinds  # joined and left at once: no stay
                inside = inside or state
            count += inside
        present[identity] = count
    return sum(math.ceil(seconds / 60) for seconds in present.values())


@st.composite
def meetings(draw):
    """Joins and leaves of a few people over a 20-minute session, some outside its edges."""
    events = []
    marks = []
    for person in range(draw(st.integers(1, 3))):
        identity = f"u-{person}"
        for device in range(draw(st.integers(1, 2))):
            sid = f"PA_{person}_{device}"
            times = sorted(
                draw(st.lists(st.integers(-120, 1320), min_size=1, max_size=6, unique=True))
            )
            for n in range(0, len(times), 2):
                join = START + times[n]
                events.append(joined(sid, identity, join))
                marks.append((identity, sid, "join", join))
                if n + 1 < len(times) and draw(st.sampled_from([True, True, True, False])):
                    leave = START + times[n + 1]
                    events.append(left(sid, identity, leave, joined_at=join))
                    marks.append((identity, sid, "leave", leave))
    events.append(ended(START + 1200))
    seed = draw(st.integers(0, 2**32))
    redelivered = draw(st.lists(st.integers(0, len(events) - 1), max_size=len(events) // 3 + 1))
    return events, marks, seed, redelivered


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(meeting=meetings())
def test_attendee_minutes_match_a_second_by_second_model_in_any_order(app, client, meeting):
    events, marks, seed, redelivered = meeting
    expected = model_minutes(marks, START, START + 1200)
    figures = []
    for shuffle in range(2):
        reset_database(app)
        stream = events + [events[i] for i in redelivered]
        random.Random(seed + shuffle).shuffle(stream)
        _deliver_all(client, stream)
        rows = report(app, "rooms")["rows"]
        figures.append(rows[0]["attendee_minutes"] if rows else 0)
        [session] = report(app, "sessions")["rows"]
        per_person = {m[0] for m in marks}
        assert figures[-1] <= len(per_person) * session["billable_minutes"]
    assert figures == [expected, expected]


def test_db_upgrade_brings_attendance_from_before_to_the_new_rules(app, client, settings):
    from alembic import command
    from sqlalchemy import text

    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.storage.engine import write_transaction
    from plugnmeet_webhooks.storage.migrate import _alembic_config

    _deliver_all(client, rejoin_under_the_same_sid())
    engine = runtime.of(app).database()
    with write_transaction(engine) as conn:  # back to the table the version before kept
        command.downgrade(_alembic_config(conn), "0004")
    with engine.connect() as conn:
        old = conn.execute(text("SELECT joined_at, left_at FROM attendance")).all()
    assert [tuple(r) for r in old] == [(START, START + 2400)]  # one row: the gap billed

    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.stdout.splitlines() == [
        "Database schema upgraded from 0004 to 0010.",
        "Applied 4 stored participant_joined and participant_left events again (0 failed).",
    ]
    runtime.of(app).forget_schema_check()
    stays = report(app, "attendance")["rows"]
    assert [s["seconds"] for s in stays] == [600, 600]
    assert _room(app)["attendee_minutes"] == 20


def _changed(body: bytes, **participant: str) -> bytes:
    """The same delivery with some participant fields changed, under a new event id."""
    payload = json.loads(body)
    payload["participant"].update(participant)
    payload["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(payload, sort_keys=True)))
    return json.dumps(payload).encode()


def _people(app) -> list[tuple]:
    rows = report(app, "attendance")["rows"]
    return sorted((r["identity"], r["name"], r["participant_sid"], r["seconds"]) for r in rows)


def _in_both_orders(app, client, first: list[bytes], rest: list[bytes]) -> list:
    """The rooms report and the stays after ``first`` then ``rest``, and after the reverse."""
    seen = []
    for order in (first + rest, first[::-1] + rest):
        reset_database(app)
        _deliver_all(client, order)
        seen.append((_room(app)["attendees"], _room(app)["attendee_minutes"], _people(app)))
    return seen


def test_an_identity_sent_later_replaces_the_sid_that_stood_in_for_it(app, client):
    """A leave sent without an identity keys the person by sid until an event names them."""
    unnamed_leave = _changed(left("PA_a", "u-x", START + 600, joined_at=START), identity="")
    first = [joined("PA_a", "u-x", START), unnamed_leave]
    rest = [joined("PA_b", "u-x", START), left("PA_b", "u-x", START + 600, joined_at=START)]
    a, b = _in_both_orders(app, client, first, [*rest, ended(START + 1200)])
    assert a == b
    assert a[:2] == (1, 10)  # one person, two devices over the same ten minutes
    assert {identity for identity, *_ in a[2]} == {"u-x"}


def test_a_sid_is_known_by_the_name_of_its_earliest_event_whatever_the_order(app, client):
    first = [
        _changed(joined("PA_a", "u-x", START), name="Zed"),
        _changed(left("PA_a", "u-x", START + 600, joined_at=START), name="Alice"),
    ]
    a, b = _in_both_orders(app, client, first, [ended(START + 1200)])
    assert a == b
    assert [name for _, name, *_ in a[2]] == ["Zed"]


def test_a_person_with_two_sids_is_known_by_the_name_given_earliest(app, client):
    first = [
        _changed(joined("PA_b", "u-x", START + 60), name="Alice"),
        _changed(joined("PA_a", "u-x", START), name="Zed"),
    ]
    a, b = _in_both_orders(app, client, first, [ended(START + 1200)])
    assert a == b
    assert {name for _, name, *_ in a[2]} == {"Zed"}


def test_a_name_sent_only_on_a_track_names_the_person(app, client):
    unnamed = [
        _changed(joined("PA_x", "u-x", START), name=""),
        _changed(left("PA_x", "u-x", START + 600, joined_at=START), name=""),
    ]
    tracks = [
        track("PA_x", "u-x", "Xena Track", START + 30),
        track("PA_x", "u-x", "Later Name", START + 300, published=False),
    ]
    a, b = _in_both_orders(app, client, [*unnamed, *tracks], [ended(START + 1200)])
    assert a == b
    assert a[2] == [("u-x", "Xena Track", "PA_x", 600)]  # the earliest, not the smaller
    assert a[:2] == (1, 10)  # a track adds no attendance


def test_the_earliest_name_wins_across_joins_and_tracks_whatever_the_order(app, client):
    first = [
        # Named by the join first: a later track's name loses, smaller though it is.
        _changed(joined("PA_x", "u-x", START), name="Zed"),
        track("PA_x", "u-x", "Alice", START + 40),
        # No name on the join: the track names them before the leave does.
        _changed(joined("PA_y", "u-y", START + 10), name=""),
        track("PA_y", "u-y", "Yves", START + 20),
        _changed(left("PA_y", "u-y", START + 600, joined_at=START + 10), name="Aaron"),
        # A second device's track names the person before the first device's join.
        _changed(joined("PA_z1", "u-z", START + 100), name="Zoe Late"),
        track("PA_z2", "u-z", "Zoe Early", START + 50),
    ]
    a, b = _in_both_orders(app, client, first, [ended(START + 1200)])
    assert a == b
    assert a[2] == [
        ("u-x", "Zed", "PA_x", 1200),
        ("u-y", "Yves", "PA_y", 590),
        ("u-z", "Zoe Early", "PA_z1", 1100),
    ]


def test_a_person_named_only_on_a_track_is_forgotten_through_a_rebuild(app, client, runner):

    _deliver_all(
        client,
        [
            _changed(joined("PA_m", "u-m", START), name=""),
            track("PA_m", "u-m", "Mallory Example", START + 30),
            _changed(left("PA_m", "u-m", START + 600, joined_at=START), name=""),
            ended(START + 1200),
        ],
    )
    assert _people(app) == [("u-m", "Mallory Example", "PA_m", 600)]
    assert runner.invoke(args=["forget-participant", "u-m", "--yes"]).exit_code == 0
    [(identity, name, sid, seconds)] = forgotten = _people(app)
    assert (name, sid, seconds) == (identity, "PA_m", 600)
    assert identity.startswith("forgotten-")
    assert "Mallory Example" not in stored_text(app) and "u-m" not in stored_text(app)
    assert runner.invoke(args=["rebuild-ledger", "--yes"]).exit_code == 0
    assert _people(app) == forgotten
    assert "Mallory Example" not in stored_text(app)


def test_people_are_counted_once_however_many_sessions_and_rooms_they_attend(app, client):
    from tests.support.helpers import KEY, OTHER_KEY, OTHER_SECRET

    def attended(room_sid: str, room_id: str, sid: str, identity: str) -> list[bytes]:
        stay = [joined(sid, identity, START), left(sid, identity, START + 600, START)]
        return [in_room(body, room_sid, room_id) for body in stay]

    held = {
        ("RM_a1", "room-a"): ["u-1", "u-2", "u-2"],  # u-2 on two devices
        ("RM_a2", "room-a"): ["u-1", "u-4"],
        ("RM_b1", "room-b"): ["u-1", "u-3"],
    }
    bodies = []
    for (room_sid, room_id), identities in held.items():
        for n, identity in enumerate(identities):
            bodies += attended(room_sid, room_id, f"PA_{room_sid}_{n}", identity)
        bodies.append(in_room(ended(START + 1200), room_sid, room_id))
    _deliver_all(client, bodies)
    # The same identity under another tenant is another person.
    elsewhere = attended("RM_c1", "room-a", "PA_c", "u-1")
    for body in [*elsewhere, in_room(ended(START + 1200), "RM_c1", "room-a")]:
        assert deliver(client, body, key=OTHER_KEY, secret=OTHER_SECRET).status == 200

    rooms = report(app, "rooms")
    assert {(r["tenant"], r["room_id"]): r["attendees"] for r in rooms["rows"]} == {
        (KEY, "room-a"): 3,
        (KEY, "room-b"): 2,
        (OTHER_KEY, "room-a"): 1,
    }
    attendance = report(app, "attendance")["total"]
    assert (attendance["stays"], attendance["people"], rooms["total"]["attendees"]) == (8, 5, 5)
    for filters, people in (({"room": "room-a"}, 4), ({"tenant": KEY}, 4), ({"room": "room-b"}, 2)):
        assert report(app, "attendance", **filters)["total"]["people"] == people, filters
        assert report(app, "rooms", **filters)["total"]["attendees"] == people, filters


def test_a_session_that_ends_before_it_starts_has_no_attendance(app, client):
    end = json.loads(ended(START - 100))
    del end["room"]["creation_time"]  # nothing to refuse it by: the end is kept as sent
    end["id"] = "end-without-a-start"
    stay = [joined("PA_a", "u-x", START + 10), left("PA_a", "u-x", START + 500, START + 10)]
    _deliver_all(client, [*stay, json.dumps(end).encode()])
    [session] = report(app, "sessions")["rows"]
    assert session["billable_minutes"] == 0
    assert _room(app)["attendee_minutes"] == 0
    assert report(app, "attendance")["rows"] == []


def _downgraded_to(app, revision: str):
    from alembic import command

    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.storage.engine import write_transaction
    from plugnmeet_webhooks.storage.migrate import _alembic_config

    engine = runtime.of(app).database()
    with write_transaction(engine) as conn:
        command.downgrade(_alembic_config(conn), revision)
    return engine


def _upgraded(app) -> list[str]:
    from plugnmeet_webhooks import runtime

    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, result.output
    runtime.of(app).forget_schema_check()
    return result.stdout.splitlines()


def test_db_upgrade_keeps_no_join_from_a_leave_stamped_before_its_join(app, client):
    from sqlalchemy import text

    # A leave whose joined_at is after its own time: ingested now, it leaves no join mark.
    _deliver_all(client, [left("PA_x", "u-x", START + 100, joined_at=START + 160)])
    _deliver_all(client, [ended(START + 1200)])
    fresh = _people(app), _room(app)
    engine = _downgraded_to(app, "0004")
    with engine.begin() as conn:  # the version before kept that joined_at as sent
        conn.execute(text("UPDATE attendance SET joined_at = :at"), {"at": START + 160})
    _upgraded(app)
    assert (_people(app), _room(app)) == fresh
    assert fresh[1]["attendee_minutes"] == 0


def test_db_upgrade_takes_up_a_replay_that_was_cut_short(app, client):
    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.storage.migrate import replays_due, upgrade_schema

    _deliver_all(client, rejoin_under_the_same_sid())
    engine = _downgraded_to(app, "0004")
    upgrade_schema(engine)  # the schema step commits; the replay after it never ran
    runtime.of(app).forget_schema_check()
    assert replays_due(engine) == ("participant_joined", "participant_left")
    assert _room(app)["attendee_minutes"] == 40  # the old row's gap, until the replay
    check = app.test_cli_runner().invoke(args=["db", "check"])
    assert "run 'flask --app app db upgrade'" in check.stdout

    assert _upgraded(app) == [
        "Database schema already at revision 0010.",
        "An earlier upgrade did not finish applying its events again; resuming.",
        "Applied 4 stored participant_joined and participant_left events again (0 failed).",
    ]
    assert replays_due(engine) == ()
    assert _room(app)["attendee_minutes"] == 20
    assert _upgraded(app) == ["Database schema already at revision 0010."]


def test_db_upgrade_of_an_empty_database_leaves_no_replay_due(app):
    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.storage.migrate import replays_due

    engine = runtime.of(app).database()
    assert replays_due(engine) == ()
    _downgraded_to(app, "0004")
    assert _upgraded(app) == ["Database schema upgraded from 0004 to 0010."]
    assert replays_due(engine) == ()


def test_db_downgrade_and_upgrade_twice_keep_every_figure(app, client):
    bodies = [
        *rejoin_under_the_same_sid(),
        joined("PA_y", "u-y", START + 5),
        _changed(joined("PA_z", "u-z", START), name=""),
    ]
    _deliver_all(client, bodies)
    fresh = _people(app), _room(app)
    for _ in range(2):
        _downgraded_to(app, "0004")
        _upgraded(app)
        assert (_people(app), _room(app)) == fresh


def test_db_upgrade_names_people_from_the_stored_track_events(app, client):
    from sqlalchemy import text

    _deliver_all(
        client,
        [
            _changed(joined("PA_x", "u-x", START), name=""),
            track("PA_x", "u-x", "Xena Track", START + 30),
            track("PA_x", "u-x", "Later Name", START + 300, published=False),
            _changed(left("PA_x", "u-x", START + 600, joined_at=START), name=""),
            ended(START + 1200),
        ],
    )
    fresh = _people(app), _room(app)
    assert fresh[0] == [("u-x", "Xena Track", "PA_x", 600)]
    engine = _downgraded_to(app, "0007")
    with engine.begin() as conn:  # as the version before left it: no track named anyone
        conn.execute(text("UPDATE participants SET name = NULL, name_at = NULL"))
    assert _people(app) == [("u-x", None, "PA_x", 600)]
    assert _upgraded(app) == [
        "Database schema upgraded from 0007 to 0010.",
        "Applied 2 stored track_published and track_unpublished events again (0 failed).",
    ]
    assert (_people(app), _room(app)) == fresh
    assert _upgraded(app) == ["Database schema already at revision 0010."]


def test_two_identities_sent_for_one_sid_give_the_same_person_in_any_order(app, client):
    joined_as_x = joined("PA_a", "u-x", START)
    left_as_y = _changed(left("PA_a", "u-x", START + 600, joined_at=START), identity="u-y")
    a, b = _in_both_orders(app, client, [joined_as_x, left_as_y], [ended(START + 1200)])
    assert a == b
    assert {identity for identity, *_ in a[2]} == {"u-x"}  # the smaller


def test_a_sid_equal_to_another_persons_identity_gives_one_answer_in_any_order(app, client):
    from itertools import permutations

    bodies = [
        _changed(joined("", "alice", START), sid=""),  # no sid: keyed by her identity
        _changed(joined("alice", "bob", START + 60), name="Bob"),  # a sid spelled "alice"
        _changed(left("alice", "carol", START + 600, START + 60), name="Carol"),
    ]
    seen = set()
    for order in permutations(bodies):
        reset_database(app)
        _deliver_all(client, [*order, ended(START + 1200)])
        seen.add(repr((_room(app), _people(app))))
    assert len(seen) == 1, seen


def test_a_person_forgotten_before_names_had_times_stays_forgotten(app, client, runner):
    from alembic import command

    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.storage.engine import write_transaction
    from plugnmeet_webhooks.storage.migrate import _alembic_config

    _deliver_all(client, [joined("PA_m", "u-m", START + 100)])
    assert runner.invoke(args=["forget-participant", "u-m", "--yes"]).exit_code == 0
    engine = runtime.of(app).database()
    with write_transaction(engine) as conn:  # as the version before left it: no name_at
        command.downgrade(_alembic_config(conn), "0005")
    _upgraded(app)
    # Arriving late, but stamped before every event the name was dated from.
    late = _changed(joined("PA_m", "u-m", START + 50), name="Mallory Real")
    _deliver_all(client, [late, ended(START + 1200)])
    [stay] = report(app, "attendance")["rows"]
    assert stay["name"].startswith("forgotten-") and stay["identity"] == stay["name"]
