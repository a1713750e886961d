"""The metrics' own pieces: the outbox figures are read at most once in a few seconds."""

from __future__ import annotations

from plugnmeet_webhooks.metrics import CachedRead, OutboxFigures


def test_outbox_figures_are_read_once_in_five_seconds_however_often_scraped():
    reads = []
    now = [100.0]

    def read() -> OutboxFigures:
        reads.append(now[0])
        return OutboxFigures({"pending": len(reads)}, None, {})

    cached = CachedRead(read, seconds=5.0, clock=lambda: now[0])
    assert cached().by_state == {"pending": 1}
    now[0] += 4.9
    for _ in range(50):
        assert cached().by_state == {"pending": 1}
    now[0] += 0.1
    assert cached().by_state == {"pending": 2}
    assert reads == [100.0, 105.0]
