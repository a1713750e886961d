"""``make bench``: the receiver against its peers, one pinned core, in the same run.

Starts the service exactly as production runs it (gunicorn, gunicorn.conf.py, SQLite with
WAL and synchronous=FULL) and two peers under the same gunicorn: a floor app that only reads
the body, and the public guide's listener ported to Flask (verifies and logs, stores
nothing). Drives them with wrk from the other core using pre-signed distinct deliveries,
checks that every answer was a 200 and every event was stored, repeats the service run over
a database of 1,000,000 events and with the example workflow rules, times the reports,
replay, rebuild-ledger and the dashboard, measures the receiver with reconciliation's
background pass on (bench/reconcile.py) and times a pass over 10,000 past sessions, times the
outbox's drain of a backlog of 20,000 messages to a local destination that answers at once and
its lag under full load, and writes BENCHMARKS.md and a chart. ``--only reconcile`` runs only
the reconciliation parts, with the plain receiver as their peer, and writes
bench/out/reconcile.md instead; ``--only outbox`` runs only the outbox's parts and writes
bench/out/outbox.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from bench import latency, node_peer, reconcile
from config import load_server_settings
from plugnmeet_webhooks.storage.engine import make_engine, write_transaction
from plugnmeet_webhooks.storage.events import events as events_table
from plugnmeet_webhooks.storage.migrate import prepare_schema
from plugnmeet_webhooks.storage.outbox import Message, counts, enqueue, message_id
from tests.support import postgres
from tests.support.sink import Answer, Sink
from validation import sign

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"


KEY = "bench-key"
SECRET = "bench-secret-0123456789abcdefghijklmnop"  # noqa: S105 - a throw-away key for the run
PATH = "/webhook-listener"
SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = 16
STATELESS = ("floor", "guide", "express")  # peers that store nothing: they may see a delivery again
TARGETS = {
    "ratio_to_floor": 0.60,
    "ratio_to_floor_aim": 0.75,
    "ratio_to_guide": 1.0,
    "ratio_full_to_empty": 0.90,
    "p99_over_p50": 3.0,
    "rss_mb": 80.0,
    "report_seconds": 2.0,
    "replay_events_per_second": 5000.0,
    "rules_over_plain": 0.90,
    "dashboard_seconds": 1.0,
    "reconcile_over_plain": 0.95,
}
RECONCILE_INTERVAL = "10"  # seconds: the shortest the settings allow, so passes run in each round
ADMIN_TOKEN = "bench-admin-token-0123456789"  # noqa: S105 - a throw-away token for the run
BILLING_SECRET = "whsec_YmVuY2gtYmlsbGluZy1zZWNyZXQtMDEyMzQ1Njc4OQ=="  # noqa: S105 - a throw-away
SLOW_DESTINATION_SECONDS = 10.0


def rules_env(sink: Sink) -> dict[str, str]:
    """The README's example rules: Slack at a fast local server, the billing app at a slow one
    (it answers after 10 s), so the run shows a slow destination holding nothing else up."""
    rules = (ROOT / "samples" / "rules.toml").read_text()
    path = OUT / "rules.toml"
    path.write_text(rules.replace("https://billing.internal/hooks/plugnmeet", sink.url("/billing")))
    sink.script("/billing", then=Answer(200, delay=SLOW_DESTINATION_SECONDS))
    return {
        "PNM_RULES_FILE": str(path),
        "OPS_SLACK_URL": sink.url("/slack"),
        "BILLING_WEBHOOK_SECRET": BILLING_SECRET,
        "PNM_DISPATCHER": os.environ.get("BENCH_DISPATCHER", "on"),
    }


def outbox_states(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pinned(cpu: int) -> list[str]:
    """Prefix a command so it runs on one CPU, where taskset exists and there are two."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        return ["taskset", "-c", str(cpu)]
    return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(database_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PNM_", "PROMETHEUS_"))}
    env |= {
        "PNM_API_KEY": KEY,
        "PNM_API_SECRET": SECRET,
        "PNM_DATABASE_URL": database_url,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        **extra,
    }
    return env


@dataclass
class Server:
    """A gunicorn master with one worker, pinned to SERVER_CPU."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def worker_pid(self) -> int:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                return int(stat.parent.name)
        raise RuntimeError("gunicorn has no worker")

    def cpu_seconds(self, thread: int | None = None) -> float:
        """The CPU time (user and system) the worker has used so far: all its threads', or
        one thread's."""
        pid = self.worker_pid()
        stat = Path(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat")
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def busiest_thread(self) -> int:
        """The worker's thread, other than its main one, that has used the most CPU."""
        pid = self.worker_pid()
        others = [int(t.name) for t in Path(f"/proc/{pid}/task").iterdir() if int(t.name) != pid]
        return max(others, key=lambda tid: self.cpu_seconds(tid))

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.worker_pid()}/status").read_text()
        kb = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))
        return kb / 1024

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(database_url: str, app: str | None, label: str, **extra: str) -> Server:
    port = free_port()
    log_path = OUT / f"{label}.log"
    command = [*pinned(SERVER_CPU), sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
    if app:
        command.append(app)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=service_env(database_url, port, **extra), stdout=log, stderr=log
        )
    server = Server(process, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{label} did not start:\n{log_path.read_text()[-2000:]}")
        try:
            server.worker_pid()
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except (OSError, RuntimeError):
            time.sleep(0.1)
    raise SystemExit(f"{label} did not listen within 60 s")


# --- deliveries ---------------------------------------------------------------------------


def _templates() -> list[dict]:
    return [json.loads(p.read_bytes()) for p in sorted((ROOT / "samples").glob("*.json"))]


def realistic_event(template: dict, n: int, rooms: int, created_at: int) -> dict:
    """Turn a sample into a distinct event of room n % rooms, with fresh ids."""
    payload = json.loads(json.dumps(template))
    room = n % rooms
    payload["id"] = str(uuid.UUID(int=n + (7 << 100)))
    payload["created_at"] = str(created_at)
    if "room" in payload:
        payload["room"]["sid"] = f"RM_bench{room:06d}"
        payload["room"]["room_id"] = f"room-{room:05d}"
        if "creation_time" in payload["room"]:
            payload["room"]["creation_time"] = str(created_at - 1800 - n % 900)
    if "participant" in payload:
        payload["participant"]["sid"] = f"PA_{n}"
        payload["participant"]["identity"] = f"u-{n % 5000}"
        if "joined_at" in payload["participant"]:
            payload["participant"]["joined_at"] = str(created_at - 600 - n % 600)
    if "room_artifact" in payload:
        payload["room_artifact"]["artifact_id"] = str(uuid.UUID(int=n + (9 << 100)))
    if "recording_info" in payload:
        payload["recording_info"]["record_id"] = f"REC_{n}"
    return payload


def compact(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def write_deliveries(path: Path, count: int, first: int) -> int:
    """Write ``count`` distinct signed deliveries, one ``token<TAB>body`` a line; return the
    time they are dated from (their events happened an hour before it)."""
    templates = _templates()
    now = int(time.time())
    with path.open("wb") as out:
        for n in range(first, first + count):
            body = compact(realistic_event(templates[n % len(templates)], n, 500, now - 3600))
            token = sign(body, KEY, SECRET, ttl=4 * 3600)
            out.write(token.encode() + b"\t" + body + b"\n")
    return now


# --- load ---------------------------------------------------------------------------------


@dataclass
class Load:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    completed: int
    non200: int
    wrapped: int
    rss_mb: float = 0.0
    extra: dict = field(default_factory=dict)


def wrk(url: str, deliveries: Path, first: int, count: int, seconds: int) -> Load:
    command = [
        *pinned(LOAD_CPU), "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
        "-s", str(ROOT / "bench" / "replay.lua"), url,
        "--", str(deliveries), str(first), str(count),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    mine = dict(re.findall(r"(\w+)=(\d+)", " ".join(re.findall(r"^PNM (.*)$", output, re.M))))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    socket_errors = sum(int(n) for n in socket.groups()) if socket else 0
    return Load(
        rps=rps,
        p50_ms=int(mine["p50_us"]) / 1000,
        p99_ms=int(mine["p99_us"]) / 1000,
        completed=int(mine["completed"]),
        non200=int(mine["non200"]) + socket_errors,  # a lost answer is not a 200 either
        wrapped=int(mine["wrapped"]),
    )


class Slices:
    """Hands out slices of the signed deliveries, so no delivery is ever sent twice."""

    def __init__(self, per_run: int) -> None:
        self.per_run = per_run
        self.next_first = 1

    def take(self) -> int:
        first, self.next_first = self.next_first, self.next_first + self.per_run
        return first


def measure(
    servers: dict[str, Server],
    deliveries: Path,
    slices: Slices,
    rounds: int,
    seconds: int,
    *,
    floor_slice: int,
    watch: dict[str, int] | None = None,
) -> dict[str, Load]:
    """Warm each server up, then measure them in turn, ``rounds`` times; keep the medians.

    Taking turns, round after round, spreads the machine's noise over every server alike,
    so the ratios compare like with like. The floor stores nothing, so it is sent one slice
    of deliveries again and again; the receivers never see a delivery twice. ``watch`` names
    a worker thread of some servers whose own CPU time is kept for each run too.
    """
    watch = watch or {}

    def first(name: str) -> int:
        return floor_slice if name in STATELESS else slices.take()

    def timed(name: str, server: Server, seconds: int) -> Load:
        """One wrk run, with when it ran and the worker's CPU time during it."""
        thread = watch.get(name)
        cpu, started = server.cpu_seconds(), time.time()
        watched = server.cpu_seconds(thread) if thread else 0.0
        load = wrk(server.url, deliveries, first(name), slices.per_run, seconds)
        load.extra["span"] = (started, time.time())
        load.extra["cpu_s"] = server.cpu_seconds() - cpu
        load.extra["watched_s"] = server.cpu_seconds(thread) - watched if thread else 0.0
        return load

    runs: dict[str, list[Load]] = {name: [] for name in servers}
    acknowledged = dict.fromkeys(servers, 0)
    for name, server in servers.items():
        warm = timed(name, server, 3)
        acknowledged[name] += warm.completed
        runs[name].append(warm)  # checked below, not counted in the medians
    for number in range(1, rounds + 1):
        for name, server in servers.items():
            say(f"  round {number}/{rounds}: {name}")
            load = timed(name, server, seconds)
            acknowledged[name] += load.completed
            runs[name].append(load)
    results = {}
    for name, server in servers.items():
        failed = [r for r in runs[name] if r.non200 or (r.wrapped and name not in STATELESS)]
        if failed:
            raise SystemExit(
                f"FAILED: {name}: {sum(r.non200 for r in failed)} answers were not 200 and "
                f"{sum(r.wrapped for r in failed)} deliveries were sent twice (raise "
                f"--deliveries); see {server.log_path}"
            )
        measured = runs[name][1:]
        middle = sorted(measured, key=lambda r: r.rps)[len(measured) // 2]
        cpu_us = [r.extra["cpu_s"] / max(1, r.completed) * 1e6 for r in measured]
        results[name] = Load(
            rps=middle.rps,
            p50_ms=middle.p50_ms,
            p99_ms=middle.p99_ms,
            completed=sum(r.completed for r in measured),
            non200=0,
            wrapped=0,
            rss_mb=server.peak_rss_mb(),
            extra={
                "acknowledged": acknowledged[name],
                "runs": len(runs[name]),
                "all_rps": [r.rps for r in measured],
                "spans": [r.extra["span"] for r in measured],
                "all_cpu_us": cpu_us,  # CPU per answered request, each run
                "cpu_us": sorted(cpu_us)[len(cpu_us) // 2],
                "watched_s": [r.extra["watched_s"] for r in measured],
                "watched_rest_us": [
                    (r.extra["cpu_s"] - r.extra["watched_s"]) / max(1, r.completed) * 1e6
                    for r in measured
                ],
            },
        )
    return results


# --- the guide's own listener, in Express: a Node peer --------------------------------------


class NodeServer(Server):
    """The Express peer: one Node process, pinned to SERVER_CPU (taskset execs node, so the
    process started is the one that serves)."""

    def worker_pid(self) -> int:
        return self.process.pid


def start_express(label: str = "express") -> NodeServer:
    port = free_port()
    log_path = OUT / f"{label}.log"
    try:
        process = node_peer.start(pinned(SERVER_CPU), port, SECRET, log_path, say=say)
    except node_peer.NodeMissing as exc:
        raise SystemExit(f"FAILED: {exc}") from None
    return NodeServer(process, port, log_path)


def require_node() -> None:
    """Stop at once, saying what is missing, if the Express peer cannot run; install its
    packages if they are missing."""
    try:
        node_peer.ensure_installed(say)
    except node_peer.NodeMissing as exc:
        raise SystemExit(f"FAILED: {exc}") from None


def express_part(results: dict, args: argparse.Namespace) -> None:
    """``--only express``: the Express peer, measured in turn with the floor, the Flask port
    and the receiver on an empty database, as the full run measures them."""
    rounds = args.rounds
    slices = Slices(args.deliveries)
    deliveries = OUT / "deliveries.tsv"
    count = args.deliveries * (1 + rounds + 1)  # the peers' one slice, the receiver's runs
    say(f"signing {count:,} distinct deliveries ...")
    write_deliveries(deliveries, count, 0)
    empty_db = OUT / "empty.db"
    check_durability(f"sqlite:///{empty_db}")
    say(f"load: floor, guide, express, empty, {rounds} rounds ...")
    servers: dict[str, Server] = {}
    try:
        servers["floor"] = start(f"sqlite:///{OUT / 'floor.db'}", "bench.floor:app", "floor")
        servers["guide"] = start(f"sqlite:///{OUT / 'guide.db'}", "bench.guide:app", "guide")
        servers["express"] = start_express()
        servers["empty"] = start(f"sqlite:///{empty_db}", None, "receiver-empty")
        check_guards(servers["empty"])
        loads = measure(servers, deliveries, slices, rounds, args.seconds,
                        floor_slice=slices.take())  # fmt: skip
    finally:
        for server in servers.values():
            server.stop()
    results.update(loads)
    results["rounds"] = rounds
    check_stored(results["empty"], stored_events(empty_db) - 1)  # minus the guard's event


def express_section(results: dict) -> list[str]:
    """BENCHMARKS.md's section on the Express peer, beside the floor, the Flask port and the
    receiver measured in the same rounds."""
    floor, guide, express, empty = (results[n] for n in ("floor", "guide", "express", "empty"))
    to_express, to_guide = empty.rps / express.rps, empty.rps / guide.rps
    per_round = [r / e for r, e in zip(empty.extra["all_rps"], express.extra["all_rps"],
                                        strict=True)]  # fmt: skip
    lines = [
        "## The guide's own listener, in Express",
        "",
        *results.get("alone", {}).get("express", []),
        "The public guide's listener is an Express app (`bench/express/listener.js`, express, "
        "body-parser and jsonwebtoken at the versions `package.json` pins): `jwt.verify` of the "
        "`Authorization` token, a SHA-256 of the raw body compared with the token's claim, a "
        "log line and a line per event; it stores nothing. It was fixed only so far as to "
        "accept real deliveries (its parser is bound to `application/json` as well, and it "
        "compares the digest as base64 as well as hex; the file says why). It ran as one Node "
        f"{node_version()} process on CPU {SERVER_CPU}, as the guide deploys it, measured in "
        "turn with the others, round after round; the table shows the median run. Every "
        "answer was a 200.",
        "",
        "| server | requests/s (median) | every round | p50 | p99 | CPU per request | peak RSS |",
        "| --- | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, load in (("floor (bare Flask)", floor),
                        ("the guide's listener in Flask (the port)", guide),
                        ("**the guide's listener in Express** (one Node process)", express),
                        ("receiver, empty database (stores everything)", empty)):  # fmt: skip
        rounds = ", ".join(f"{r:,.0f}" for r in load.extra["all_rps"])
        lines.append(
            f"| {label} | {load.rps:,.0f} | {rounds} | {load.p50_ms:.2f} ms | "
            f"{load.p99_ms:.2f} ms | {load.extra['cpu_us']:,.0f} µs | {load.rss_mb:.1f} MB |"
        )
    lines += [
        "",
        "| ratio (medians of the rounds) | result | round by round |",
        "| --- | ---: | --- |",
        f"| receiver / the guide's listener in Express | {to_express:.2f} | "
        + ", ".join(f"{r:.2f}" for r in per_round) + " |",
        f"| receiver / the guide's listener in Flask | {to_guide:.2f} | |",
        f"| the guide's listener: Express / Flask | {express.rps / guide.rps:.2f} | |",
        f"| floor (bare Flask) / Express | {floor.rps / express.rps:.2f} | |",
    ]  # fmt: skip
    return lines


def node_version() -> str:
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "(unknown version)"


# --- latency of an end-of-session burst: 16 rooms ending at once ----------------------------

LATENCY_P99_TARGET_MS = 50.0  # plugNmeet gives a delivery about 3 s, and a room's queue waits


def burst_latency(servers: dict[str, Server], bursts: int) -> dict[str, dict]:
    """Send each server ``bursts`` end-of-session bursts (bench/latency.py, pinned to the load
    core) after one not timed, the servers taking turns burst by burst; what every delivery
    met, by server."""
    command = [*pinned(LOAD_CPU), sys.executable, "-m", "bench.latency",
               *(server.url for server in servers.values()), "--bursts", str(bursts)]  # fmt: skip
    answer = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout)  # fmt: skip
    measured = {}
    for (name, server), met in zip(servers.items(), answer, strict=True):
        statuses = met["statuses"]
        met["answered_200"] = sum(1 for status in statuses if status == 200)
        if met["answered_200"] != len(statuses):
            wrong = sorted({str(s) for s in statuses if s != 200})
            raise SystemExit(f"FAILED: {name}: {len(statuses) - met['answered_200']} of "
                             f"{len(statuses)} burst deliveries were not answered 200 "
                             f"({', '.join(wrong)}); see {server.log_path}")  # fmt: skip
        ms = met["latencies_ms"]
        met |= {"p50_ms": latency.percentile(ms, 50), "p99_ms": latency.percentile(ms, 99),
                "max_ms": max(ms), "slowest_burst_ms": max(met["burst_ms"]),
                "median_burst_p99_ms": latency.percentile(met["burst_p99_ms"], 50)}  # fmt: skip
        measured[name] = met
    return measured


def latency_part(results: dict, bursts: int) -> None:
    """The receiver (a fresh empty database) and the Express peer under the same bursts."""
    db = OUT / "latency.db"
    check_durability(f"sqlite:///{db}")
    say(f"latency: {bursts} end-of-session bursts of {latency.ROOMS} rooms, receiver and "
        "express ...")  # fmt: skip
    servers: dict[str, Server] = {}
    try:
        servers["receiver"] = start(f"sqlite:///{db}", None, "receiver-latency")
        servers["express"] = start_express("express-latency")
        check_guards(servers["receiver"])
        ours = [server.cpu_seconds() for server in servers.values()]
        machine_busy, client, began = busy_cpu_seconds(), children_cpu_seconds(), time.time()
        measured = burst_latency(servers, bursts)
        wall = time.time() - began
        ours = [server.cpu_seconds() - cpu for server, cpu in zip(servers.values(), ours,
                                                                   strict=True)]  # fmt: skip
        theirs = busy_cpu_seconds() - machine_busy - sum(ours) - (children_cpu_seconds() - client)
        results["latency_others"] = max(0.0, theirs) / (wall * (os.cpu_count() or 1))
    finally:
        for server in servers.values():
            server.stop()
    stored = stored_events(db) - 1  # minus the guard's event
    answered = measured["receiver"]["answered_200"]
    measured["receiver"]["stored"] = f"{stored:,} of {answered:,}"
    if stored != answered:
        raise SystemExit(f"FAILED: {answered:,} burst deliveries answered 200, {stored:,} stored")
    measured["express"]["stored"] = "— (stores nothing)"
    results["latency"] = measured
    results["latency_bursts"] = bursts


def busy_cpu_seconds() -> float:
    """The CPU time every process on the machine has used since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """The CPU time of this process's finished children (the burst client, once it ends)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def latency_section(results: dict) -> list[str]:
    """BENCHMARKS.md's section on the latency of an end-of-session burst."""
    measured = results["latency"]
    receiver = measured["receiver"]
    rooms, per_room = receiver["rooms"], receiver["per_room"]
    events = ", ".join(dict.fromkeys(
        json.loads(body)["event"] for body in latency.end_of_session_bodies()))  # fmt: skip
    p99 = receiver["p99_ms"]
    lines = [
        "## Latency when 16 rooms end at once",
        "",
        *results.get("alone", {}).get("latency", []),
        "plugNmeet gives a delivery about 3 s in all, and a room's deliveries wait for each "
        f"other. Here {rooms} rooms end their sessions at the same moment: each sends its "
        f"{per_room} end-of-session deliveries from `tests/corpus` ({events}) in order over "
        "its own connection, every room at once. Each room has its own room id, sids and "
        "event ids, each delivery is signed as the other bench deliveries are. "
        f"`bench/latency.py` sent each server {results['latency_bursts']} such bursts after one "
        f"not timed, from CPU {LOAD_CPU}, the two servers taking turns burst by burst, 0.5 s "
        f"apart; the servers ran on CPU {SERVER_CPU} (the receiver as production runs it, on an "
        "empty SQLite database; the Express peer as above). A "
        "latency runs from sending a delivery to reading its answer; a room's first delivery "
        "includes connecting. While the bursts ran, other work on the machine (neither the "
        "servers nor the client) used "
        f"{results['latency_others']:.0%} of its {os.cpu_count()} cores (from /proc/stat): "
        "this figure, unlike the ratios, is not shielded from it. The p99 of the median burst "
        "is each burst's own p99, the "
        "median over the bursts: what a typical burst meets, less swayed than the p99 of all "
        "by a moment when another job took the core.",
        "",
        "| server | deliveries timed | p50 | p99 | max | p99 of the median burst "
        "| slowest burst (all rooms done) | answered 200 | stored |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for label, name in (("receiver", "receiver"), ("the guide's listener in Express", "express")):
        m = measured[name]
        lines.append(
            f"| {label} | {len(m['latencies_ms']):,} | {m['p50_ms']:.1f} ms | "
            f"{m['p99_ms']:.1f} ms | {m['max_ms']:.1f} ms | {m['median_burst_p99_ms']:.1f} ms | "
            f"{m['slowest_burst_ms']:.0f} ms | "
            f"{m['answered_200']:,} of {len(m['statuses']):,} | {m['stored']} |"
        )
    lines += [
        "",
        "| measure | result | target | |",
        "| --- | --- | --- | --- |",
        f"| receiver's p99 under the burst | {p99:.1f} ms | ≤ {LATENCY_P99_TARGET_MS:.0f} ms | "
        f"{verdict(p99, LATENCY_P99_TARGET_MS, False)} |",
    ]
    return lines


# --- the parts run alone: their sections replace their own in BENCHMARKS.md -----------------

OWN_PARTS = ("express", "latency")  # run alone, they rewrite only their sections


ALONE_PARTS = ("reconcile", "outbox")  # each runs alone and writes bench/out/<part>.md


def parts(value: str) -> set[str]:
    """``--only``'s value: parts separated by commas."""
    chosen = {part.strip() for part in value.split(",") if part.strip()}
    unknown = chosen - {*ALONE_PARTS, *OWN_PARTS}
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(sorted(unknown)) or value!r}: choose "
            f"{' or '.join(ALONE_PARTS)}, or any of {', '.join(OWN_PARTS)}"
        )
    for alone in ALONE_PARTS:
        if alone in chosen and len(chosen) > 1:
            raise argparse.ArgumentTypeError(f"--only {alone} runs alone")
    return chosen


def run_own_parts(results: dict, args: argparse.Namespace) -> None:
    """``--only express,latency``: run these parts alone and put their sections into
    BENCHMARKS.md in place of the last full run's (the rest of the file stays as it was)."""
    command = "python -m bench.run --only " + ",".join(p for p in OWN_PARTS if p in args.only)
    alone = [f"Measured on {results['date']} by `{command}` alone (this section only; the "
             "rest of this file is from the last full run).", ""]  # fmt: skip
    results["alone"] = dict.fromkeys(args.only, alone)
    sections = []
    if "express" in args.only:
        express_part(results, args)
        sections.append(express_section(results))
    if "latency" in args.only:
        latency_part(results, args.latency_bursts)
        sections.append(latency_section(results))
    path = ROOT / "BENCHMARKS.md"
    for lines in sections:
        replace_section(path, lines)
        print("\n".join(lines) + "\n")
    if results["notes"]:  # `make bench` passes --notes: keep the notes as current as the parts
        replace_section(path, ["## Notes", "", results["notes"].strip()])


def replace_section(path: Path, lines: list[str]) -> None:
    """Put a section (``lines[0]``, its ``## `` heading, first) into the file in place of the
    section with the same heading; a new one goes before ``## Notes``."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    old = text.splitlines()
    heading = lines[0]
    headings = [n for n, line in enumerate(old) if line.startswith("## ")]
    if heading in old:
        begin = old.index(heading)
        end = next((n for n in headings if n > begin), len(old))
    else:
        begin = end = next((n for n in headings if old[n] == "## Notes"), len(old))
    new = [*old[:begin], *lines, *([""] if end < len(old) else []), *old[end:]]
    path.write_text("\n".join(new) + "\n")


# --- guards: the benchmark refuses to measure a weakened service ----------------------------


def check_durability(database_url: str) -> None:
    """Open the database as the service does and look at what its write path really runs."""
    from sqlalchemy import event

    engine = make_engine(database_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    try:
        prepare_schema(engine)
        statements.clear()
        with write_transaction(engine) as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()
    begin = next((s for s in statements if s.startswith("BEGIN")), None)
    if (mode, sync, begin) != ("wal", 2, "BEGIN IMMEDIATE"):
        raise SystemExit(
            f"FAILED: SQLite runs with journal_mode={mode}, synchronous={sync}, writes begin "
            f"with {begin!r}; the benchmark measures only WAL + FULL + BEGIN IMMEDIATE."
        )


def check_guards(server: Server) -> None:
    """Refuse to report numbers for a service that skips verification or deduplication."""
    from plugnmeet_webhooks.cli.deliveries import post

    body = compact(realistic_event(_templates()[0], 10**9, 1, int(time.time())))
    token = sign(body, KEY, SECRET)
    checks = {
        "forged body": (post(server.url, body + b" ", token)[0], 403),
        "wrong secret": (post(server.url, body, sign(body, KEY, SECRET[::-1]))[0], 403),
        "first delivery": (json.loads(post(server.url, body, token)[1])["status"], "accepted"),
        "redelivery": (json.loads(post(server.url, body, token)[1])["status"], "duplicate"),
    }
    wrong = {k: v for k, v in checks.items() if v[0] != v[1]}
    if wrong:
        raise SystemExit(f"FAILED: the service no longer verifies or deduplicates: {wrong}")


def check_stored(load: Load, stored: int) -> None:
    """Every delivery answered 200 (warm-up included) must be in the database.

    wrk stops in the middle of requests, so at the end of each run up to one per
    connection may be stored without its answer having been counted.
    """
    acknowledged = load.extra["acknowledged"]
    load.extra["stored"] = f"{stored:,} of {acknowledged:,}"
    if not acknowledged <= stored <= acknowledged + load.extra["runs"] * CONNECTIONS:
        raise SystemExit(f"FAILED: {acknowledged:,} deliveries answered 200, {stored:,} stored")


def stored_events(path: Path) -> int:
    """The events stored from deliveries (not the facts a reconciliation pass stored)."""
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM events WHERE source = 'webhook'").fetchone()[0]


# --- a database of a million events ----------------------------------------------------------


def seed(path: Path, events: int, rooms: int) -> None:
    """Store ``events`` raw events over ``rooms`` rooms and 30 days, as the receiver would."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    prepare_schema(engine)
    templates = _templates()
    start = int(time.time()) - 30 * 86400
    batch = 20_000
    with engine.connect() as conn:
        for first in range(0, events, batch):
            rows = []
            for n in range(first, min(first + batch, events)):
                created = start + n * (30 * 86400) // events
                # Ids of their own, apart from the deliveries the load runs send.
                payload = realistic_event(templates[n % len(templates)], 10**8 + n, rooms, created)
                body = compact(payload)
                rows.append({
                    "dedupe_key": payload["id"], "event_id": payload["id"],
                    "event": payload["event"], "room_id": payload["room"]["room_id"],
                    "room_sid": payload["room"]["sid"], "created_at": created,
                    "received_at": float(created), "api_key": KEY, "remote_addr": "127.0.0.1",
                    "body_sha256": "0" * 64, "body": body, "tenant": KEY,
                })  # fmt: skip
            with conn.begin():
                conn.execute(events_table.insert(), rows)
            say(f"  seeded {min(first + batch, events):,} / {events:,} events")
    engine.dispose()


def flask(database_url: str, *args: str) -> float:
    """Run a flask command against the database; return its wall time in seconds."""
    env = service_env(database_url, 0)
    started = time.perf_counter()
    subprocess.run(
        [*pinned(SERVER_CPU), sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def time_dashboard(server: Server, times: int = 5) -> float:
    """Log in to a server's dashboard; the median wall time of its overview page, in seconds."""
    base = server.url.removesuffix(PATH)
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    page = browser.open(f"{base}/dashboard/login", timeout=30).read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"csrf": csrf, "token": ADMIN_TOKEN, "next": ""}).encode()
    browser.open(f"{base}/dashboard/login", data=form, timeout=30).read()
    walls = []
    for _ in range(times):
        started = time.perf_counter()
        with browser.open(f"{base}/dashboard", timeout=60) as answer:
            body = answer.read()
        walls.append(time.perf_counter() - started)
        if answer.status != 200 or b'id="total-minutes"' not in body:
            raise SystemExit("the dashboard overview did not render its totals")
    return sorted(walls)[len(walls) // 2]


# --- the outbox drain -------------------------------------------------------------------------

DRAIN_TARGET = 500.0  # messages a second from a backlog to a destination that answers at once
DRAIN_RULES = """
[destinations.billing-app]
kind = "webhook"
url = "{url}"
secret = "env:BILLING_WEBHOOK_SECRET"

[[rules]]
name = "joined"
on = "participant_joined"
send = ["billing-app"]
text = "{{{{ participant.name }}}} joined {{{{ room.room_id }}}}"

[[rules]]
name = "ended"
on = "session_ended"
send = ["billing-app"]
text = "{{{{ room.room_id }}}} ended: {{{{ session.billable_minutes }}}} billable minutes"
"""


def drain_env(sink: Sink) -> dict[str, str]:
    """Two rules (joins and session ends) to one signed webhook at the fast local server."""
    path = OUT / "drain-rules.toml"
    path.write_text(DRAIN_RULES.format(url=sink.url("/hook")))
    return {"PNM_RULES_FILE": str(path), "BILLING_WEBHOOK_SECRET": BILLING_SECRET,
            "PNM_DISPATCHER": "on"}  # fmt: skip


def outbox_figures(engine) -> dict:
    """Messages by state, sent so far, and the age of the oldest waiting one (the lag)."""
    states, oldest = counts(engine)
    with engine.connect() as conn:
        last = conn.execute(text("SELECT max(sent_at) FROM outbox")).scalar()
    return {
        "states": states,
        "queued": sum(states.values()),
        "sent": states["sent"],
        "lag": 0.0 if oldest is None else max(0.0, time.time() - oldest),
        "last_sent_at": last,
    }


def queue_backlog(engine, count: int) -> None:
    """``count`` messages for the billing app, as its rules would have queued them."""
    templates = {t["event"]: t for t in _templates()}
    event = templates["participant_joined"]
    with write_transaction(engine) as conn:
        messages = []
        for n in range(count):
            data = {"rule": "joined", "text": f"Person {n} joined room-{n % 500:05d}",
                    "event": realistic_event(event, n, 500, int(time.time()))}  # fmt: skip
            payload = {"type": "plugnmeet.participant_joined",
                       "timestamp": "2026-12-01T10:00:00Z", "data": data}  # fmt: skip
            key = f"backlog-{n}"
            messages.append(Message(
                message_id(KEY, "joined", "billing-app", key), KEY, "joined",
                "billing-app", key, "participant_joined", f"room-{n % 500:05d}", compact(payload),
            ))  # fmt: skip
        enqueue(conn, messages)


def wait_sent(engine, count: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        figures = outbox_figures(engine)
        if figures["sent"] >= count or time.monotonic() > deadline:
            return figures
        time.sleep(0.25)


def drain_backlog(database_url: str, label: str, count: int) -> dict:
    """A backlog of ``count`` messages, then a receiver started with its dispatcher on and
    nothing else to do: how fast it sends them all."""
    engine = make_engine(database_url)
    prepare_schema(engine)
    say(f"outbox: queueing a backlog of {count:,} messages ({label}) ...")
    queue_backlog(engine, count)
    with Sink() as sink:
        pin_threads(sink, LOAD_CPU)
        env = drain_env(sink)
        started = time.time()
        server = start(database_url, None, f"drain-{label.lower()}", **env)
        ready = time.time()
        try:
            figures = wait_sent(engine, count, timeout=max(120.0, count / 20))
        finally:
            server.stop()
        ids = [r.headers.get("webhook-id") for r in sink.at("/hook")]
        connections = sink.connections
    engine.dispose()
    if figures["sent"] < count:
        raise SystemExit(f"FAILED: {label}: {figures['sent']:,} of {count:,} sent in time")
    if len(ids) != len(set(ids)):
        raise SystemExit(f"FAILED: {label}: {len(ids) - len(set(ids))} messages sent twice")
    seconds = figures["last_sent_at"] - ready
    return {"label": label, "count": count, "seconds": seconds, "rate": count / seconds,
            "startup": ready - started, "connections": connections,
            "received": len(ids)}  # fmt: skip


def drain_under_load(deliveries: Path, first: int, per_run: int, seconds: int) -> dict:
    """The receiver with the two rules under full load: what its dispatcher sent meanwhile,
    its lag, then how long the rest took once the load stopped."""
    database_url = f"sqlite:///{OUT / 'drain-load.db'}"
    engine = make_engine(database_url)
    samples: list[tuple[float, dict]] = []
    with Sink() as sink:
        pin_threads(sink, LOAD_CPU)
        server = start(database_url, None, "drain-load", **drain_env(sink))
        try:
            check_guards(server)
            say(f"outbox: {seconds} s of full load with the dispatcher sending ...")
            began = time.time()
            done = threading.Event()
            watcher = threading.Thread(target=_sample, args=(engine, began, done, samples))
            watcher.start()
            load = wrk(server.url, deliveries, first, per_run, seconds)
            done.set()
            watcher.join()
            at_end = outbox_figures(engine)
            ended = time.time()
            figures = wait_sent(engine, at_end["queued"], timeout=600)
        finally:
            server.stop()
        ids = [r.headers.get("webhook-id") for r in sink.at("/hook")]
    engine.dispose()
    if load.non200 or load.wrapped:
        raise SystemExit(f"FAILED: outbox load: {load.non200} answers not 200, "
                         f"{load.wrapped} deliveries sent twice (raise --deliveries)")  # fmt: skip
    if len(ids) != len(set(ids)):
        raise SystemExit(f"FAILED: outbox load: {len(ids) - len(set(ids))} messages sent twice")
    after = max(0.0, figures["last_sent_at"] - ended) if figures["last_sent_at"] else 0.0
    return {
        "seconds": seconds, "rps": load.rps, "answered": load.completed,
        "queued": at_end["queued"], "sent": at_end["sent"], "lag": at_end["lag"],
        "max_lag": max([f["lag"] for _, f in samples] + [at_end["lag"]]),
        "samples": [(round(t), f["queued"], f["sent"], f["lag"]) for t, f in samples],
        "rest": at_end["queued"] - at_end["sent"], "rest_seconds": after,
    }  # fmt: skip


def _sample(engine, began: float, done, samples: list) -> None:
    while not done.wait(5.0):
        samples.append((time.time() - began, outbox_figures(engine)))


def pin_threads(sink: Sink, cpu: int) -> None:
    """Run the local destination on the load core (its serving thread and the threads it
    starts for connections), where taskset exists and there are two."""
    if not pinned(cpu):
        return
    serving = sink._thread  # started: pin it and, through it, the connections' threads
    assert isinstance(serving, threading.Thread) and serving.native_id is not None
    os.sched_setaffinity(serving.native_id, {cpu})


def outbox_drain(results: dict, args, deliveries: Path, slices: Slices) -> None:
    """The outbox's drain rate from a backlog, on SQLite and PostgreSQL, and its lag under
    full load."""
    drains = [drain_backlog(f"sqlite:///{OUT / 'drain.db'}", "SQLite", args.backlog)]
    if args.postgres != "off":
        import psycopg

        try:
            psycopg.connect(args.postgres, connect_timeout=3).close()
        except psycopg.Error:
            pass
        else:
            with postgres.fresh_schema(args.postgres) as url:
                drains.append(drain_backlog(url, "PostgreSQL", args.backlog))
    results["drains"] = drains
    results["drain_load"] = drain_under_load(
        deliveries, slices.take(), slices.per_run, args.outbox_load_seconds
    )


def drain_section(results: dict) -> list[str]:
    """BENCHMARKS.md's section on the outbox drain."""
    drains, load = results["drains"], results["drain_load"]
    slowest = min(d["rate"] for d in drains)
    lines = [
        "## The outbox drain",
        "",
        "**A backlog, the receiver idle.** The outbox held a backlog of messages for one "
        "destination, a `webhook` (each attempt signed per Standard Webhooks) at a local server "
        "that answers 200 at once and keeps connections alive (tests/support/sink.py, on the "
        "load core). A receiver was then started as `make run` starts it (one worker, on the "
        "server's core) with its dispatcher on and no deliveries; the time runs from when it "
        "listened to the last message's `sent_at`. Every message arrived once.",
        "",
        "| database | backlog | seconds | messages/s | target | | connections opened |",
        "| --- | ---: | ---: | ---: | --- | --- | ---: |",
    ]
    for d in drains:
        lines.append(
            f"| {d['label']} | {d['count']:,} | {d['seconds']:.1f} s | {d['rate']:,.0f} | "
            f"≥ {DRAIN_TARGET:,.0f} | {verdict(d['rate'], DRAIN_TARGET, True)} | "
            f"{d['connections']} |"
        )
    sampled = ", ".join(f"{lag:.1f} s at {t} s" for t, _, _, lag in load["samples"])
    lines += [
        "",
        f"**Under full load.** The receiver (SQLite) with two rules, joins and session ends "
        f"to that destination, was driven by wrk with {CONNECTIONS} connections for "
        f"{load['seconds']} s: {load['answered']:,} deliveries answered 200 "
        f"({load['rps']:,.0f}/s). They queued {load['queued']:,} messages, and the dispatcher "
        f"sent {load['sent']:,} of them ({load['sent'] / max(1, load['queued']):.0%}) while the "
        f"load lasted. **Lag at the end of the load** (the age of the oldest waiting message): "
        f"{load['lag']:.1f} s; the largest seen during it {load['max_lag']:.1f} s "
        f"(sampled every 5 s: {sampled or 'none'}). The {load['rest']:,} left were sent "
        f"{load['rest_seconds']:.1f} s after the load stopped.",
        "",
        f"Slowest drain rate: {slowest:,.0f} messages/s.",
    ]
    return lines


# --- output ---------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return (
        f"{cpu}, {os.cpu_count()} CPUs, {memory / 1024 / 1024:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def chart(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ["floor\n(bare Flask)", "guide's\nlistener", "receiver\n(empty db)",
              "receiver\n(reconciling)", "receiver\n(1M events)",
              "receiver\n(with rules)"]  # fmt: skip
    names = ("floor", "guide", "empty", "reconcile", "full", "rules")
    loads = [results[name] for name in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.6))
    colors = ["#9e9e9e", "#bdbdbd", "#1f77b4", "#9467bd", "#2ca02c", "#ff7f0e"]
    bars = left.bar(labels, [x.rps for x in loads], color=colors)
    left.bar_label(bars, fmt="%.0f")
    left.axhline(results["floor"].rps * TARGETS["ratio_to_floor"], color="#d62728", ls="--",
                 label=f"target: {TARGETS['ratio_to_floor']:.0%} of the floor")  # fmt: skip
    left.set_ylabel("requests / s (one core, 16 connections)")
    left.set_title("Throughput")
    left.legend(loc="lower right")
    x = range(len(loads))
    right.bar([i - 0.2 for i in x], [v.p50_ms for v in loads], 0.4, label="p50")
    right.bar([i + 0.2 for i in x], [v.p99_ms for v in loads], 0.4, label="p99")
    right.set_xticks(list(x), labels)
    right.set_ylabel("latency (ms)")
    right.set_title("Latency")
    right.legend()
    fig.suptitle(f"plugNmeet webhook receiver against its peers — {results['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "**missed**"


def write_report(results: dict, path: Path) -> str:
    floor, guide, empty, full = (results[n] for n in ("floor", "guide", "empty", "full"))
    ratio = empty.rps / floor.rps
    to_guide = empty.rps / guide.rps
    full_ratio = full.rps / empty.rps
    tail = max(empty.p99_ms / empty.p50_ms, full.p99_ms / full.p50_ms)
    rules = results["rules"]
    with_rules = rules.rps / empty.rps
    rss = max(empty.rss_mb, full.rss_mb, rules.rss_mb)
    slowest_report = max(results["report_rooms_s"], results["report_usage_s"])
    slowest_replay = min(results["rebuild_eps"], results["replay_eps"])
    rows = [
        ("accepted-and-stored / the guide's listener (stores nothing)", f"{to_guide:.2f}",
         "≥ 1.0", verdict(to_guide, TARGETS["ratio_to_guide"], True)),
        ("accepted-and-stored / floor, one core", f"{ratio:.2f}", "≥ 0.60 (aim 0.75)",
         verdict(ratio, TARGETS["ratio_to_floor"], True)),
        ("same, 1,000,000 events stored / empty", f"{full_ratio:.2f}", "≥ 0.90",
         verdict(full_ratio, 0.90, True)),
        ("p99 / p50 at 16 connections (worst run)", f"{tail:.2f}", "≤ 3", verdict(tail, 3, False)),
        ("peak RSS of one worker", f"{rss:.1f} MB", "≤ 80 MB", verdict(rss, 80, False)),
        ("`report rooms` / `report usage`, 1M events",
         f"{results['report_rooms_s']:.2f} s / {results['report_usage_s']:.2f} s", "≤ 2 s each",
         verdict(slowest_report, 2, False)),
        ("`rebuild-ledger` / `replay`", f"{results['rebuild_eps']:,.0f} / "
         f"{results['replay_eps']:,.0f} events/s", "≥ 5,000 events/s",
         verdict(slowest_replay, 5000, True)),
        ("with the example rules / without", f"{with_rules:.2f}", "≥ 0.90",
         verdict(with_rules, TARGETS["rules_over_plain"], True)),
        ("dashboard overview (last 30 days), 1M events", f"{results['dashboard_s']:.2f} s",
         "≤ 1 s", verdict(results["dashboard_s"], TARGETS["dashboard_seconds"], False)),
    ]  # fmt: skip
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {results['date']}.",
        "",
        f"- **Machine:** {results['machine']}.",
        f"- **Pinning:** the server ran on CPU {SERVER_CPU}, wrk on CPU {LOAD_CPU} "
        f"({'taskset' if pinned(0) else 'no taskset: unpinned'}).",
        f"- **Server:** gunicorn with `gunicorn.conf.py`: one worker, {results['threads']} "
        "threads, and group commit. SQLite ran with "
        "WAL, `synchronous=FULL` and `BEGIN IMMEDIATE`; the benchmark checks these and stops "
        "if any of them is weaker.",
        f"- **Load:** {CONNECTIONS} connections. Each server was warmed up for 3 s, then the "
        f"servers were measured in turn, {results['rounds']} rounds of {results['seconds']} s "
        "each. The table shows the median run, so that the machine's noise falls on every "
        "server alike. Every request to a receiver was a distinct, pre-signed delivery, mixed "
        "over every event and artifact type in `samples/`; the two peers that store nothing "
        "(the floor and the guide's listener) were sent one slice of them again and again.",
        "",
        "![throughput and latency](bench/chart.png)",
        "",
        "| server | requests/s (median) | every round | p50 | p99 | peak RSS "
        "| stored of all 200s |",
        "| --- | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for label, load in (("floor (bare Flask)", floor),
                        ("the guide's listener in Flask (verifies, logs, stores nothing)", guide),
                        ("receiver, empty database", empty),
                        ("receiver, empty database, reconciling (a background pass every "
                         f"{RECONCILE_INTERVAL} s)", results["reconcile"]),
                        ("receiver, 1,000,000 events stored", full),
                        ("receiver with the example rules", rules)):  # fmt: skip
        stored = load.extra.get("stored", "—")
        rounds = ", ".join(f"{r:,.0f}" for r in load.extra["all_rps"])
        lines.append(
            f"| {label} | {load.rps:,.0f} | {rounds} | {load.p50_ms:.2f} ms | "
            f"{load.p99_ms:.2f} ms | {load.rss_mb:.1f} MB | {stored} |"
        )
    lines += [
        "",
        "| measure | result | target | |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        f"The full database held {results['events']:,} events over {results['rooms']:,} rooms "
        f"and 30 days. `rebuild-ledger` rebuilt its ledger in {results['rebuild_s']:.1f} s, and "
        f"`replay` re-ran every event in {results['replay_s']:.1f} s. The report times are "
        "wall times of the whole `flask` command, process start included.",
        "",
        "**Workflows.** The receiver with the example rules (`samples/rules.toml`) queued its "
        "messages in each delivery's transaction and sent them from the same worker: Slack to "
        "a local server that answers at once, the billing app to one that answers after "
        f"{SLOW_DESTINATION_SECONDS:.0f} s. During the runs Slack received "
        f"{results['slack_received']:,} messages and the billing app "
        f"{results['billing_received']:,}; the outbox ended with "
        + ", ".join(f"{n:,} {state}" for state, n in sorted(results["outbox"].items()))
        + ". Every delivery was still answered 200: a slow destination holds only its own "
        "messages.",
    ]
    lines += ["", *reconcile_section(results)]
    lines += ["", *drain_section(results)]
    lines += ["", *express_section(results), "", *latency_section(results)]
    notes = results.get("notes")
    if notes:
        lines += ["", "## Notes", "", notes.strip()]
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def reconcile_section(results: dict) -> list[str]:
    """BENCHMARKS.md's section on reconciliation."""
    return reconcile.report_lines(
        results["empty"],
        results["reconcile"],
        results["reconcile_load"],
        results["history"],
        results.get("history_skipped"),
        TARGETS["reconcile_over_plain"],
        TARGETS["rss_mb"],
    )


def start_reconciling(database_url: str, deliveries_dated: int) -> tuple[reconcile.ApiProcess,
                                                                          Server]:  # fmt: skip
    """The local plugNmeet API (busy) on the load core, and a receiver that reconciles with it
    every RECONCILE_INTERVAL seconds, once its first pass (the 7-day catch-up) has finished."""
    api = reconcile.ApiProcess(
        pinned(LOAD_CPU), KEY, SECRET, "--state", "busy", "--sessions", "300",
        "--bench-ended", str(deliveries_dated - 3600), "--end-every", "3",
    )  # fmt: skip
    try:
        server = start(database_url, None, "receiver-reconcile", PNM_PLUGNMEET_URL=api.url,
                       PNM_RECONCILE_INTERVAL=RECONCILE_INTERVAL)  # fmt: skip
    except BaseException:
        api.stop()
        raise
    return api, server


def history_passes(results: dict, sessions: int, postgres_url: str) -> None:
    """Time a pass over ``sessions`` past sessions missing from an empty ledger, and a second
    pass, on SQLite and (when it answers) on PostgreSQL in a fresh schema."""
    common = (pinned(SERVER_CPU), pinned(LOAD_CPU), KEY, SECRET, sessions)
    say(f"reconcile: a pass over {sessions:,} past sessions, SQLite ...")
    url = f"sqlite:///{OUT / 'history.db'}"
    results["history"] = [reconcile.history_pass(url, "SQLite", service_env(url, 0), *common)]
    if postgres_url == "off":
        results["history_skipped"] = "PostgreSQL was not measured (`--postgres off`)."
        return
    import psycopg

    try:
        psycopg.connect(postgres_url, connect_timeout=3).close()
    except psycopg.Error as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        results["history_skipped"] = f"PostgreSQL was not measured: {reason}."
        return
    say(f"reconcile: a pass over {sessions:,} past sessions, PostgreSQL ...")
    with postgres.fresh_schema(postgres_url) as url:
        results["history"].append(
            reconcile.history_pass(url, "PostgreSQL", service_env(url, 0), *common)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events in the full database")
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=10, help="length of each measured run")
    parser.add_argument("--deliveries", type=int, default=40_000, help="signed deliveries per run")
    parser.add_argument("--rounds", type=int, default=3, help="measured runs per server (median)")
    parser.add_argument("--notes", type=Path, help="a Markdown file appended to BENCHMARKS.md")
    parser.add_argument(
        "--backlog", type=int, default=20_000, help="messages in the outbox the drain sends"
    )
    parser.add_argument(
        "--outbox-load-seconds",
        type=int,
        default=30,
        help="length of the full load the dispatcher sends under",
    )
    parser.add_argument(
        "--only",
        type=parts,
        help="run only these parts: 'reconcile' (with the plain receiver as its peer) and "
        "'outbox' (the drain and the lag under load) each run alone and write "
        "bench/out/<part>.md instead of BENCHMARKS.md; 'express' and 'latency' (either, or "
        "both: 'express,latency') replace only their own sections of BENCHMARKS.md",
    )
    parser.add_argument(
        "--latency-bursts", type=int, default=20, help="end-of-session bursts timed per server"
    )
    parser.add_argument(
        "--history-sessions",
        type=int,
        default=10_000,
        help="past sessions the timed reconciliation pass finds missing",
    )
    parser.add_argument(
        "--postgres",
        default=postgres.DEFAULT_URL,
        help="PostgreSQL for the timed pass (in a fresh schema), or 'off'",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed: apt-get install wrk (Debian/Ubuntu), then retry.")
    if args.only is None or args.only & set(OWN_PARTS):
        require_node()  # before minutes of seeding, not after
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    results: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "seconds": args.seconds,
        "events": args.events,
        "rooms": args.rooms,
        "notes": args.notes.read_text() if args.notes else "",
        "threads": load_server_settings(service_env("", 0)).threads,
    }
    say(f"machine: {results['machine']}")
    if args.only == {"outbox"}:
        slices = Slices(args.deliveries)
        deliveries = OUT / "deliveries.tsv"
        say(f"signing {args.deliveries:,} distinct deliveries ...")
        write_deliveries(deliveries, args.deliveries + 1, 0)
        outbox_drain(results, args, deliveries, slices)
        text = "\n".join(drain_section(results)) + "\n"
        (OUT / "outbox.md").write_text(text)
        (OUT / "outbox.json").write_text(
            json.dumps(
                {k: results[k] for k in ("date", "machine", "drains", "drain_load")}, indent=1
            )
        )
        print(text)
        return
    if args.only and args.only <= set(OWN_PARTS):
        run_own_parts(results, args)
        return
    everything = args.only is None

    rounds = args.rounds
    slices = Slices(args.deliveries)
    deliveries = OUT / "deliveries.tsv"
    receivers = ("empty", "reconcile", "full", "rules") if everything else ("empty", "reconcile")
    # the floor and the guide reuse one slice for all their runs
    count = args.deliveries * (1 + len(receivers) * (rounds + 1) + (1 if everything else 0))
    say(f"signing {count:,} distinct deliveries ...")
    dated = write_deliveries(deliveries, count, 0)

    full_db = OUT / "full.db"
    full_url = f"sqlite:///{full_db}"
    if everything:
        say(f"seeding {args.events:,} events over {args.rooms:,} rooms ...")
        seed(full_db, args.events, args.rooms)
        say("rebuild-ledger ...")
        results["rebuild_s"] = flask(full_url, "rebuild-ledger", "--yes")
        results["rebuild_eps"] = args.events / results["rebuild_s"]
        say("replay ...")
        results["replay_s"] = flask(full_url, "replay")
        results["replay_eps"] = args.events / results["replay_s"]
        say("reports ...")
        results["report_rooms_s"] = flask(full_url, "report", "rooms", "--format", "json")
        results["report_usage_s"] = flask(full_url, "report", "usage", "--format", "json")
    history_passes(results, args.history_sessions, args.postgres)

    empty_db = OUT / "empty.db"
    rules_db = OUT / "rules.db"
    reconcile_db = OUT / "reconcile.db"
    reconcile_url = f"sqlite:///{reconcile_db}"
    check_durability(f"sqlite:///{empty_db}")
    full_before = stored_events(full_db) if everything else 0
    say(
        f"load: {', '.join(receivers)}{', floor, guide' if everything else ''}, {rounds} rounds ..."
    )
    with Sink() as sink:
        servers: dict[str, Server] = {}
        api: reconcile.ApiProcess | None = None
        try:
            if everything:
                servers["floor"] = start(f"sqlite:///{OUT / 'floor.db'}", "bench.floor:app",
                                         "floor")  # fmt: skip
                servers["guide"] = start(f"sqlite:///{OUT / 'guide.db'}", "bench.guide:app",
                                         "guide")  # fmt: skip
                servers["express"] = start_express()
            servers["empty"] = start(f"sqlite:///{empty_db}", None, "receiver-empty")
            api, servers["reconcile"] = start_reconciling(reconcile_url, dated)
            if everything:
                servers["full"] = start(full_url, None, "receiver-full",
                                        PNM_ADMIN_TOKEN=ADMIN_TOKEN)  # fmt: skip
                servers["rules"] = start(f"sqlite:///{rules_db}", None, "receiver-rules",
                                         **rules_env(sink))  # fmt: skip
            say("reconcile: waiting for the reconciling receiver's first pass ...")
            first_pass = reconcile.wait_for_first_pass(reconcile_url)
            # No request has come yet: the busiest thread besides the main one ran that pass.
            pass_thread = servers["reconcile"].busiest_thread()
            for name in receivers:
                check_guards(servers[name])
            before = api.calls()
            loads = measure(
                servers,
                deliveries,
                slices,
                rounds,
                args.seconds,
                floor_slice=slices.take(),
                watch={"reconcile": pass_thread},
            )
            after = api.calls()
            if after["bad_signatures"]:
                raise SystemExit(f"FAILED: the API saw {after['bad_signatures']} bad signatures")
            if everything:
                say("dashboard overview over the full database ...")
                results["dashboard_s"] = time_dashboard(servers["full"])
                results["slack_received"] = len(sink.at("/slack"))
                results["billing_received"] = len(sink.at("/billing"))
        finally:
            for server in servers.values():
                server.stop()
            if api is not None:
                api.stop()
    results.update(loads)
    results["rounds"] = rounds
    check_stored(results["empty"], stored_events(empty_db) - 1)  # minus the guard's event
    check_stored(results["reconcile"], stored_events(reconcile_db) - 1)
    spans = results["reconcile"].extra["spans"]
    calls = reconcile.calls_between(before, after)
    load = reconcile.during_load(reconcile_url, first_pass, spans, calls)
    load.api = {**api.held, **after}
    results["reconcile_load"] = load
    if not load.during:
        raise SystemExit("FAILED: no reconciliation pass ran while the reconciling receiver was "
                         "measured (raise --seconds)")  # fmt: skip
    if not everything:
        text = "\n".join(reconcile_section(results)) + "\n"
        (OUT / "reconcile.md").write_text(text)
        print(text)
        return
    results["outbox"] = outbox_states(rules_db)
    check_stored(results["full"], stored_events(full_db) - full_before - 1)
    check_stored(results["rules"], stored_events(rules_db) - 1)
    outbox_drain(results, args, deliveries, slices)

    latency_part(results, args.latency_bursts)
    chart(results, ROOT / "bench" / "chart.png")
    print(write_report(results, ROOT / "BENCHMARKS.md"))


if __name__ == "__main__":
    main()
