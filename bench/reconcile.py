"""Reconciliation in ``make bench``: a local plugNmeet API holding a realistic state, and a
pass over 10,000 past sessions whose deliveries were all lost.

The API (``tests/support/plugnmeet_api.py``) runs in a subprocess of its own, pinned to the
load core, so that its answers never take CPU from the receiver it answers. Two states:

- ``busy``: the state a receiver under load reconciles against. A few hundred sessions
  ended over the last three hours, each with three artifacts (a meeting summary and two
  usage records), one in four with a recording; two rooms running; the benchmark's own 500
  sessions (``RM_bench…``), ended an hour before the run, as their deliveries say; and, while
  the run lasts, one more session ending every few seconds whose deliveries were lost, so
  that every pass writes as well as reads.
- ``history``: N sessions ended over 20 days (same artifacts and recordings), for a pass
  that finds all of them missing.

``python -m bench.reconcile api ...`` is that subprocess: it prints one JSON line (its URL
and what it holds), then answers ``calls`` on stdin with the calls it took, by path, until
stdin closes. ``python -m bench.reconcile profile`` profiles a pass over the history
in-process with pyinstrument.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from plugnmeet_webhooks.ledger.tables import files, sessions, usage
from plugnmeet_webhooks.storage.engine import make_engine
from plugnmeet_webhooks.storage.events import events
from plugnmeet_webhooks.storage.migrate import prepare_schema

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
DAY = 86400
GRACE = 120  # PNM_RECONCILE_GRACE's default: a session ended more recently is left alone
ARTIFACTS = ("artifact_meeting_summary", "artifact_meeting_summary_usage",
             "artifact_speech_transcription_usage")  # fmt: skip
RECORDING_EVERY = 4  # one session in four has a recording
BENCH_ROOMS = 500  # the rooms of bench/run.py's deliveries


# --- the state the API holds ------------------------------------------------------------------


def _artifact_kinds() -> list[tuple[str, dict[str, Any]]]:
    kinds = []
    for name in ARTIFACTS:
        artifact = json.loads((ROOT / "samples" / f"{name}.json").read_bytes())["room_artifact"]
        kinds.append((artifact["type"], artifact["metadata"]))
    return kinds


def add_session(api: Any, n: int, created: int, ended: int, kinds: list) -> None:
    """Session n of room ``bench-room-<n % 97>``: its artifacts, and a recording for one in 4."""
    room_id, sid = f"bench-room-{n % 97:03d}", f"RM_past{n:07d}"
    api.add_past_room(room_id, sid, title=f"Meeting {n}", created=created, ended=ended,
                      joined_participants=2 + n % 9)  # fmt: skip
    for k, (kind, metadata) in enumerate(kinds):
        artifact_id = str(uuid.UUID(int=(n << 8) + k + (5 << 100)))
        api.add_artifact(sid, room_id, artifact_id, kind, ended + 30 + 20 * k, metadata)
    if n % RECORDING_EVERY == 0:
        api.add_recording(sid, room_id, f"REC_past{n:07d}", file_path=f"node_01/{sid}/rec.mp4",
                          file_size=50 + n % 400, creation_time=ended + 15,
                          room_creation_time=created)  # fmt: skip


def busy_state(api: Any, now: int, sessions_count: int, bench_ended: int) -> int:
    """Fill ``api`` with the ``busy`` state; return the number the next session takes."""
    kinds = _artifact_kinds()
    rows: list[tuple[int, Any]] = []
    last_end = now - GRACE - 60
    for n in range(sessions_count):
        ended = last_end - n * (3 * 3600) // sessions_count
        created = ended - 60 * (20 + n * 7 % 60)
        rows.append((created, lambda n=n, c=created, e=ended: add_session(api, n, c, e, kinds)))
    for room in range(BENCH_ROOMS):  # as bench/run.py's deliveries name them
        created = bench_ended - 2700

        def bench_session(room: int = room, created: int = created) -> None:
            api.add_past_room(f"room-{room:05d}", f"RM_bench{room:06d}", title="Sample meeting",
                              created=created, ended=bench_ended)  # fmt: skip

        rows.append((created, bench_session))
    for _created, add in sorted(rows, key=lambda row: row[0]):  # plugNmeet's rows: by creation
        add()
    api.add_active_room("standup-live", "RM_live00001", title="Stand-up",
                        creation_time=now - 900, participants=4)  # fmt: skip
    api.add_active_room("townhall-live", "RM_live00002", title="Town hall",
                        creation_time=now - 2400, participants=12)  # fmt: skip
    return sessions_count


def history_state(api: Any, count: int, first_day: int) -> None:
    """``count`` sessions created over the 20 days from ``first_day`` 01:00 UTC, all ended."""
    kinds = _artifact_kinds()
    step = 20 * DAY // count
    for n in range(count):
        created = first_day + 3600 + n * step
        add_session(api, n, created, created + 60 * (20 + n * 7 % 60), kinds)


def serve(args: argparse.Namespace) -> None:
    """The API subprocess: fill the state, print what it holds, answer ``calls`` on stdin."""
    from tests.support.plugnmeet_api import PlugNmeetApi

    api = PlugNmeetApi(api_key=args.key, secret=args.secret)
    now = int(time.time())
    if args.state == "busy":
        next_n = busy_state(api, now, args.sessions, args.bench_ended)
    else:
        history_state(api, args.sessions, args.first_day)
    api.start()
    stopping = threading.Event()
    ended_since = [0]

    def end_sessions() -> None:  # sessions whose deliveries were all lost, one every so often
        kinds = _artifact_kinds()
        n = next_n
        while not stopping.wait(args.end_every):
            ended = int(time.time()) - GRACE - 30  # past the grace: the next pass takes it
            add_session(api, n, ended - 1800, ended, kinds)
            n += 1
            ended_since[0] += 1

    if args.state == "busy" and args.end_every > 0:
        threading.Thread(target=end_sessions, daemon=True).start()
    held = {"url": api.url, "past_sessions": len(api._past.ordered),
            "artifacts": len(api._artifacts.ordered), "recordings": len(api._recordings.ordered),
            "active_rooms": len(api._active)}  # fmt: skip
    print(json.dumps(held), flush=True)
    for line in sys.stdin:
        if line.strip() == "calls":
            with api._lock:
                counts: dict[str, int] = {}
                for seen in api.seen:
                    counts[seen.path] = counts.get(seen.path, 0) + 1
                answer = {"calls": counts, "bad_signatures": api.bad_signatures,
                          "sessions_ended_since_start": ended_since[0]}  # fmt: skip
            print(json.dumps(answer), flush=True)
    stopping.set()
    api.stop()


class ApiProcess:
    """The local plugNmeet API in a subprocess (``prefix``: e.g. taskset to the load core)."""

    def __init__(self, prefix: list[str], key: str, secret: str, *options: str) -> None:
        command = [*prefix, sys.executable, "-m", "bench.reconcile", "api", "--key", key,
                   "--secret", secret, *options]  # fmt: skip
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line:
            self.stop()
            raise SystemExit("the local plugNmeet API did not start")
        self.held: dict[str, int | str] = json.loads(line)
        self.url = str(self.held["url"])

    def calls(self) -> dict[str, Any]:
        """What it took so far: ``calls`` by path, ``bad_signatures``, sessions ended since."""
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write("calls\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def __enter__(self) -> ApiProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def calls_between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """The calls taken between two answers of :meth:`ApiProcess.calls`, by path."""
    return {
        path.removeprefix("/auth/"): n - before["calls"].get(path, 0)
        for path, n in sorted(after["calls"].items())
        if n - before["calls"].get(path, 0)
    }


# --- the background pass during the load --------------------------------------------------------


@dataclass
class PassRow:
    started_at: float
    finished_at: float
    outcome: str
    closed: int
    discovered: int
    artifacts: int
    recordings: int
    unresolved: int

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


def pass_rows(database_url: str) -> list[PassRow]:
    """Every pass the database kept, oldest first."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT started_at, finished_at, outcome, closed, discovered, artifacts, "
                "recordings, unresolved FROM reconcile_passes ORDER BY started_at"
            ).all()
    finally:
        engine.dispose()
    return [PassRow(*row) for row in rows]


def wait_for_first_pass(database_url: str, timeout: float = 600) -> PassRow:
    """Wait until the receiver's first background pass (its catch-up, 7 days) has finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            rows = pass_rows(database_url)
        except SQLAlchemyError:  # the schema may not be there yet
            rows = []
        if rows:
            if rows[0].outcome != "completed":
                raise SystemExit(f"FAILED: the first reconciliation pass did not complete: {rows}")
            return rows[0]
        time.sleep(0.5)
    raise SystemExit(f"no reconciliation pass finished within {timeout:.0f} s")


@dataclass
class DuringLoad:
    """What the background passes did while the reconciling receiver was measured."""

    first: PassRow
    during: list[PassRow]  # passes that overlapped a measured run of that receiver
    after_first: list[PassRow]  # every pass after the first, load or not
    covered: float  # share of the measured time a pass was running
    calls: dict[str, int]  # API calls taken after the first pass
    api: dict[str, Any] = field(default_factory=dict)

    def calls_per_pass(self) -> float:
        return sum(self.calls.values()) / max(1, len(self.after_first))


def during_load(
    database_url: str, first: PassRow, spans: list[tuple[float, float]], calls: dict[str, int]
) -> DuringLoad:
    """Which passes ran while the receiver was measured (``spans``: its measured wrk runs)."""
    rows = pass_rows(database_url)
    failed = [row for row in rows if row.outcome != "completed"]
    if failed:
        raise SystemExit(f"FAILED: {len(failed)} reconciliation passes did not complete")
    after_first = [row for row in rows if row.started_at > first.started_at]
    during, covered = [], 0.0
    for row in after_first:
        overlap = sum(
            max(0.0, min(row.finished_at, end) - max(row.started_at, start)) for start, end in spans
        )
        if overlap > 0:
            during.append(row)
            covered += overlap
    total = sum(end - start for start, end in spans) or 1.0
    return DuringLoad(first, during, after_first, covered / total, calls)


# --- a pass over 10,000 sessions ---------------------------------------------------------------


@dataclass
class Timing:
    """One ``flask reconcile`` run: its wall time, its totals, the API calls it made, and the
    peak resident memory of its process."""

    seconds: float
    totals: dict[str, int]
    calls: dict[str, int]
    rss_mb: float


@dataclass
class HistoryPass:
    database: str
    sessions: int
    first: Timing
    second: Timing
    ledger: dict[str, int]


def ledger_counts(database_url: str) -> dict[str, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:

            def count(table: Any, *where: Any) -> int:
                return conn.execute(select(func.count()).select_from(table).where(*where)).scalar()

            return {
                "sessions ended from the API": count(sessions, sessions.c.ended_from == "api"),
                "usage rows": count(usage),
                "file rows": count(files, files.c.kind != "RECORDING"),
                "recording rows": count(files, files.c.kind == "RECORDING"),
                "events from the API": count(events, events.c.source == "api"),
            }
    finally:
        engine.dispose()


def _reconcile(env: dict[str, str], prefix: list[str], since_day: str, log: Path) -> tuple:
    """Run the command; return its wall time, its totals and its peak RSS (taskset runs the
    command in its own process, so the process waited for is the command's)."""
    command = [*prefix, sys.executable, "-m", "flask", "--app", "app", "reconcile",
               "--since", since_day, "--format", "json"]  # fmt: skip
    answer = log.with_suffix(".json")
    with log.open("ab") as err, answer.open("wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"FAILED: flask reconcile exited {process.returncode}; see {log}")
    report = json.loads(answer.read_bytes())
    totals = {k: report[k] for k in ("sessions_discovered", "sessions_closed", "artifacts_added",
                                     "recordings_added", "unresolved")}  # fmt: skip
    return seconds, totals, usage.ru_maxrss / 1024


def history_pass(
    database_url: str,
    label: str,
    env: dict[str, str],
    server_prefix: list[str],
    load_prefix: list[str],
    key: str,
    secret: str,
    count: int = 10_000,
) -> HistoryPass:
    """Time ``flask reconcile --since`` over ``count`` sessions missing from an empty ledger,
    then again (it must change nothing); check what the first added."""
    engine = make_engine(database_url)
    prepare_schema(engine)
    engine.dispose()
    first_day = (int(time.time()) // DAY - 22) * DAY
    since_day = datetime.fromtimestamp(first_day, UTC).strftime("%Y-%m-%d")
    log = OUT / f"reconcile-{label}.log"
    options = ("--state", "history", "--sessions", str(count), "--first-day", str(first_day))
    with ApiProcess(load_prefix, key, secret, *options) as api:
        env = env | {"PNM_PLUGNMEET_URL": api.url}
        timings = []
        for _ in range(2):
            before = api.calls()
            seconds, totals, rss_mb = _reconcile(env, server_prefix, since_day, log)
            after = api.calls()
            timings.append(Timing(seconds, totals, calls_between(before, after), rss_mb))
        if after["bad_signatures"]:
            raise SystemExit(f"FAILED: the API saw {after['bad_signatures']} bad signatures")
    first, second = timings
    recordings = len(range(0, count, RECORDING_EVERY))
    expected = {"sessions_discovered": count, "sessions_closed": 0,
                "artifacts_added": len(ARTIFACTS) * count, "recordings_added": recordings,
                "unresolved": 0}  # fmt: skip
    if first.totals != expected:
        raise SystemExit(f"FAILED: the first pass over {count:,} sessions found {first.totals}, "
                         f"not {expected}")  # fmt: skip
    if any(second.totals.values()):
        raise SystemExit(f"FAILED: a second pass over the same window changed {second.totals}")
    ledger = ledger_counts(database_url)
    wanted = {"sessions ended from the API": count, "usage rows": 2 * count,
              "file rows": count, "recording rows": recordings,
              "events from the API": count + len(ARTIFACTS) * count + recordings}  # fmt: skip
    if ledger != wanted:
        raise SystemExit(f"FAILED: after the pass the ledger holds {ledger}, not {wanted}")
    return HistoryPass(label, count, first, second, ledger)


# --- the report -------------------------------------------------------------------------------


def _calls_text(calls: dict[str, int]) -> str:
    return f"{sum(calls.values()):,} (" + ", ".join(f"{p} {n:,}" for p, n in calls.items()) + ")"


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def report_lines(plain: Any, reconciling: Any, load: DuringLoad, history: list[HistoryPass],
                 skipped: str | None, target: float, rss_target: float) -> list[str]:  # fmt: skip
    """The section of BENCHMARKS.md on reconciliation (``plain``, ``reconciling``: the loads
    bench/run.py measured)."""
    ratio = reconciling.rps / plain.rps
    with_rps, without_rps = reconciling.extra["all_rps"], plain.extra["all_rps"]
    paired = [r / p for r, p in zip(with_rps, without_rps, strict=False)]
    cpu_plain, cpu_rec = plain.extra["cpu_us"], reconciling.extra["cpu_us"]
    spans, watched = reconciling.extra["spans"], reconciling.extra["watched_s"]
    shares = [w / (end - start) for w, (start, end) in zip(watched, spans, strict=True)]
    rest = _median(reconciling.extra["watched_rest_us"])
    first, during = load.first, load.during
    rows = [
        ("with the background pass / without, requests/s (medians)",
         f"{ratio:.2f} ({reconciling.rps:,.0f} / {plain.rps:,.0f})", f"≥ {target:.2f}",
         "met" if ratio >= target else "**missed**"),
        ("requests/s of each round, with / without",
         ", ".join(f"{r:,.0f} / {p:,.0f}" for r, p in zip(with_rps, without_rps, strict=False)),
         "", ""),
        ("the same as ratios, round by round", ", ".join(f"{r:.2f}" for r in paired), "", ""),
        ("worker CPU per request, with / without (medians)",
         f"{cpu_rec:,.0f} µs / {cpu_plain:,.0f} µs ({cpu_rec / cpu_plain:.2f})", "", ""),
        ("CPU of the pass's thread in each measured run, and its share of the run",
         ", ".join(f"{w:.2f} s ({s:.1%})" for w, s in zip(watched, shares, strict=True)), "", ""),
        ("CPU per request of the other threads, with / without (medians)",
         f"{rest:,.0f} µs / {cpu_plain:,.0f} µs ({rest / cpu_plain:.2f})", "", ""),
        ("peak RSS of the worker, with / without",
         f"{reconciling.rss_mb:.1f} MB / {plain.rss_mb:.1f} MB", f"≤ {rss_target:.0f} MB",
         "met" if reconciling.rss_mb <= rss_target else "**missed**"),
    ]  # fmt: skip
    lines = [
        "## Reconciliation",
        "",
        "**Throughput with the background pass on.** The receiver with `PNM_PLUGNMEET_URL` set "
        "and `PNM_RECONCILE_INTERVAL=10` took its turns with the others (right after the plain "
        "receiver, on an empty database too), against a local plugNmeet API "
        "(tests/support/plugnmeet_api.py) in a process of its own on the load core. The API "
        f"held {load.api['past_sessions']:,} ended sessions (the benchmark's 500, ended an "
        f"hour before the run as their deliveries say, and {load.api['past_sessions'] - 500:,} "
        "ended over the last three hours with three artifacts each, one in four with a "
        f"recording: {load.api['artifacts']:,} artifacts, {load.api['recordings']:,} "
        f"recordings) and {load.api['active_rooms']} running rooms; while the run lasted, one "
        "more session ended every 3 s with all its deliveries lost "
        f"({load.api['sessions_ended_since_start']} in all), so that passes wrote as well as "
        "read. The receiver's first pass (the 7-day catch-up at start: "
        f"{first.discovered} sessions, {first.artifacts} artifacts, {first.recordings} "
        f"recordings added, in {first.seconds:.1f} s) finished before the load began.",
        "",
        "| measure | result | target | |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"{len(load.after_first)} passes ran after the first one, every one completed; "
        f"{len(during)} of them overlapped the measured runs of the reconciling receiver (a "
        f"pass was running for {load.covered:.0%} of that time). A pass took "
        f"{_median([r.seconds for r in load.after_first]):.2f} s (median) and made "
        f"{load.calls_per_pass():.0f} API calls on average ({_calls_text(load.calls)} in all); "
        f"the passes during the runs added {sum(r.discovered for r in during)} sessions, "
        f"{sum(r.artifacts for r in during)} artifacts and "
        f"{sum(r.recordings for r in during)} recordings. Every delivery to this receiver "
        "was answered 200 and stored, as for the others.",
    ]
    if history:
        lines += [
            "",
            f"**A pass over {history[0].sessions:,} past sessions.** The API held "
            f"{history[0].sessions:,} sessions ended over 20 days, each with three artifacts (a "
            "meeting summary, its token usage, a transcription's duration usage), one in four "
            "with a recording; the receiver's database had none of them (every delivery "
            "lost). `flask --app app reconcile --since <the day before them> --format json` "
            "ran pinned to the server's core, the API on the other; the time is the whole "
            "command's, process start included. The first pass added everything (checked in "
            "the ledger: sessions ended from the API, usage, file and recording rows, events); "
            "the second, over the same window, changed nothing.",
            "",
            "| database | first pass | sessions/s | added | second pass | sessions/s "
            "| peak RSS, first / second | API calls (each pass) |",
            "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
        ]
        for h in history:
            t = h.first.totals
            lines.append(
                f"| {h.database} | {h.first.seconds:.1f} s | {h.sessions / h.first.seconds:,.0f} "
                f"| {t['sessions_discovered']:,} sessions, {t['artifacts_added']:,} artifacts, "
                f"{t['recordings_added']:,} recordings | {h.second.seconds:.1f} s | "
                f"{h.sessions / h.second.seconds:,.0f} | {h.first.rss_mb:,.0f} MB / "
                f"{h.second.rss_mb:,.0f} MB | {_calls_text(h.first.calls)}"
                + (
                    ""
                    if h.second.calls == h.first.calls
                    else f"; the second: {_calls_text(h.second.calls)}"
                )
                + " |"
            )
    if skipped:
        lines += ["", skipped]
    return lines


# --- a profile ----------------------------------------------------------------------------------


def profile(args: argparse.Namespace) -> None:
    """A pass over the history in this process, under pyinstrument; then the second pass."""
    from pyinstrument import Profiler

    from app import create_app
    from plugnmeet_webhooks import runtime
    from plugnmeet_webhooks.reconcile.worker import run_pass

    key, secret = "bench-key", "bench-secret-0123456789abcdefghijklmnop"
    OUT.mkdir(parents=True, exist_ok=True)
    first_day = (int(time.time()) // DAY - 22) * DAY
    since = first_day
    if args.database.startswith("sqlite:///"):
        Path(args.database.removeprefix("sqlite:///")).unlink(missing_ok=True)
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})
    options = ("--state", "history", "--sessions", str(args.sessions), "--first-day",
               str(first_day))  # fmt: skip
    prefix = ["taskset", "-c", "1"] if (os.cpu_count() or 1) > 1 else []
    with ApiProcess(prefix, key, secret, *options) as api:
        app = create_app({"PNM_API_KEY": key, "PNM_API_SECRET": secret,
                          "PNM_DATABASE_URL": args.database, "PNM_PLUGNMEET_URL": api.url,
                          "PNM_LOG_LEVEL": "WARNING"})  # fmt: skip
        rt = runtime.of(app)
        engine = rt.database()
        for label in ("first", "second"):
            profiler = Profiler()
            started, cpu = time.perf_counter(), time.process_time()
            with profiler:
                done = run_pass(engine, rt.reconciler(), since=since)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            assert done is not None
            text = profiler.output_text(unicode=True, show_all=False)
            (OUT / f"reconcile-profile-{label}.txt").write_text(text)
            print(f"{label} pass: {wall:.1f} s wall, {cpu:.1f} s CPU; {done.totals()}")
            print(text)
        rt.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    api = commands.add_parser("api", help="serve the local plugNmeet API (used by bench.run)")
    api.add_argument("--key", required=True)
    api.add_argument("--secret", required=True)
    api.add_argument("--state", choices=("busy", "history"), required=True)
    api.add_argument("--sessions", type=int, default=300)
    api.add_argument("--bench-ended", type=int, default=int(time.time()) - 3600)
    api.add_argument("--end-every", type=float, default=3.0)
    api.add_argument("--first-day", type=int, default=(int(time.time()) // DAY - 22) * DAY)
    prof = commands.add_parser("profile", help="profile a pass over the history in-process")
    prof.add_argument("--sessions", type=int, default=10_000)
    prof.add_argument("--database", default=f"sqlite:///{OUT / 'profile.db'}")
    args = parser.parse_args()
    (serve if args.command == "api" else profile)(args)


if __name__ == "__main__":
    main()
