"""Latency under an end-of-session burst: 16 rooms ending at once.

A plugNmeet server sends each room's deliveries one after the other (a room's events queue
behind each other) and gives a delivery about 3 s in all. When a session ends, a room sends
its end-of-session burst: the participants leaving, ``room_finished``, ``session_ended``,
the recording and the artifacts. This module builds that burst for 16 rooms from
``tests/corpus`` (every corpus delivery from the first ``participant_left`` on, in the
corpus's order), each room with its own room id, sids and event ids, signed as the other
bench deliveries are; and it sends them as plugNmeet does: one connection per room, each
room's deliveries in order, every room at once.

``python -m bench.run --only latency`` runs it against the receiver and the Express peer.
Run alone, ``python -m bench.latency URL [URL ...]`` sends each server ``--bursts`` bursts
(after one not timed), the servers taking turns burst by burst, and prints as JSON what each
delivery met: its latency, its status.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

from validation import sign

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus"
ROOMS = 16
FIRST_EVENT = "participant_left"  # the burst starts when the participants leave
KEY = "bench-key"
SECRET = "bench-secret-0123456789abcdefghijklmnop"  # noqa: S105 - bench/run.py's throw-away key
PATH = "/webhook-listener"
NAMESPACE = uuid.UUID("6d1f3c52-9a0e-4a43-9b7e-3f5c2b1d8e07")
UUID_TEXT = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
NAMED_IDS = ("sid", "room_id", "record_id", "job_id")  # ids that are not UUIDs


def end_of_session_bodies() -> list[bytes]:
    """The corpus deliveries of a session's end, in the order a plugNmeet server sends them."""
    paths = sorted(CORPUS.glob("*.json"))
    first = next(n for n, p in enumerate(paths) if p.stem.split("_", 1)[1] == FIRST_EVENT)
    return [p.read_bytes() for p in paths[first:]]


def _named_ids(value: object, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        for name, inner in value.items():
            if name in NAMED_IDS and isinstance(inner, str) and inner:
                found.add(inner)
            else:
                _named_ids(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _named_ids(inner, found)
    return found


def room_bodies(bodies: list[bytes], tag: str) -> list[bytes]:
    """The same deliveries for another room: every UUID (event ids, artifact ids and the
    artifacts' references to each other) and every named id (room id, room and participant
    sids, recording and job ids) made its own with ``tag``, wherever it appears (file paths
    too); everything else, byte for byte, as in the corpus."""
    names: set[str] = set()
    for body in bodies:
        _named_ids(json.loads(body), names)
    alternatives = [UUID_TEXT, *(re.escape(n) for n in sorted(names, key=len, reverse=True))]
    pattern = re.compile("|".join(alternatives).encode())

    def replace(match: re.Match[bytes]) -> bytes:
        old = match.group().decode()
        if re.fullmatch(UUID_TEXT, old):
            return str(uuid.uuid5(NAMESPACE, f"{tag}/{old}")).encode()
        return f"{old}_{tag}".encode()

    return [pattern.sub(replace, body) for body in bodies]


def build_bursts(
    burst: int,
    rooms: int = ROOMS,
    *,
    key: str = KEY,
    secret: str = SECRET,
    ttl: int = 4 * 3600,
) -> list[list[tuple[str, bytes]]]:
    """Burst number ``burst``: for each of ``rooms`` rooms, its deliveries in order, each a
    ``(token, body)`` signed as a plugNmeet server signs it. No two bursts share an id."""
    bodies = end_of_session_bodies()
    signed = []
    for room in range(rooms):
        mine = room_bodies(bodies, f"b{burst}r{room:02d}")
        signed.append([(sign(body, key, secret, ttl=ttl), body) for body in mine])
    return signed


class Room(threading.Thread):
    """Send one room's deliveries in order over one connection; time each one."""

    def __init__(self, url: str, deliveries: list[tuple[str, bytes]], start: threading.Barrier):
        super().__init__(daemon=True)
        self.parts = urllib.parse.urlsplit(url)
        self.deliveries = deliveries
        self.start_together = start
        self.met: list[tuple[int | str, float]] = []  # (status or error, seconds) per delivery
        self.finished = 0.0

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.parts.hostname, self.parts.port, timeout=30)
        self.start_together.wait()
        try:
            for token, body in self.deliveries:
                headers = {
                    "Content-Type": "application/json",
                    "Authorization": token,
                    "Hash-Token": token,
                }
                started = time.perf_counter()
                try:
                    # The first delivery connects: its latency includes the connection.
                    connection.request("POST", self.parts.path, body, headers)
                    answer = connection.getresponse()
                    answer.read()
                    status: int | str = answer.status
                except OSError as exc:
                    status = type(exc).__name__
                    connection.close()
                self.met.append((status, time.perf_counter() - started))
        finally:
            connection.close()
            self.finished = time.perf_counter()


def send_burst(url: str, rooms: list[list[tuple[str, bytes]]]) -> dict:
    """Send every room's deliveries at once, one connection per room; what each met."""
    start = threading.Barrier(len(rooms) + 1)
    threads = [Room(url, deliveries, start) for deliveries in rooms]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return {
        "statuses": [status for t in threads for status, _ in t.met],
        "latencies_ms": [seconds * 1000 for t in threads for _, seconds in t.met],
        "burst_ms": (max(t.finished for t in threads) - began) * 1000,
    }


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, -(-len(ordered) * p // 100) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", metavar="URL", help="the servers, burst by burst")
    parser.add_argument("--bursts", type=int, default=20, help="bursts timed per server")
    parser.add_argument("--first", type=int, default=0, help="number of the first burst (ids)")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds between bursts")
    args = parser.parse_args()
    # Signed before anything is sent, so that signing is never timed; each server's own ids.
    per_server = args.bursts + 1
    bursts = {
        url: [build_bursts(args.first + n * per_server + b) for b in range(per_server)]
        for n, url in enumerate(args.urls)
    }
    met: dict[str, list[dict]] = {url: [] for url in args.urls}
    # The servers take turns, burst by burst, so the machine's noise falls on each alike; the
    # first burst each server gets is not timed (its answers count).
    for number in range(per_server):
        for url in args.urls:
            time.sleep(args.pause)
            met[url].append(send_burst(url, bursts[url][number]))
    rooms = bursts[args.urls[0]][0]
    json.dump(
        [
            {
                "url": url,
                "rooms": len(rooms),
                "per_room": len(rooms[0]),
                "statuses": [s for r in met[url] for s in r["statuses"]],
                "latencies_ms": [ms for r in met[url][1:] for ms in r["latencies_ms"]],
                "burst_ms": [r["burst_ms"] for r in met[url][1:]],
                "burst_p99_ms": [percentile(r["latencies_ms"], 99) for r in met[url][1:]],
            }
            for url in args.urls
        ],
        sys.stdout,
    )


if __name__ == "__main__":
    main()
