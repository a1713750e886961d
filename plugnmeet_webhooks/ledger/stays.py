"""Attendance as stays: from the joins and leaves the ledger keeps to who was there when.

The ledger stores each join and each leave of a participant sid as a mark (a set: a
redelivery adds nothing). Stays are worked out from that set when a report asks, so they
do not depend on the order the events came in:

- the marks of one participant sid, in time order, pair up: a join opens a stay unless one
  is open, and a leave closes the open stay (a leave with none open adds nothing); a join
  and a leave of the same second continue an open stay, or make an empty one;
- a stay still open at the end ends with its session, or stays open while the session is;
- every stay is clipped to its session's start and end; a leave stamped after the end
  still closes its stay, at the end;
- a person (an identity) with several sids at once, two devices say, is counted once for
  the time they cover together.

So a person's attendance in a session never exceeds the session's length.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import NamedTuple

JOIN, LEAVE = "join", "leave"
LEFT, SESSION_END = "participant_left", "session_end"

Pairs = Mapping[str, list[tuple[int, int | None]]]
"""A session's stays before clipping: for each participant sid, its (join, leave) times,
the leave None while the stay is open (see :func:`pair`)."""


class Stay(NamedTuple):
    """One stay of a participant sid in a session, clipped to the session.

    ``left_at`` is None while the stay and its session are both open; ``closed_by`` says
    which mark ended it: ``participant_left`` for a leave (even one after the session's end,
    which clips the stay to the end), ``session_end`` for a stay with no leave that its
    session's end closed, or None when open.
    """

    participant_sid: str
    identity: str
    joined_at: int
    left_at: int | None
    closed_by: str | None

    @property
    def seconds(self) -> int | None:
        """The length of the stay, or None while it is open."""
        return None if self.left_at is None else self.left_at - self.joined_at


def pair(marks: list[tuple[int, str]]) -> list[tuple[int, int | None]]:
    """Pair one sid's marks, (time, JOIN or LEAVE), into (join, leave) times; an unmatched
    join stays open."""
    stays: list[tuple[int, int | None]] = []
    opened: int | None = None
    passed_over: int | None = None  # the second of the last join made while present
    for at, kind in sorted(marks):  # at one second: the join, then the leave
        if kind == JOIN:
            if opened is None:
                opened = at
            else:
                passed_over = at
        elif opened is not None:
            stays.append((opened, at))
            # Left and joined again in the same second while present: the stay goes on.
            opened = at if passed_over == at else None
    if opened is not None:
        stays.append((opened, None))
    return stays


def _clipped(
    pairs: list[tuple[int, int | None]], start: int | None, end: int | None
) -> list[tuple[int, int | None, str | None]]:
    """One sid's stays as (joined, left, closed_by), clipped to the session; empty ones go."""
    stays: list[tuple[int, int | None, str | None]] = []
    for joined, left in pairs:
        closed_by: str | None = LEFT
        if left is None:
            left, closed_by = end, SESSION_END
        elif end is not None and left > end:
            left = end  # the leave still closed the stay: clipping moves it, not its cause
        if start is not None and joined < start:
            joined = start
        if end is not None and joined > end:
            joined = end  # so a session that ends before it starts keeps no stay at all
        if left is None:
            stays.append((joined, None, None))  # open, with its session
        elif left > joined:
            stays.append((joined, left, closed_by))
    return stays


def _each(
    pairs: Pairs, identity_of: Mapping[str, str], start: int | None, end: int | None
) -> Iterator[Stay]:
    for sid, own in pairs.items():
        identity = identity_of.get(sid, sid)
        for joined, left, closed_by in _clipped(own, start, end):
            yield Stay(sid, identity, joined, left, closed_by)


def stays_of(
    pairs: Pairs, identity_of: Mapping[str, str], start: int | None, end: int | None
) -> list[Stay]:
    """The stays of a session, in time order, clipped to its ``start`` and ``end``."""
    stays = _each(pairs, identity_of, start, end)
    return sorted(stays, key=lambda s: (s.joined_at, s.identity, s.participant_sid))


def seconds_by_person(
    pairs: Pairs, identity_of: Mapping[str, str], start: int | None, end: int | None
) -> dict[str, int | None]:
    """Each person's time in a session, from its pairs (see :func:`per_person`)."""
    return per_person(_each(pairs, identity_of, start, end))


def per_person(stays: Iterable[Stay]) -> dict[str, int | None]:
    """Each person's time in stays of one session: their stays together, overlaps once;
    None while one of their stays is still open."""
    spans: dict[str, list[tuple[int, int | None]]] = {}
    for stay in stays:
        spans.setdefault(stay.identity, []).append((stay.joined_at, stay.left_at))
    return {who: _covered(own) for who, own in spans.items()}


def _covered(spans: list[tuple[int, int | None]]) -> int | None:
    if len(spans) == 1:
        joined, left = spans[0]
        return None if left is None else left - joined
    total, reach = 0, None
    for joined, left in sorted(spans, key=lambda s: s[0]):
        if left is None:
            return None
        if reach is None or joined > reach:
            total, reach = total + left - joined, left
        elif left > reach:
            total, reach = total + left - reach, left
    return total


def attendee_minutes(seconds_by_person: Mapping[str, int | None]) -> int:
    """A session's attendee minutes: each person's time rounded up to whole minutes; an
    open attendance counts nothing yet."""
    return sum(math.ceil(s / 60) for s in seconds_by_person.values() if s is not None)


def names_of(people: Iterable[tuple[str, str | None, int | None]]) -> dict[str, str | None]:
    """A name for each identity, from its sids' (identity, name, name_at): the name given
    earliest (ties, and names of unknown time: the smaller text), whatever the order."""
    chosen: dict[str, tuple[bool, int, str] | None] = {}
    for identity, name, name_at in people:
        candidate = None if name is None else (name_at is None, name_at or 0, name)
        known = chosen.get(identity)
        if known is None or (candidate is not None and candidate < known):
            chosen[identity] = candidate
    return {identity: None if best is None else best[2] for identity, best in chosen.items()}
