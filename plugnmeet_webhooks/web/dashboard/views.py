"""The dashboard's pages: the overview, a room, the events, an event, the outbox; and,
from ``billing``, the Billing page."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import date, timedelta
from typing import Any, TypeVar

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy import Connection, Engine, func, select
from werkzeug.exceptions import HTTPException

from plugnmeet_webhooks.ledger import periods, reports
from plugnmeet_webhooks.ledger.tables import session_end_column, sessions
from plugnmeet_webhooks.ledger.writes import END_FROM_API
from plugnmeet_webhooks.normalize import NormalizationError, normalize
from plugnmeet_webhooks.runtime import current
from plugnmeet_webhooks.storage import outbox, passes
from plugnmeet_webhooks.storage.events import API, WEBHOOK, EventFilter, HandlerStatus, events
from plugnmeet_webhooks.storage.replay import replay_events
from plugnmeet_webhooks.web.dashboard.access import (
    add_routes,
    check_csrf,
    csrf_token,
    login_required,
)
from plugnmeet_webhooks.web.dashboard.billing import add_routes as add_billing_routes
from plugnmeet_webhooks.web.dashboard.charts import daily_charts, presence_chart
from plugnmeet_webhooks.web.dashboard.periods import PRESETS, read_period

log = logging.getLogger(__name__)

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)
add_routes(bp)
add_billing_routes(bp)

PAGE = 50
MAX_ID = 2**63 - 1  # a row id the databases can hold
HANDLER_STATES = tuple(status.value for status in HandlerStatus)
SOURCES = {WEBHOOK: "webhook", API: "plugNmeet API"}  # where an event came from, as shown
API_SESSIONS_SHOWN = 20  # the overview lists this many sessions whose end came from the API
NEWEST_DAYS = 30  # a page with nothing in its period offers this many days up to the newest


@bp.errorhandler(400)
@bp.errorhandler(401)
@bp.errorhandler(404)
@bp.errorhandler(503)
def _error(exc: HTTPException) -> tuple[str, int, dict[str, str]]:
    code = exc.code or 500
    titles = {400: "That did not work", 401: "Log in first", 404: "Not found", 503: "Try again"}
    page = render_template(
        "dashboard/error.html", code=code, title=titles.get(code, "Error"), message=exc.description
    )
    return page, code, {"Retry-After": "5"} if code == 503 else {}


@bp.app_template_filter("money")
def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.6f}"


@bp.app_template_filter("number")
def _number(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


@bp.app_template_filter("when")
def _when(value: float | str | None) -> str:
    if value is None:
        return "–"
    text = value if isinstance(value, str) else periods.iso(int(value))
    return str(text).replace("T", " ").removesuffix("Z")


@bp.app_template_global("csrf_token")
def _csrf() -> str:
    return csrf_token()


def _engine() -> Engine:
    return current().database()


def _tenants(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        # The sessions' primary key starts with the tenant: a scan of a small index.
        return sorted(conn.execute(select(sessions.c.tenant).distinct()).scalars())


Built = TypeVar("Built")


def _build(
    engine: Engine,
    builder: Callable[[Connection, periods.Filters], Built],
    filters: periods.Filters,
) -> Built:
    """One report (``reports.rooms_report`` and the like), typed; the period was checked."""
    with engine.connect() as conn:
        return builder(conn, filters)


@dataclass(frozen=True, slots=True)
class Newest:
    """The day of the newest data a page could show, and the period that ends with it."""

    since: date
    day: date  # the period's last day

    @property
    def days(self) -> int:
        return (self.day - self.since).days + 1


def _newest(engine: Engine, filters: periods.Filters, *, files_too: bool = False) -> Newest | None:
    """Where the newest data of the filters' room and tenant is, for a page whose period has
    none; None when nothing is recorded at all."""
    with engine.connect() as conn:
        day = reports.newest_day(conn, filters, files_too=files_too)
    if day is None:
        return None
    return Newest(since=max(day - timedelta(days=NEWEST_DAYS - 1), periods.FIRST_DAY), day=day)


@bp.get("")
@login_required
def overview() -> str:
    """Billable minutes and AI cost per day, the period's totals, the top rooms."""
    engine = _engine()
    filters, period = read_period()
    rooms = _build(engine, reports.rooms_report, filters)
    days = _build(engine, reports.days_report, filters)
    types, minutes_chart, cost_chart = daily_charts(days.rows)
    by_minutes = sorted(rooms.rows, key=lambda r: (-r.billable_minutes, r.room_id or ""))
    by_cost = sorted(
        (r for r in rooms.rows if r.ai_cost),
        key=lambda r: (-(r.ai_cost or 0), r.room_id or ""),
    )
    return render_template(
        "dashboard/overview.html",
        period=period,
        presets=PRESETS,
        tenants=_tenants(engine),
        totals=rooms.total,
        days_total=days.total,
        days=days.rows,
        types=types,
        minutes_chart=minutes_chart,
        cost_chart=cost_chart,
        top_minutes=by_minutes[:10],
        top_cost=by_cost[:10],
        empty=not rooms.rows,
        newest=None if rooms.rows else _newest(engine, filters),
        reconciliation=_reconciliation(engine, filters),
    )


def _reconciliation(engine: Engine, filters: periods.Filters) -> dict[str, Any] | None:
    """Each plugNmeet server's last passes, and the period's sessions whose end came from
    plugNmeet's API; None when reconciliation is off (no server to ask)."""
    servers = current().settings.plugnmeet_servers
    if not servers:
        return None
    tenants = sorted({server.tenant for server in servers})
    if filters.tenant in tenants:
        tenants = [filters.tenant]
    newest = passes.newest_by_outcome(engine, tenants)
    status = []
    for tenant in tenants:
        kept = newest.get(tenant, {})
        completed, failed = kept.get(passes.COMPLETED), kept.get(passes.FAILED)
        if failed is not None and completed is not None:
            failed = failed if failed.finished_at > completed.finished_at else None
        status.append({"tenant": tenant, "completed": completed, "failed": failed})
    start, end = filters.bounds()
    where = [sessions.c.end_source == END_FROM_API]  # by the session's start, as reports do
    if start is not None:
        where.append(sessions.c.started_at >= start)
    if end is not None:
        where.append(sessions.c.started_at < end)
    if filters.tenant:
        where.append(sessions.c.tenant == filters.tenant)
    query = (
        select(
            sessions.c.tenant,
            sessions.c.room_id,
            sessions.c.room_sid,
            sessions.c.started_at,
            session_end_column().label("ended_at"),
        )
        .where(*where)
        .order_by(sessions.c.started_at.desc(), sessions.c.tenant, sessions.c.room_sid)
        .limit(API_SESSIONS_SHOWN)
    )
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(sessions).where(*where)).scalar_one()
        ended = [dict(row._mapping) for row in conn.execute(query)]
    return {"servers": status, "count": int(count), "sessions": ended}


@dataclass(frozen=True, slots=True)
class Timeline:
    """A session on the room page: who was in it when, and its presence chart."""

    session: reports.SessionRow
    stays: list[reports.AttendanceRow]
    chart: str


@bp.get("/rooms/<path:room_id>")
@login_required
def room(room_id: str) -> str:
    """One room: its sessions, who was in each when, its AI usage, its files."""
    engine = _engine()
    filters, period = read_period()
    try:
        filters = replace(filters, room=periods.checked_name("room", room_id))
    except ValueError:
        abort(404)
    sessions = _build(engine, reports.sessions_report, filters)
    attendance = _build(engine, reports.attendance_report, filters)
    usage = _build(engine, reports.usage_report, filters)
    files = _build(engine, reports.files_report, filters)
    by_session: dict[tuple[str, str], list[reports.AttendanceRow]] = {}
    for stay in attendance.rows:
        by_session.setdefault((stay.tenant, stay.room_sid), []).append(stay)
    timelines = []
    for session in sessions.rows:
        stays = by_session.get((session.tenant, session.room_sid), [])
        timelines.append(Timeline(session, stays, presence_chart(session, stays)))
    empty = not (sessions.rows or usage.rows or files.rows)
    # One room id can be two tenants' rooms: then say whose each row is, and offer each.
    found: list[reports.SessionRow | reports.UsageRow | reports.FileRow] = [
        *sessions.rows,
        *usage.rows,
        *files.rows,
    ]
    room_tenants = sorted({row.tenant for row in found}) if not filters.tenant else []
    return render_template(
        "dashboard/room.html",
        room_id=room_id,
        room_tenants=room_tenants if len(room_tenants) > 1 else [],
        period=period,
        presets=PRESETS,
        tenants=_tenants(engine),
        sessions=sessions,
        timelines=timelines,
        usage=usage,
        files=files,
        empty=empty,
        newest=_newest(engine, filters, files_too=True) if empty else None,
    )


def row_id_arg(text: str | None, name: str) -> int | None:
    """Read a row id from a query string or form: a whole number the databases can hold."""
    if not text:
        return None
    if not text.isdigit() or not 0 <= int(text) <= MAX_ID:
        raise ValueError(f"{name} must be a whole number from 0 to {MAX_ID}")
    return int(text)


def _event_query(
    args: Any, after: int | None = None, before: int | None = None
) -> tuple[Any, dict[str, str]]:
    """The events a filter picks; and the filter as the page shows it.

    Newest first; but after ``after`` (the page's polling), oldest first, so that a burst
    larger than a page reaches the page in full over the next polls."""
    chosen = {
        name: (args.get(name) or "").strip()
        for name in ("event", "room", "handler", "source", "since", "until", "tenant")
    }
    names = {n: periods.checked_name(n, chosen[n]) for n in ("event", "room", "tenant")}
    if chosen["source"] not in SOURCES:
        chosen["source"] = ""  # an unknown source filters nothing, and is not passed on
    day = {n: periods.parse_day(n, chosen[n]) if chosen[n] else None for n in ("since", "until")}
    start, end = periods.Filters(since=day["since"], until=day["until"]).bounds()
    which = EventFilter(
        since=start,
        until=end,
        after_id=after,
        before_id=before,
        names=(names["event"],) if names["event"] else (),
        room_id=names["room"],
        tenant=names["tenant"],
        handler=HandlerStatus(chosen["handler"]) if chosen["handler"] in HANDLER_STATES else None,
        source=chosen["source"] or None,
        pruned=None,  # an event whose body retention removed is still listed
    )
    columns = [c for c in events.c if c.name != "body"]
    newest_first = after is None
    query = select(*columns).order_by(events.c.id.desc() if newest_first else events.c.id)
    return which.apply(query), chosen


def _event_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(events.c.event).distinct()).scalars())


@bp.get("/events")
@login_required
def events_page() -> str | tuple[str, int]:
    """The newest events, filtered; new ones appear without a reload."""
    engine = _engine()
    try:
        before = row_id_arg(request.args.get("before"), "before")
        query, chosen = _event_query(request.args, before=before)
    except ValueError as exc:
        flash(f"{exc}.", "error")
        before = None
        query, chosen = _event_query({})
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.limit(PAGE))]
    older = min(r["id"] for r in rows) if len(rows) == PAGE else None
    return render_template(
        "dashboard/events.html",
        rows=rows,
        chosen=chosen,
        names=_event_names(engine),
        states=HANDLER_STATES,
        sources=SOURCES,
        live=before is None,  # an older page stays as it is
        page=PAGE,
        newest=max((r["id"] for r in rows), default=0),
        older=older,
    )


@bp.get("/events/feed")
@login_required
def events_feed() -> Response | tuple[Response, int]:
    """The events newer than ``after`` (for the page's polling), as JSON."""
    try:
        after = row_id_arg(request.args.get("after"), "after") or 0
        query, _ = _event_query(request.args, after=after)
    except ValueError as exc:
        return jsonify(status="bad_request", error=f"{exc}."), 400
    with _engine().connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query.limit(PAGE))]
    return jsonify(
        rows=[
            {
                "id": r["id"],
                "received": _when(r["received_at"]),
                "tenant": r["tenant"],
                "event": r["event"],
                "room_id": r["room_id"],
                "event_id": r["event_id"] or r["dedupe_key"][:24],
                "handler_status": r["handler_status"],
                "source": r["source"],
                "source_label": SOURCES.get(r["source"], r["source"]),
                "url": url_for("dashboard.event", row_id=r["id"]),
            }
            for r in rows
        ]
    )


@bp.get("/events/<int:row_id>")
@login_required
def event(row_id: int) -> str:
    """One delivery: its normalised fields, its raw body, what its handler made of it."""
    if row_id > MAX_ID:
        abort(404)
    with _engine().connect() as conn:
        row = conn.execute(select(events).where(events.c.id == row_id)).first()
    if row is None:
        abort(404)
    body = bytes(row.body)
    pretty = normalised = None
    problem = api_path = None
    if row.pruned_at is None:
        try:
            payload = json.loads(body)
            shown = _without_urls(payload) if row.source == API else payload
            pretty = json.dumps(shown, indent=2, ensure_ascii=False)
            api_path = _api_path(payload) if row.source == API else None
            normalised = json.dumps(asdict(normalize(payload)), indent=2, ensure_ascii=False)
        except (ValueError, RecursionError, NormalizationError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
    return render_template(
        "dashboard/event.html",
        row=row._mapping,
        pretty=pretty,
        normalised=normalised,
        problem=problem,
        api_path=api_path,
        sources=SOURCES,
    )


HIDDEN_URL = "(a URL, not shown)"


def _without_urls(payload: Any) -> Any:
    """A fact from plugNmeet's API, with the URLs in plugNmeet's answer hidden: a room's
    ``webhook_url`` is its own app's address, which may carry a token."""
    if not isinstance(payload, dict) or not isinstance(payload.get("api"), dict):
        return payload

    def hide(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: hide(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [hide(v) for v in value]
        if isinstance(value, str) and value and (key.lower().endswith("url") or "://" in value):
            return HIDDEN_URL
        return value

    return {**payload, "api": {**payload["api"], "answer": hide(payload["api"].get("answer"))}}


def _api_path(payload: Any) -> str | None:
    """The API call whose answer a fact from plugNmeet's API holds (``api.path``), if any."""
    api = payload.get("api") if isinstance(payload, dict) else None
    path = api.get("path") if isinstance(api, dict) else None
    return path if isinstance(path, str) and path.startswith("/") else None


@bp.post("/events/<int:row_id>/replay")
@login_required
def replay(row_id: int) -> ResponseReturnValue:
    """Run the handlers again over one stored event (after a fix); its rules send nothing."""
    check_csrf()
    if row_id > MAX_ID:
        abort(404)
    rt = current()
    engine = _engine()
    with engine.connect() as conn:
        found = conn.execute(select(events.c.id).where(events.c.id == row_id)).scalar()
    if found is None:
        abort(404)
    result = replay_events(engine, rt.ingest.apply_stored, EventFilter(row_id=row_id))
    if result.events == 0:
        flash("This event's raw body was pruned: it cannot be replayed.", "error")
    elif result.failed:
        flash("Replayed: its handler still fails (see the error below).", "error")
    else:
        flash("Replayed: the handler ran and the ledger has it.", "ok")
    return redirect(url_for("dashboard.event", row_id=row_id), code=303)


@bp.get("/outbox")
@login_required
def outbox_page() -> str:
    """The outbox's messages, by state, with retry."""
    engine = _engine()
    state_text = request.args.get("state", "")
    state = outbox.State(state_text) if state_text in {s.value for s in outbox.State} else None
    counts, oldest = outbox.counts(engine)
    messages = outbox.list_messages(engine, state, limit=200)
    return render_template(
        "dashboard/outbox.html",
        messages=messages,
        counts=counts,
        oldest=oldest,
        state=state.value if state else "",
        states=[s.value for s in outbox.State],
        destinations=sorted(current().rules.destinations),
    )


@bp.post("/outbox/retry")
@login_required
def outbox_retry() -> ResponseReturnValue:
    """Send a dead message again, or every dead one."""
    check_csrf()
    engine = _engine()
    if request.form.get("all_dead"):
        count = outbox.retry(engine, dead=True)
    else:
        try:
            message_id = row_id_arg(request.form.get("id"), "id")
        except ValueError:
            abort(400)
        if message_id is None:
            abort(400)
        # Only a dead message: a stale page must not send a delivered message again.
        count = outbox.retry(engine, [message_id], only_dead=True)
    flash(f"{count} messages are pending again.", "ok")
    rt = current()
    if rt.settings.dispatcher and rt.rules.destinations:
        rt.dispatcher().wake()
    return redirect(
        url_for("dashboard.outbox_page", state=request.form.get("state") or None), code=303
    )
