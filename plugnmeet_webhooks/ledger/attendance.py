"""Who was in each session, and when: the stays of each session of a period, from the
ledger's join and leave marks (see :mod:`plugnmeet_webhooks.ledger.stays` for the rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, and_, select

from plugnmeet_webhooks.ledger import stays
from plugnmeet_webhooks.ledger.periods import Filters, within
from plugnmeet_webhooks.ledger.tables import attendance, participants, session_end_column, sessions
from plugnmeet_webhooks.storage.sql import fetch_all


@dataclass
class SessionAttendance:
    """One session's stays before clipping, and who each participant sid is."""

    tenant: str
    room_id: str | None
    room_sid: str
    start: int | None
    end: int | None
    pairs: dict[str, list[tuple[int, int | None]]]  # participant sid: its (join, leave)s
    people: dict[str, tuple[str, str | None, int | None]]  # sid: (identity, name, name_at)

    @property
    def identities(self) -> dict[str, str]:
        """Each participant sid's identity."""
        return {sid: person[0] for sid, person in self.people.items()}

    def stays(self) -> list[stays.Stay]:
        """The session's stays, clipped to it, in time order."""
        return stays.stays_of(self.pairs, self.identities, self.start, self.end)

    def names(self) -> dict[str, str | None]:
        """A name for each person."""
        return stays.names_of(self.people.values())

    def seconds_by_person(self) -> dict[str, int | None]:
        """Each person's time in the session (their stays together, overlaps once)."""
        return stays.seconds_by_person(self.pairs, self.identities, self.start, self.end)


def attendance_by_session(conn: Connection, filters: Filters) -> list[SessionAttendance]:
    """The attendance of each session that started in the period, from its join and leave
    marks (see :mod:`plugnmeet_webhooks.ledger.stays` for the rules)."""
    a, p, s = attendance.c, participants.c, sessions.c

    def in_period(table: Any, *columns: Any) -> Any:
        query = select(*columns)
        if filters == Filters():  # every session: no need to look each one up
            return query
        same = and_(table.c.tenant == s.tenant, table.c.room_sid == s.room_sid)
        query = query.select_from(table.join(sessions, same))
        return within(query, s.started_at, s.room_id, filters)

    held = select(s.tenant, s.room_sid, s.room_id, s.started_at, session_end_column())
    found: dict[tuple[str, str], SessionAttendance] = {}
    for tenant, room_sid, room_id, start, end in fetch_all(
        conn, within(held, s.started_at, s.room_id, filters)
    ):
        found[tenant, room_sid] = SessionAttendance(
            tenant, room_id, room_sid, start, end, pairs={}, people={}
        )
    who = in_period(
        participants, p.tenant, p.room_sid, p.participant_sid, p.identity, p.name, p.name_at
    )
    for (tenant, room_sid), rows in groupby(fetch_all(conn, who), _session_key):
        session = found.get((tenant, room_sid))
        if session is not None:
            session.people.update((row[2], row[3:]) for row in rows)
    # In key order, so that each sid's marks come together (and in time order).
    marks = in_period(attendance, a.tenant, a.room_sid, a.participant_sid, a.at, a.kind)
    marks = marks.order_by(a.tenant, a.room_sid, a.participant_sid, a.at, a.kind)
    for (tenant, room_sid, sid), rows in groupby(fetch_all(conn, marks), _sid_key):
        session = found.get((tenant, room_sid))
        if session is not None:
            session.pairs[sid] = stays.pair([(at, kind) for _, _, _, at, kind in rows])
    return [found[key] for key in sorted(found) if found[key].pairs]


_session_key = itemgetter(0, 1)
_sid_key = itemgetter(0, 1, 2)
