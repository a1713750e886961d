"""The bench's end-of-session burst: 16 rooms' distinct deliveries, signed as plugNmeet signs.

Nothing here is timed; the timing is `python -m bench.run --only latency`.
"""

from __future__ import annotations

import argparse
import json
import re

import pytest

from bench import latency, run
from tests.support.helpers import CORPUS
from validation import VerificationError, verify

KEYS = {latency.KEY: latency.SECRET}
ID_FIELDS = ("id", "sid", "room_id", "artifact_id", "reference_artifact_id", "file_id",
             "record_id", "job_id", "file_path", "file_name")  # fmt: skip


def _walk(value: object, path: str = "") -> dict[str, object]:
    """Every leaf of a payload by its path."""
    if isinstance(value, dict):
        return {
            k: v for key, inner in value.items() for k, v in _walk(inner, f"{path}/{key}").items()
        }
    if isinstance(value, list):
        return {
            k: v for n, inner in enumerate(value) for k, v in _walk(inner, f"{path}/{n}").items()
        }
    return {path: value}


@pytest.fixture(scope="module")
def bursts() -> list[list[list[tuple[str, bytes]]]]:
    return [latency.build_bursts(0), latency.build_bursts(1)]


def test_a_burst_is_16_rooms_each_sending_the_corpus_end_of_session_in_order(bursts):
    corpus = [json.loads(p.read_bytes())["event"] for p in CORPUS]
    end = corpus[corpus.index("participant_left") :]
    assert "room_finished" in end and "session_ended" in end and "artifact_created" in end
    rooms = bursts[0]
    assert len(rooms) == 16
    for room in rooms:
        assert [json.loads(body)["event"] for _, body in room] == end


def test_every_room_has_its_own_room_id_sids_and_event_ids(bursts):
    room_ids, room_sids, event_ids, artifact_ids, participant_sids = set(), set(), [], [], []
    for burst in bursts:
        for room in burst:
            payloads = [json.loads(body) for _, body in room]
            assert len({p["room"]["room_id"] for p in payloads}) == 1
            assert len({p["room"]["sid"] for p in payloads}) == 1
            room_ids.add(payloads[0]["room"]["room_id"])
            room_sids.add(payloads[0]["room"]["sid"])
            event_ids += [p["id"] for p in payloads]
            artifact_ids += [p["room_artifact"]["artifact_id"] for p in payloads
                             if "room_artifact" in p]  # fmt: skip
            participant_sids += [p["participant"]["sid"] for p in payloads if "participant" in p]
    assert len(room_ids) == len(room_sids) == 32  # two bursts of 16 rooms
    assert len(set(event_ids)) == len(event_ids) == 32 * 16
    assert len(set(artifact_ids)) == len(artifact_ids)
    assert len(set(participant_sids)) == len(participant_sids)
    assert all(re.fullmatch(latency.UUID_TEXT, i) for i in event_ids + artifact_ids)


def test_only_the_ids_differ_from_the_corpus_and_references_follow_them(bursts):
    corpus = latency.end_of_session_bodies()
    room = bursts[0][5]
    for original, (_, body) in zip(corpus, room, strict=True):
        before, after = _walk(json.loads(original)), _walk(json.loads(body))
        assert before.keys() == after.keys()
        for path, value in before.items():
            if path.rsplit("/", 1)[1] not in ID_FIELDS:
                assert after[path] == value, path
    payloads = [json.loads(body) for _, body in room]
    summary = next(
        p for p in payloads if p.get("room_artifact", {}).get("type") == "MEETING_SUMMARY"
    )
    usage = next(p for p in payloads
                 if p.get("room_artifact", {}).get("type") == "MEETING_SUMMARY_USAGE")  # fmt: skip
    reference = usage["room_artifact"]["metadata"]["reference_artifact_id"]
    assert reference == summary["room_artifact"]["artifact_id"]


def test_each_delivery_is_signed_as_a_plugnmeet_server_signs_it(bursts):
    for room in bursts[0]:
        for token, body in room:
            claims = verify(body, token, KEYS)
            assert claims["iss"] == latency.KEY
    token, body = bursts[0][0][0]
    with pytest.raises(VerificationError):
        verify(body + b" ", token, KEYS)
    with pytest.raises(VerificationError):
        verify(body, token, {latency.KEY: latency.SECRET[::-1]})


def test_the_burst_is_signed_with_the_bench_s_key():
    assert (latency.KEY, latency.SECRET, latency.PATH) == (run.KEY, run.SECRET, run.PATH)


def test_percentile_is_nearest_rank():
    values = [float(n) for n in range(1, 101)]
    assert latency.percentile(values, 50) == 50
    assert latency.percentile(values, 99) == 99
    assert latency.percentile(values, 100) == 100
    assert latency.percentile([3.0], 99) == 3.0


def test_only_names_parts_that_can_run_together():
    assert run.parts("express,latency") == {"express", "latency"}
    assert run.parts("reconcile") == {"reconcile"}
    assert run.parts("outbox") == {"outbox"}
    for wrong in ("reconcile,latency", "outbox,express", "bogus", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            run.parts(wrong)


def test_a_part_run_alone_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text(
        "# Benchmarks\n\ntable\n\n## Latency\n\nold\n\n## Other\n\nkept\n\n## Notes\n\nn\n"
    )
    run.replace_section(path, ["## Latency", "", "new"])
    run.replace_section(path, ["## Express", "", "added"])
    assert path.read_text() == (
        "# Benchmarks\n\ntable\n\n## Latency\n\nnew\n\n## Other\n\nkept\n\n"
        "## Express\n\nadded\n\n## Notes\n\nn\n"
    )
