"""Every shipped sample is accepted and handled without a failure."""

from __future__ import annotations

import json

import pytest

from handlers import registry
from tests.support.helpers import SAMPLES, deliver, handler_messages, stored_rows


def test_samples_cover_every_event_and_artifact_type():
    events = {json.loads(p.read_bytes())["event"] for p in SAMPLES}
    assert registry.names <= events
    artifacts = {
        json.loads(p.read_bytes())["room_artifact"].get("type", "UNKNOWN_ARTIFACT")
        for p in SAMPLES
        if p.stem.startswith("artifact_")
    }
    assert len(artifacts) == 10


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_sample_is_accepted_and_handled(app, client, caplog, path):
    caplog.set_level("INFO")
    body = path.read_bytes()
    assert not body.endswith(b"\n")

    answer = deliver(client, body)

    assert answer.status == 200
    [row] = stored_rows(app)
    assert row["handler_status"] == "ok"
    [line] = handler_messages(caplog)
    assert "product-review" in line
