"""Values past their bounds in a verified delivery: the event is kept, marked failed and left
out of the ledger, never a 503; sums of costs are exact and cannot overflow.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import write_transaction
from tests.support.helpers import (
    changed_body,
    corpus_json,
    deliver,
    failed_with,
    ledger_snapshot,
    report,
)

TRANSLATION = corpus_json("artifact_created_chat_translation_usage")
JOINED = corpus_json("participant_joined")
SESSION_ENDED = corpus_json("session_ended")


def _usage(n: int, cost) -> bytes:
    return changed_body(
        TRANSLATION,
        id=f"usage-{n}",
        room_artifact__artifact_id=f"artifact-{n}",
        room_artifact__metadata__character_count_usage__total_characters_estimated_cost=cost,
    )


@pytest.mark.parametrize("cost", [5e12, 9.3e12, 10**7])
def test_a_cost_over_its_bound_is_kept_but_marked_failed_and_reports_answer(app, client, cost):
    assert deliver(client, _usage(1, cost)).json == {"status": "accepted"}
    failed_with(app, "over the bound")
    assert report(app, "usage")["rows"] == []
    assert report(app, "rooms")["total"]["ai_cost"] is None


def test_a_quantity_near_two_to_the_63_is_refused_the_same_way(app, client):
    body = changed_body(
        TRANSLATION, room_artifact__metadata__character_count_usage__total_characters=2**63 - 2
    )
    assert deliver(client, body).json == {"status": "accepted"}
    failed_with(app, "over the bound")
    assert report(app, "usage")["rows"] == []


def test_cost_sums_are_exact_and_cannot_overflow(app, client):
    # Costs at the bound, sent the normal way, add up exactly.
    for n in range(3):
        assert deliver(client, _usage(n, 10**6)).json == {"status": "accepted"}
    assert report(app, "usage")["total"]["estimated_cost"] == 3_000_000.0
    # Rows far over any bound (put in behind the service's back) still add up, exactly:
    # three of them would overflow one 64-bit sum of micro-units.
    with write_transaction(runtime.of(app).database()) as conn:
        conn.execute(text("UPDATE usage SET cost_micros = 4000000000000000001"))
    assert report(app, "usage")["total"]["estimated_cost"] == 12_000_000_000_000.0
    [room] = report(app, "rooms")["rows"]
    assert room["ai_cost"] == 12_000_000_000_000.0


@pytest.mark.parametrize("field", ["room__room_id", "participant__sid", "participant__identity"])
def test_a_key_longer_than_any_index_holds_is_stored_marked_failed_not_503(app, client, field):
    body = changed_body(JOINED, **{field: "x" * 3000})
    assert deliver(client, body).json == {"status": "accepted"}
    row = failed_with(app, "longer than 200 characters")
    assert row["room_id"] in (None, "weekly-standup")
    assert all(rows == [] for rows in ledger_snapshot(app).values())
    # A redelivery is a duplicate, not another failure: the sender stops.
    assert deliver(client, body).json == {"status": "duplicate"}


@pytest.mark.parametrize("title", ["a\x00b", "\ud800", "t" * 501])
def test_a_room_title_that_is_not_plain_text_is_refused(app, client, title):
    body = changed_body(SESSION_ENDED, room__metadata=json.dumps({"room_title": title}))
    assert deliver(client, body).status == 200
    failed_with(app, "room_title")
    assert ledger_snapshot(app)["sessions"] == []
