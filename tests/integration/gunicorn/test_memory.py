"""Memory: sixteen hostile bodies of the largest allowed size at once, in one worker."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from config import DEFAULT_MAX_BODY_BYTES
from plugnmeet_webhooks.cli.deliveries import post
from tests.support.gunicorn_server import gunicorn, wait_for_workers
from tests.support.helpers import KEY, SECRET
from validation import sign

pytestmark = pytest.mark.slow


def _largest_body(n: int) -> bytes:
    """A verified event padded with tiny JSON objects up to the body limit: many small
    Python objects per byte, the costliest shape to parse."""
    head = json.dumps({"event": "room_started", "id": f"mem-{n}", "pad": []}).encode()
    room = DEFAULT_MAX_BODY_BYTES - len(head)
    pad = b",".join([b"{}"] * (room // 3))
    return head[:-2] + pad + b"]}"


def _status_mb(pid: int, field: str) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", status).group(1)) / 1024


def test_sixteen_maximum_bodies_at_once_stay_within_bounds(tmp_path):
    bodies = [_largest_body(n) for n in range(48)]
    assert all(len(b) <= DEFAULT_MAX_BODY_BYTES for b in bodies)
    with gunicorn(tmp_path, workers=1) as server:
        [worker] = wait_for_workers(server.process.pid, 1)
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(lambda b: post(server.url, b, sign(b, KEY, SECRET), timeout=60)[0], bodies)
            )
        peak, after = _status_mb(worker, "VmHWM"), _status_mb(worker, "VmRSS")
    assert statuses == [200] * 48
    assert peak <= 150, f"peak RSS {peak:.1f} MB"
    assert after <= 100, f"RSS after {after:.1f} MB"
