"""The corpus re-encoded in the other shapes protojson allows gives the same results."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.normalize import ARTIFACT_TYPES, camel_name, normalize
from tests.support.helpers import (
    corpus,
    corpus_bodies,
    deliver,
    handler_messages,
    stored_count,
    stored_rows,
)

ENUM_NUMBERS = {
    "state": {"JOINING": 0, "JOINED": 1, "ACTIVE": 2, "DISCONNECTED": 3},
    "source": {"UNKNOWN": 0, "CAMERA": 1, "MICROPHONE": 2, "SCREEN_SHARE": 3},
    "type": {name: n for n, name in enumerate(ARTIFACT_TYPES)} | {"AUDIO": 0, "VIDEO": 1},
}
MAP_FIELDS = {"breakdown"}


def _walk(value: Any, key_fn: Callable[[str], str], leaf_fn: Callable[[str, Any], Any]) -> Any:
    """Rebuild a payload, renaming keys and rewriting values; map keys are data, kept."""
    if isinstance(value, list):
        return [_walk(v, key_fn, leaf_fn) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if key in MAP_FIELDS and isinstance(item, dict):
            out[key_fn(key)] = {k: leaf_fn("map", v) for k, v in item.items()}
        else:
            out[key_fn(key)] = _walk(leaf_fn(key, item), key_fn, leaf_fn)
    return out


def _same(key: str) -> str:
    return key


def _keep(_key: str, value: Any) -> Any:
    return value


def camel_case(payload: dict) -> dict:
    return _walk(payload, camel_name, _keep)


def enums_as_numbers(payload: dict) -> dict:
    def leaf(key: str, value: Any) -> Any:
        table = ENUM_NUMBERS.get(key)
        return table[value] if table and isinstance(value, str) and value in table else value

    return _walk(payload, _same, leaf)


def int64_as_numbers(payload: dict) -> dict:
    def leaf(_key: str, value: Any) -> Any:
        return int(value) if isinstance(value, str) and value.isdigit() else value

    return _walk(payload, _same, leaf)


def everything(payload: dict) -> dict:
    return camel_case(enums_as_numbers(int64_as_numbers(payload)))


SHAPES: dict[str, Callable[[bytes], bytes]] = {
    "camelCase names": lambda b: json.dumps(camel_case(json.loads(b))).encode(),
    "enums as numbers": lambda b: json.dumps(enums_as_numbers(json.loads(b))).encode(),
    "int64 as numbers": lambda b: json.dumps(int64_as_numbers(json.loads(b))).encode(),
    "extra whitespace": lambda b: b"\n  " + json.dumps(json.loads(b), indent=3).encode() + b" \n",
    "all at once": lambda b: json.dumps(everything(json.loads(b)), indent=1).encode(),
}


def test_reencoders_really_change_the_shape():
    # AI chat usage: enums, int64 map values, nested names
    body = corpus("artifact_created_ai_text_chat_interaction_usage")
    assert b"roomArtifact" in SHAPES["camelCase names"](body)
    assert b"gemini-2.5-flash" in SHAPES["camelCase names"](body)  # map keys are data
    assert b'"type": 8' in SHAPES["enums as numbers"](body)
    assert b'"created_at": 1764173576' in SHAPES["int64 as numbers"](body)
    assert b'"userId"' in SHAPES["all at once"](body)


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_shape_normalises_to_the_same_events(shape):
    for body in corpus_bodies():
        assert normalize(json.loads(SHAPES[shape](body))) == normalize(json.loads(body))


def _run_stream(client, caplog, bodies: list[bytes]) -> list[str]:
    caplog.clear()
    caplog.set_level("INFO")
    assert [deliver(client, body).status for body in bodies] == [200] * len(bodies)
    return handler_messages(caplog)


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_shape_gives_the_same_results_through_the_app(shape, app, client, caplog, tmp_path):
    from app import create_app
    from config import Settings

    bodies = corpus_bodies()
    reference_app = create_app(
        Settings(
            api_keys=runtime.of(app).settings.api_keys,
            database_url=f"sqlite:///{tmp_path / 'reference.db'}",
        )
    )
    expected = _run_stream(reference_app.test_client(), caplog, bodies)
    runtime.of(reference_app).close()

    lines = _run_stream(client, caplog, [SHAPES[shape](b) for b in bodies])

    assert lines == expected
    assert "SUCCESS: Room 'weekly-standup' lasted for 43 minutes." in lines
    assert stored_count(app) == 28
    assert {row["handler_status"] for row in stored_rows(app)} == {"ok"}
