"""A reconciliation pass: ask plugNmeet what happened, repair the ledger, and say so.

plugNmeet tries a delivery three times in about three seconds and keeps nothing, so a
receiver that is down, restarting or slow for longer loses ``session_ended`` (the session
stays open: no minutes), ``room_finished`` or the AI usage artifacts. A pass, for each
plugNmeet server:

1. asks everything first: the rooms running now, the ended sessions (newest first, back to
   the window's start), and each window session's artifacts and recordings; if any call
   fails, nothing of that server is changed;
2. closes each session open here that plugNmeet has ended (and not running again) more than
   the grace period ago, with the API's end (``end_source`` ``api``);
3. adds the sessions never seen at all, with their start and end;
4. adds the artifacts and recordings the ledger lacks, keyed as deliveries key them;
5. stores each of these as a fact, like a delivery (:mod:`plugnmeet_webhooks.reconcile.facts`),
   applied by the same handlers in the same batches; then keeps the pass and, when it
   repaired something, raises a ``reconciled`` event for the rules.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, select
from sqlalchemy.exc import SQLAlchemyError

from config import PlugNmeetServer
from plugnmeet_webhooks.ingest import Ingest
from plugnmeet_webhooks.ledger.tables import files, sessions, usage
from plugnmeet_webhooks.normalize import Event
from plugnmeet_webhooks.reconcile import facts
from plugnmeet_webhooks.reconcile.api import ApiError, PastRoom, PlugNmeetApi
from plugnmeet_webhooks.storage import passes
from plugnmeet_webhooks.storage.batch import Delivery, Outcome, store_batch
from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.errors import describe, is_transient
from plugnmeet_webhooks.storage.events import API, HandlerStatus, Receipt, StoredEvent, events
from plugnmeet_webhooks.text import plain
from plugnmeet_webhooks.workflows.context import RECONCILED, Reconciled

log = logging.getLogger(__name__)

DAY = 86400
DEFAULT_WINDOW = 7 * DAY  # the first pass looks this far back
OVERLAP = 900.0  # later passes look back this far before the last one started, and more
LATE_FILES = DAY  # once an hour, a pass asks again for the files of the sessions of a day
LATE_EVERY = 3600
LONGEST_SESSION = DAY  # a session created this long before the window cannot end in it
CLOCKS_AGREE = 900  # plugNmeet's `created` and the webhooks' creation_time, at most apart
FUTURE_SLACK = 300  # an end later than now by more than this is no end yet
APPLY_BATCH = 200  # facts stored per transaction (a short hold of SQLite's write lock)
_IN_CHUNK = 500  # values per IN (...) list

CLOSED, DISCOVERED, ARTIFACT, RECORDING = "closed", "discovered", "artifact", "recording"
REPAIR_KINDS = (CLOSED, DISCOVERED, ARTIFACT, RECORDING)


@dataclass(frozen=True, slots=True)
class Repair:
    """One thing a pass changed (or, in a dry run, would change)."""

    kind: str  # closed | discovered | artifact | recording
    tenant: str
    room_id: str | None
    room_sid: str
    detail: str = ""  # the end, the artifact's type, the recording's id


@dataclass(frozen=True, slots=True)
class Unresolved:
    """A session or fact a pass could not settle, and why."""

    tenant: str
    room_id: str | None
    room_sid: str
    reason: str


@dataclass
class TenantPass:
    """One pass over one tenant's plugNmeet server."""

    tenant: str
    since: float
    started_at: float
    repairs: list[Repair] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    live: int = 0  # sessions open here that plugNmeet has running: left open
    error: str | None = None
    endpoint: str | None = None  # the call that failed, when one did

    def count(self, kind: str) -> int:
        """How many repairs of one kind."""
        return sum(1 for r in self.repairs if r.kind == kind)

    def summary(self) -> Reconciled:
        """What rules can read of this pass (the ``reconciled`` event)."""
        rooms = sorted({r.room_id or r.room_sid for r in self.repairs})
        return Reconciled(
            sessions_closed=self.count(CLOSED),
            sessions_discovered=self.count(DISCOVERED),
            artifacts_added=self.count(ARTIFACT),
            recordings_added=self.count(RECORDING),
            unresolved=len(self.unresolved),
            rooms=", ".join(rooms),
            since=_iso(self.since),
        )


@dataclass
class Report:
    """What a pass over every server did."""

    passes: list[TenantPass]
    dry_run: bool = False

    @property
    def failed(self) -> list[TenantPass]:
        """The servers the pass could not finish (nothing of theirs was changed)."""
        return [p for p in self.passes if p.error is not None]

    def totals(self) -> dict[str, int]:
        """The counts over every server."""
        return {
            "sessions_closed": sum(p.count(CLOSED) for p in self.passes),
            "sessions_discovered": sum(p.count(DISCOVERED) for p in self.passes),
            "artifacts_added": sum(p.count(ARTIFACT) for p in self.passes),
            "recordings_added": sum(p.count(RECORDING) for p in self.passes),
            "unresolved": sum(len(p.unresolved) for p in self.passes),
        }

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "dry_run": self.dry_run,
            "completed": not self.failed,
            **self.totals(),
            "servers": [
                {
                    "tenant": p.tenant,
                    "since": _iso(p.since),
                    "completed": p.error is None,
                    "error": p.error,
                    "live_sessions": p.live,
                    "repairs": [
                        {
                            "kind": r.kind,
                            "room_id": r.room_id,
                            "room_sid": r.room_sid,
                            "detail": r.detail,
                        }
                        for r in p.repairs
                    ],
                    "unresolved": [
                        {"room_id": u.room_id, "room_sid": u.room_sid, "reason": u.reason}
                        for u in p.unresolved
                    ],
                }
                for p in self.passes
            ],
        }


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class _Window:
    since: float  # sessions that ended from here on are closed, discovered and backfilled
    files_since: float  # and from here on, backfilled (at most as far back as ``since``)


class LeaseLost(RuntimeError):
    """Another process took the pass's lease: this pass stops, unwritten."""


@dataclass(frozen=True, slots=True)
class _Open:
    room_sid: str
    room_id: str | None
    started_at: int | None


@dataclass
class _Plan:
    """What one server's answers mean for the ledger: the facts to store, and why."""

    tenant: str
    found: list[tuple[facts.Fact, Repair]] = field(default_factory=list)
    unresolved: list[Unresolved] = field(default_factory=list)
    live: int = 0

    def add(self, kind: str, fact: facts.Fact, detail: str) -> None:
        """Plan to store a fact, a repair of this kind."""
        self.found.append((fact, Repair(kind, self.tenant, fact.room_id, fact.room_sid, detail)))

    def unsettled(self, session: _Open, reason: str) -> None:
        """Note a session the pass cannot settle."""
        self.unresolved.append(Unresolved(self.tenant, session.room_id, session.room_sid, reason))


class Reconciler:
    """Runs passes over the configured plugNmeet servers."""

    def __init__(
        self,
        engine: Engine,
        ingest: Ingest,
        servers: Iterable[PlugNmeetServer],
        *,
        grace: float,
        ca: str | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_api_error: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.ingest = ingest
        self.servers = tuple(servers)
        self.grace = grace
        self.ca = ca
        self.timeout = timeout
        self.clock = clock
        self.on_api_error = on_api_error
        self.heartbeat_every = 60.0  # seconds between renewals of the lease during a pass

    def run(
        self,
        *,
        since: float | None = None,
        dry_run: bool = False,
        keep: Callable[[], bool] | None = None,
    ) -> Report:
        """Run one pass over every server; ``since`` (unix seconds) overrides the window.

        ``keep`` renews the pass's lease: it is asked each minute while the API is asked,
        and before anything is written; when it says no (another process has the lease),
        the server's pass stops unwritten.
        """
        report = Report([], dry_run=dry_run)
        for server in self.servers:
            report.passes.append(self._server(server, since, dry_run, keep))
        return report

    def _window(self, tenant: str, started: float, since: float | None) -> _Window:
        """The sessions a pass looks at: those that ended since the last completed pass (a
        little before, and before the grace period), or ``since``; and once an hour, for
        their late artifacts and recordings, those that ended in the last day."""
        last = passes.last_completed(self.engine, tenant)
        if since is None:
            back = max(OVERLAP, self.grace + OVERLAP)
            since = started - DEFAULT_WINDOW if last is None else last - back
        hourly = last is None or int(started // LATE_EVERY) != int(last // LATE_EVERY)
        files_since = min(since, started - LATE_FILES) if hourly else since
        return _Window(since, files_since)

    def _server(
        self,
        server: PlugNmeetServer,
        since: float | None,
        dry_run: bool,
        keep: Callable[[], bool] | None,
    ) -> TenantPass:
        started = self.clock()
        window = self._window(server.tenant, started, since)
        done = TenantPass(server.tenant, window.since, started)
        try:
            self._run_one(server, window, done, dry_run, keep)
        except LeaseLost:
            done.error = "the pass lost its lease to another process; it stopped unwritten"
        except SQLAlchemyError as exc:
            if is_transient(exc):
                raise  # the database is out: nothing can be kept; the next pass resumes
            log.exception("reconciliation of %r: the database refused a write", server.tenant)
            done.error = f"the database refused a write ({describe(exc)})"
        except Exception as exc:  # a bug must not leave the pass unrecorded (and retried hot)
            log.exception("reconciliation of %r failed", server.tenant)
            done.error = f"the pass failed unexpectedly ({type(exc).__name__}); see the log"
        if done.error is not None and not dry_run:
            self._record(done, passes.FAILED)
        return done

    def _run_one(
        self,
        server: PlugNmeetServer,
        window: _Window,
        done: TenantPass,
        dry_run: bool,
        keep: Callable[[], bool] | None,
    ) -> None:
        beat = _heartbeat(keep, self.heartbeat_every)
        api = PlugNmeetApi(server, ca=self.ca, timeout=self.timeout, before_call=beat)
        try:
            plan = self._plan(api, server.tenant, window, done.started_at)
        except ApiError as exc:
            done.error, done.endpoint = str(exc), exc.endpoint
            if self.on_api_error is not None:
                self.on_api_error(exc.endpoint)
            return
        finally:
            api.close()
        self._drop_stored(plan)
        done.live, done.unresolved = plan.live, list(plan.unresolved)
        if dry_run:
            done.repairs = [repair for _, repair in plan.found]
            return
        if keep is not None and not keep():
            raise LeaseLost
        self._store(server, plan, done)
        self._record(done, passes.COMPLETED)

    # --- asking -------------------------------------------------------------------------

    def _plan(self, api: PlugNmeetApi, tenant: str, window: _Window, now: float) -> _Plan:
        plan = _Plan(tenant)
        still_open = self._open_sessions(tenant)
        running = {room.sid for room in api.active_rooms()}
        past = self._walk(api, window.files_since)
        waiting = [s for s in still_open if s.room_sid not in running]
        plan.live = len(still_open) - len(waiting)
        past |= self._look_up(api, [s for s in waiting if s.room_sid not in past])
        ended = {}  # the sessions whose artifacts and recordings are asked for
        for session in waiting:
            found = past.get(session.room_sid)
            if found is None:
                if session.started_at is None or now - session.started_at >= self.grace:
                    plan.unsettled(
                        session, "open here, not running, and not among plugNmeet's past sessions"
                    )
            elif (
                found.ended is not None
                and found.ended <= now + FUTURE_SLACK
                and (now - found.ended < self.grace)
            ):
                continue  # its session_ended may still come
            elif self._end(plan, CLOSED, found, session.started_at, now):
                ended[found.room_sid] = found
        settled = {
            p.room_sid: p
            for p in past.values()
            if p.ended is not None and p.ended >= window.files_since and now - p.ended >= self.grace
        }
        in_window = [p for p in settled.values() if (p.ended or 0) >= window.since]
        known = self._known_sessions(tenant, [p.room_sid for p in in_window])
        for found in in_window:
            if found.room_sid not in known and not self._end(plan, DISCOVERED, found, None, now):
                settled.pop(found.room_sid)
        self._backfill(api, ended | settled, plan)
        return plan

    @staticmethod
    def _end(plan: _Plan, kind: str, found: PastRoom, started_at: int | None, now: float) -> bool:
        """Plan the end plugNmeet gives a session (closed or discovered); or, when it cannot
        be taken, say why. Tell whether it was planned."""
        problem = _end_problem(found, started_at, now)
        if problem is None:
            try:
                fact = facts.session_ended(found, with_start=started_at is None)
            except facts.Unusable as exc:
                problem = str(exc)
        if problem is not None:
            plan.unresolved.append(Unresolved(plan.tenant, found.room_id, found.room_sid, problem))
            return False
        plan.add(kind, fact, _iso(found.ended or 0))
        return True

    def _walk(self, api: PlugNmeetApi, since: float) -> dict[str, PastRoom]:
        """The ended sessions from the newest back to those created well before ``since``."""
        found: dict[str, PastRoom] = {}
        oldest = since - LONGEST_SESSION
        for room in api.past_rooms():
            if room.created is not None and room.created < oldest:
                break
            found[room.room_sid] = room
        return found

    def _look_up(self, api: PlugNmeetApi, sought: list[_Open]) -> dict[str, PastRoom]:
        """Find open sessions older than the window among their rooms' past sessions."""
        found: dict[str, PastRoom] = {}
        by_room: dict[str, dict[str, _Open]] = {}
        for session in sought:
            if session.room_id:
                by_room.setdefault(session.room_id, {})[session.room_sid] = session
        for room_id, wanted in sorted(by_room.items()):
            earliest = min((s.started_at or 0) for s in wanted.values()) - LONGEST_SESSION
            for room in api.past_rooms((room_id,)):
                if room.room_sid in wanted:
                    found[room.room_sid] = room
                    if len(found.keys() & wanted.keys()) == len(wanted):
                        break
                if room.created is not None and room.created < earliest:
                    break
        return found

    def _backfill(self, api: PlugNmeetApi, ended: dict[str, PastRoom], plan: _Plan) -> None:
        """Add the artifacts and recordings of the ended sessions that the ledger lacks."""
        sids = sorted(ended)
        have = self._known_files(plan.tenant, sids)
        for sid in sids:
            for item in api.artifacts(sid):
                if item.get("artifact_id") in have:
                    continue
                try:
                    fact = facts.artifact_created(sid, item)
                except facts.Unusable as exc:
                    plan.unresolved.append(Unresolved(plan.tenant, None, sid, str(exc)))
                    continue
                plan.add(ARTIFACT, fact, plain(str(item.get("type") or ""), 60))
            for item in api.recordings(sid):
                if f"recording:{item.get('record_id')}" in have:
                    continue
                try:
                    fact = facts.recording_proceeded(item)
                except facts.Unusable:
                    continue  # a recording not ready: the next pass asks again
                plan.add(RECORDING, fact, plain(str(item["record_id"]), 60))

    # --- reading the ledger ------------------------------------------------------------------

    def _open_sessions(self, tenant: str) -> list[_Open]:
        query = select(sessions.c.room_sid, sessions.c.room_id, sessions.c.started_at).where(
            sessions.c.tenant == tenant,
            sessions.c.ended_at.is_(None),
            sessions.c.finished_at.is_(None),
        )
        with self.engine.connect() as conn:
            return [_Open(*row) for row in conn.execute(query.order_by(sessions.c.room_sid))]

    def _chunks(self, values: list[str]) -> Iterable[list[str]]:
        for start in range(0, len(values), _IN_CHUNK):
            yield values[start : start + _IN_CHUNK]

    def _known_sessions(self, tenant: str, sids: list[str]) -> set[str]:
        known: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in self._chunks(sids):
                query = select(sessions.c.room_sid).where(
                    sessions.c.tenant == tenant, sessions.c.room_sid.in_(chunk)
                )
                known.update(conn.execute(query).scalars())
        return known

    def _known_files(self, tenant: str, sids: list[str]) -> set[str]:
        """The artifact ids and file keys the ledger has for these sessions."""
        known: set[str] = set()
        with self.engine.connect() as conn:
            for chunk in self._chunks(sids):
                for column, sid in (
                    (usage.c.artifact_id, usage.c.room_sid),
                    (files.c.file_key, files.c.room_sid),
                ):
                    table = column.table
                    query = select(column).where(and_(table.c.tenant == tenant, sid.in_(chunk)))
                    known.update(conn.execute(query).scalars())
        return known

    # --- writing --------------------------------------------------------------------------

    def _stored(self, tenant: str, keys: list[str]) -> dict[str, tuple[str, str | None]]:
        """The facts already stored under these keys: their handler status and error."""
        found: dict[str, tuple[str, str | None]] = {}
        with self.engine.connect() as conn:
            for chunk in self._chunks(keys):
                query = select(
                    events.c.dedupe_key, events.c.handler_status, events.c.handler_error
                ).where(events.c.tenant == tenant, events.c.dedupe_key.in_(chunk))
                found |= {row[0]: (row[1], row[2]) for row in conn.execute(query)}
        return found

    def _drop_stored(self, plan: _Plan) -> None:
        """Leave out the facts stored by an earlier pass; one that could not be applied
        stays unresolved, with the reason, on every pass."""
        stored = self._stored(plan.tenant, [fact.dedupe_key for fact, _ in plan.found])
        kept = []
        for fact, repair in plan.found:
            status, error = stored.get(fact.dedupe_key, (None, None))
            if status is None:
                kept.append((fact, repair))
            elif status != HandlerStatus.OK:
                plan.unresolved.append(_unusable(plan.tenant, fact, error))
        plan.found = kept

    def _store(self, server: PlugNmeetServer, plan: _Plan, done: TenantPass) -> None:
        """Store the facts like deliveries, a batch a transaction, and apply them."""
        received = self.clock()
        for start in range(0, len(plan.found), APPLY_BATCH):
            batch = plan.found[start : start + APPLY_BATCH]
            deliveries = [as_delivery(server, fact, received) for fact, _ in batch]
            results = store_batch(self.engine, deliveries, self.ingest.apply_delivery)
            failed = []
            for (fact, repair), result in zip(batch, results, strict=True):
                if isinstance(result, SQLAlchemyError) and is_transient(result):
                    raise result  # the database is out: the pass stops, the next one resumes
                if result is Outcome.ACCEPTED:
                    done.repairs.append(repair)
                elif isinstance(result, BaseException):
                    done.unresolved.append(_unusable(server.tenant, fact, describe(result)))
                elif result is Outcome.HANDLER_FAILED:
                    failed.append(fact)
            if failed:
                stored = self._stored(server.tenant, [f.dedupe_key for f in failed])
                done.unresolved += [
                    _unusable(server.tenant, f, stored.get(f.dedupe_key, ("", None))[1])
                    for f in failed
                ]

    def _record(self, done: TenantPass, outcome: str) -> None:
        """Keep the pass; when it repaired something, queue what the rules make of it."""
        summary = done.summary()
        kept = passes.PassRecord(
            tenant=done.tenant,
            started_at=done.started_at,
            finished_at=self.clock(),
            since=done.since,
            outcome=outcome,
            closed=summary.sessions_closed,
            discovered=summary.sessions_discovered,
            artifacts=summary.artifacts_added,
            recordings=summary.recordings_added,
            unresolved=summary.unresolved,
            error=done.error,
        )
        with write_transaction(self.engine) as conn:
            passes.record(conn, kept)
            if done.repairs:  # what is still unresolved is told once something is repaired
                workflows = self.ingest.workflows
                event = Event(
                    event=RECONCILED,
                    id=f"reconcile:{done.started_at:.6f}",
                    created_at=int(done.started_at),
                )
                receipt = Receipt(event.id, done.started_at, done.tenant)
                self.ingest.queued += workflows.enqueue(conn, event, receipt, reconciled=summary)


def _end_problem(found: PastRoom, started_at: int | None, now: float) -> str | None:
    """Why plugNmeet's end of a session cannot be taken, or None when it can."""
    if found.ended is None:
        return "plugNmeet has no end time for it (it did not end cleanly)"
    if found.ended > now + FUTURE_SLACK:
        return "plugNmeet's end time for it is in the future: check the server's clock"
    start = started_at if started_at is not None else found.created
    if start is not None and found.ended < start:
        return "plugNmeet's end time for it is before its start: check the server's time zone"
    if started_at is not None and found.created is not None:
        apart = abs(found.created - started_at)
        if apart > CLOCKS_AGREE:
            return (
                f"plugNmeet's start time for it is {apart} s from the webhooks': check the "
                "server's time zone"
            )
    return None


def _unusable(tenant: str, fact: facts.Fact, error: str | None) -> Unresolved:
    why = plain(error or "", 200) or "it could not be stored"
    return Unresolved(
        tenant,
        fact.room_id,
        fact.room_sid,
        f"plugNmeet's answer for {plain(fact.dedupe_key, 80)} cannot be used: {why}",
    )


def _heartbeat(keep: Callable[[], bool] | None, every: float) -> Callable[[], None]:
    """Before each API call: renew the pass's lease at most every ``every`` seconds; stop
    the pass (:class:`LeaseLost`) when another process has it."""
    last = time.monotonic()

    def beat() -> None:
        nonlocal last
        if keep is not None and time.monotonic() - last >= every:
            if not keep():
                raise LeaseLost
            last = time.monotonic()

    return beat


def as_delivery(server: PlugNmeetServer, fact: facts.Fact, received: float) -> Delivery:
    """A fact on its way to storage, as a delivery from ``server``'s tenant would be."""
    stored = StoredEvent(
        dedupe_key=fact.dedupe_key,
        event_id=fact.dedupe_key,
        event=fact.event,
        room_id=fact.room_id,
        room_sid=fact.room_sid,
        created_at=fact.created_at,
        received_at=received,
        api_key=server.api_key,
        remote_addr=None,
        body_sha256=fact.sha256,
        body=fact.body,
        tenant=server.tenant,
        source=API,
    )
    return Delivery(stored, fact.payload)


def describe_failure(done: TenantPass) -> str:
    """One sentence on a server's pass that could not finish."""
    return f"reconciliation of {done.tenant!r} did not finish: {done.error}"
