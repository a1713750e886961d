"""The outbox with 300,000 rows: what the dispatcher's idle poll costs, and one read of the
figures ``/metrics`` shows.

    .venv/bin/python -m bench.outbox_poll sqlite:////tmp/outbox.db

The database is made if needed and its outbox replaced: 300,000 sent messages and 20
waiting ones that are not due yet, so the poll finds nothing, as when idle.
"""

from __future__ import annotations

import resource
import sys
import time

from sqlalchemy import insert

from plugnmeet_webhooks.storage import outbox
from plugnmeet_webhooks.storage.engine import make_engine, write_transaction
from plugnmeet_webhooks.storage.migrate import prepare_schema

ROWS = 300_000
DESTINATIONS = ["d0", "d1", "d2"]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _row(i: int, now: float) -> dict:
    return {
        "message_id": f"m{i}", "tenant": "t", "rule": "r", "destination": DESTINATIONS[i % 3],
        "event_key": f"e{i}", "event": "participant_joined", "room_id": "room",
        "body": b'{"text":"x"}' * 20, "state": "sent" if i >= 20 else "pending",
        "next_attempt_at": now + 3600, "created_at": now - i, "sent_at": now,
    }  # fmt: skip


def _fill(engine) -> None:
    now = time.time()
    with write_transaction(engine) as conn:
        conn.execute(outbox.outbox.delete())
        for start in range(0, ROWS, 10_000):
            batch = [_row(i, now) for i in range(start, min(start + 10_000, ROWS))]
            conn.execute(insert(outbox.outbox), batch)


def main(url: str) -> None:
    engine = make_engine(url)
    prepare_schema(engine)
    _fill(engine)
    polls = 50
    cpu, wall = _cpu(), time.perf_counter()
    for _ in range(polls):
        outbox.due_destinations(engine, DESTINATIONS)
    poll_cpu, poll_wall = (_cpu() - cpu) / polls, (time.perf_counter() - wall) / polls
    reads = 10
    wall = time.perf_counter()
    for _ in range(reads):
        outbox.counts(engine)
        outbox.backlog(engine)
    read = (time.perf_counter() - wall) / reads
    print(
        f"{engine.dialect.name}: idle poll {poll_wall * 1000:.2f} ms ({poll_cpu * 1000:.2f} ms "
        f"of CPU: {poll_cpu * 100:.2f} % of a core at one poll a second); "
        f"one read of the outbox figures {read * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1])
