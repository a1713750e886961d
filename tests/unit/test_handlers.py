"""Handlers as plain functions: session length, usage read from an artifact, costs."""

from __future__ import annotations

import json

import pytest

import handlers
from plugnmeet_webhooks.normalize import normalize
from tests.support.helpers import SAMPLES_DIR

SESSION = {
    "event": "session_ended",
    "room": {"sid": "RM_1", "room_id": "r1", "creation_time": "1764171000"},
    "id": "s-1",
    "created_at": "1764173565",
}


def _length(payload: dict, received_at: float = 1764180000.0) -> handlers.SessionLength | None:
    return handlers.session_length(normalize(payload), received_at)


def test_session_length_comes_from_created_at_when_no_ended_time():
    assert _length(SESSION) == handlers.SessionLength(2565, 43, "created_at")


def test_session_length_prefers_ended_time():
    payload = json.loads(json.dumps(SESSION))
    payload["room"]["ended_time"] = "1764173400"
    assert _length(payload) == handlers.SessionLength(2400, 40, "ended_time")


def test_session_length_falls_back_to_receipt_time():
    payload = {k: v for k, v in SESSION.items() if k != "created_at"}
    assert _length(payload, received_at=1764171060.9) == handlers.SessionLength(60, 1, "receipt")


@pytest.mark.parametrize(("seconds", "minutes"), [(0, 0), (1, 1), (60, 1), (61, 2), (2700, 45)])
def test_minutes_round_up(seconds, minutes):
    payload = dict(SESSION, created_at=str(1764171000 + seconds))
    assert _length(payload).minutes == minutes


def test_zero_cost_is_reported_as_zero_not_missing():
    usage = handlers.artifact_usage(
        normalize(
            json.loads(
                SAMPLES_DIR.joinpath("artifact_ai_text_chat_summarization_usage.json").read_bytes()
            )
        ).room_artifact
    )
    assert usage.cost == 0.0
    assert handlers.describe_usage(usage).endswith("estimated cost 0.000000")


@pytest.mark.parametrize("cost", [-0.5, "1_000", "\u0661", " 5", "NaN", "Infinity"])
def test_costs_must_be_plain_non_negative_numbers(cost):
    from plugnmeet_webhooks.normalize import NormalizationError, to_float

    with pytest.raises(NormalizationError):
        to_float(cost, "cost")
