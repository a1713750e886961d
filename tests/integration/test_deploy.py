"""deploy/: the systemd units pass systemd-analyze, and deploy/install.sh installs a receiver
that, started exactly as its installed unit says (socket from systemd, environment file,
credential), answers a signed delivery and stops cleanly."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from plugnmeet_webhooks.cli.deliveries import post
from tests.support.gunicorn_server import wait_for_workers, worker_pids
from tests.support.helpers import ROOT, corpus
from tests.support.socket_activation import address, held_socket, spawn_with_socket
from tests.unit.test_config import PLUGNMEET_YAML
from validation import sign

pytestmark = pytest.mark.slow

DEPLOY = ROOT / "deploy"
INSTALL = DEPLOY / "install.sh"
SOCKET = "plugnmeet-webhooks.socket"
SERVICE = "plugnmeet-webhooks.service"
DROP_IN = f"{SERVICE}.d/plugnmeet-config.conf"
SHIPPED_PREFIX = "/opt/plugNmeet/webhooks"
# The key pair of PLUGNMEET_YAML, as plugNmeet's installer writes it.
PNM_KEY = "plugnmeet"
PNM_SECRET = "zumyyYWqv7KR2kUqvYdq4z4sXg7XTBD2ljT6"
# What systemd gives a system service before Environment= and EnvironmentFile=.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)
# Lines systemd-analyze verify may print for units that are right. None so far: with
# systemd 252 the shipped and the installed units verify without a word.
ACCEPTED_VERIFY_LINES: tuple[re.Pattern[str], ...] = ()


@dataclass
class Verified:
    returncode: int
    lines: list[str]

    @property
    def unexpected(self) -> list[str]:
        return [
            line for line in self.lines if not any(p.search(line) for p in ACCEPTED_VERIFY_LINES)
        ]


def verify(*units: str | Path, root: Path | None = None) -> Verified:
    argv = [SYSTEMD_ANALYZE or "systemd-analyze", "verify", "--man=no"]
    if root is not None:
        argv.append(f"--root={root}")
    result = subprocess.run([*argv, *map(str, units)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return Verified(result.returncode, [line for line in lines if line.strip()])


def systemd_unit_dir() -> Path:
    """The host's packaged units (sysinit.target, sockets.target, …)."""
    for candidate in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(candidate, "sockets.target").is_file():
            return Path(candidate)
    pytest.fail("systemd-analyze is installed but its units (sockets.target) are not")


def shipped_root(tmp_path: Path) -> Path:
    """A file system root holding the shipped units as installed at their own paths, and
    stand-ins for the programs they start, which do not exist on a test machine."""
    root = tmp_path / "root"
    shutil.copytree(systemd_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    units = root / "etc/systemd/system"
    units.mkdir(parents=True)
    for name in (SOCKET, SERVICE, DROP_IN):
        (units / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEPLOY / name, units / name)
    for program in ("bin/kill", f"{SHIPPED_PREFIX[1:]}/venv/bin/gunicorn"):
        stand_in = root / program
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\n")
        stand_in.chmod(0o755)
    return root


# --- The units -----------------------------------------------------------------------------


@needs_systemd_analyze
def test_the_shipped_units_pass_systemd_analyze_verify(tmp_path):
    root = shipped_root(tmp_path)
    result = verify(SOCKET, SERVICE, root=root)
    assert result.returncode == 0, result.lines
    assert result.unexpected == []
    # The stand-in is what made it pass: the units name it.
    text = (root / "etc/systemd/system" / SERVICE).read_text()
    assert f"ExecStart={SHIPPED_PREFIX}/venv/bin/gunicorn -c gunicorn.conf.py" in text


@needs_systemd_analyze
@pytest.mark.parametrize(
    ("name", "break_it", "reported"),
    [
        (DROP_IN, lambda t: t + "LoadCredentials=x:/y\n", "Unknown key 'LoadCredentials'"),
        (SERVICE, lambda t: t.replace("Type=notify", "Type=notfy"), "service type"),
        (
            SOCKET,
            lambda t: t.replace("ListenStream=127.0.0.1:8000", "ListenStream=127.0.0.1:80000"),
            "ListenStream",
        ),
        (SERVICE, None, "is not executable"),
    ],
    ids=["unknown-directive", "bad-value", "bad-address", "missing-executable"],
)
def test_a_mistake_in_a_unit_is_reported(tmp_path, name, break_it, reported):
    root = shipped_root(tmp_path)
    if break_it is None:
        (root / SHIPPED_PREFIX[1:] / "venv/bin/gunicorn").unlink()
    else:
        unit = root / "etc/systemd/system" / name
        broken = break_it(unit.read_text())
        assert broken != unit.read_text()
        unit.write_text(broken)
    result = verify(SOCKET, SERVICE, root=root)
    assert result.unexpected, "the mistake went unreported"
    assert any(reported in line for line in result.unexpected), result.lines


# --- The install script --------------------------------------------------------------------


@dataclass
class Install:
    prefix: Path
    unit_dir: Path
    state_dir: Path
    plugnmeet_config: Path
    output: str

    def run(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_install(
            "--prefix", self.prefix, "--unit-dir", self.unit_dir, "--state-dir",
            self.state_dir, "--plugnmeet-config", self.plugnmeet_config, *extra,
        )  # fmt: skip


def run_install(*args: str | Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(INSTALL), "--no-user", "--no-systemctl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Install:
    """One installation into a temporary prefix, as an operator would run it."""
    base = tmp_path_factory.mktemp("deploy")
    config = base / "plugNmeet" / "config.yaml"
    config.parent.mkdir()
    config.write_text(PLUGNMEET_YAML)
    install = Install(base / "webhooks", base / "units", base / "state", config, "")
    result = install.run()
    assert result.returncode == 0, result.stdout + result.stderr
    install.output = result.stdout
    return install


def unit_settings(*files: Path) -> dict[str, list[str]]:
    """Every NAME=value of the [Service] or [Socket] sections, in order, drop-ins last."""
    found: dict[str, list[str]] = {}
    for file in files:
        section = ""
        for raw in file.read_text().splitlines():
            line = raw.strip()
            if line.startswith("["):
                section = line
            elif section in ("[Service]", "[Socket]") and "=" in line and line[0] not in "#;":
                name, value = line.split("=", 1)
                found.setdefault(name, []).append(value)
    return found


def environment_file(path: Path) -> dict[str, str]:
    """Read an EnvironmentFile= as systemd does: NAME=value lines, quotes taken off."""
    env = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and line[0] not in "#;" and "=" in line:
            name, value = line.split("=", 1)
            env[name.strip()] = " ".join(shlex.split(value)) if value.strip() else ""
    return env


def test_the_installed_units_pass_systemd_analyze_verify(installed):
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    units = installed.unit_dir
    result = verify(units / SOCKET, units / SERVICE)
    assert result.returncode == 0, result.lines
    assert result.unexpected == []
    service = (units / SERVICE).read_text()
    assert SHIPPED_PREFIX not in service
    assert f"ExecStart={installed.prefix}/venv/bin/gunicorn -c gunicorn.conf.py" in service
    assert f"ReadWritePaths={installed.state_dir}" in service  # not under /var/lib
    drop_in = (units / DROP_IN).read_text()
    assert f"LoadCredential=plugnmeet-config.yaml:{installed.plugnmeet_config}\n" in drop_in


@dataclass
class Running:
    """The installed service, started as its unit says, on a socket held by the test."""

    process: subprocess.Popen
    base_url: str
    env: dict[str, str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def started_as_its_unit_says(installed: Install, tmp_path: Path) -> Iterator[Running]:
    """Start the service from ExecStart, WorkingDirectory, Environment= and EnvironmentFile=
    of its installed unit, with what systemd would make first: the credential's private copy
    (%d), the runtime folder (%t), and the held socket as fd 3. SIGTERM it at the end."""
    units = installed.unit_dir
    unit = unit_settings(units / SERVICE, units / DROP_IN)
    [exec_start] = unit["ExecStart"]
    [working_directory] = unit["WorkingDirectory"]
    [environment_file_path] = unit["EnvironmentFile"]
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for credential in unit["LoadCredential"]:
        name, source = credential.split(":", 1)
        shutil.copy(source, credentials / name)
    runtime_root = tmp_path / "run"
    for folder in unit["RuntimeDirectory"]:
        (runtime_root / folder).mkdir(parents=True)
    specifiers = {"%d": str(credentials), "%t": str(runtime_root)}
    env = {"PATH": SYSTEMD_PATH, "CREDENTIALS_DIRECTORY": str(credentials)}
    for assignment in unit["Environment"]:
        name, value = assignment.split("=", 1)
        for specifier, meaning in specifiers.items():
            value = value.replace(specifier, meaning)
        env[name] = value
    env |= environment_file(Path(environment_file_path))  # EnvironmentFile= wins
    assert env["PNM_PLUGNMEET_CONFIG"] == str(credentials / "plugnmeet-config.yaml")
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(runtime_root / "plugnmeet-webhooks")

    log_path = tmp_path / "service.log"
    with held_socket() as listener:
        host, port = address(listener)
        process = spawn_with_socket(
            shlex.split(exec_start), listener, env=env, cwd=working_directory, log_path=log_path
        )
        running = Running(process, f"http://{host}:{port}", env, log_path)
        try:
            wait_for_workers(process.pid, 2)  # WEB_CONCURRENCY's default
            yield running
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise
        assert process.returncode == 0, running.log()
        # The socket came from "systemd": gunicorn listened where it was told, not on PORT.
        assert f"Listening at: http://{host}:{port}" in running.log()
        assert PNM_SECRET not in running.log()


def deliver(running: Running, body: bytes, secret: str = PNM_SECRET) -> tuple[int, str]:
    status, text = post(f"{running.base_url}/webhook-listener", body, sign(body, PNM_KEY, secret))
    return status, json.loads(text)["status"]


def health(running: Running) -> str:
    with urllib.request.urlopen(f"{running.base_url}/healthz", timeout=10) as response:
        return json.loads(response.read())["status"]


def test_the_installed_service_answers_a_signed_delivery_and_stops_cleanly(installed, tmp_path):
    with started_as_its_unit_says(installed, tmp_path) as running:
        database = Path(running.env["PNM_DATABASE_URL"].removeprefix("sqlite:///"))
        assert database.parent == installed.state_dir
        body = corpus("room_created")
        assert deliver(running, body) == (200, "accepted")
        assert deliver(running, body) == (200, "duplicate")
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT count(*) FROM events").fetchone() == (1,)
        assert deliver(running, body, secret="x" * len(PNM_SECRET))[0] == 403


def test_an_upgrade_then_a_reload_brings_new_workers_running_the_new_copy(installed, tmp_path):
    ops = installed.prefix / "app" / "plugnmeet_webhooks" / "web" / "ops.py"
    older = ops.read_text().replace('jsonify(status="ok")', 'jsonify(status="older")')
    assert older != ops.read_text()
    ops.write_text(older)
    with started_as_its_unit_says(installed, tmp_path) as running:
        assert health(running) == "older"
        old_workers = set(wait_for_workers(running.process.pid, 2))
        result = installed.run()
        assert result.returncode == 0, result.stdout + result.stderr
        # Only a module the workers load changed: a reload is enough.
        assert "systemctl reload plugnmeet-webhooks.service\n" in result.stdout
        running.process.send_signal(signal.SIGHUP)  # ExecReload=
        deadline = time.monotonic() + 30
        while set(worker_pids(running.process.pid)) & old_workers:
            assert time.monotonic() < deadline, "the old workers did not stop"
            time.sleep(0.1)
        wait_for_workers(running.process.pid, 2)
        assert health(running) == "ok"
        assert deliver(running, corpus("room_started"))[0] == 200


def test_the_installer_prints_plugnmeets_webhook_conf(installed):
    expected = (
        "  client:\n"
        "    webhook_conf:\n"
        "      enable: true\n"
        '      url: "http://127.0.0.1:8000/webhook-listener"\n'
        "      enable_for_per_meeting: false\n"
    )
    assert expected in installed.output
    assert PNM_SECRET not in installed.output
    assert "curl -s http://127.0.0.1:8000/readyz" in installed.output  # how to check it
    assert installed.plugnmeet_config.read_text() == PLUGNMEET_YAML  # never edited


def test_running_it_again_upgrades_and_keeps_the_environment_file(installed):
    env_file = installed.prefix / "webhooks.env"
    app = installed.prefix / "app"
    assert env_file.stat().st_mode & 0o777 == 0o640
    operators_edit = "\n# an operator's own setting\nPNM_LOG_LEVEL=DEBUG\n"
    env_file.write_text(env_file.read_text() + operators_edit)
    settings_before = env_file.read_text()
    # A stale copy: a changed module, a file the checkout no longer has.
    (app / "app.py").write_text("# an older version\n")
    (app / "config.py").write_text("# an older version\n")
    (app / "stale.py").write_text("")
    # The operator moved the socket with a drop-in, as its comment says.
    socket_drop_in = installed.unit_dir / f"{SOCKET}.d" / "address.conf"
    socket_drop_in.parent.mkdir()
    socket_drop_in.write_text("[Socket]\nListenStream=\nListenStream=127.0.0.1:8765\n")
    try:
        result = installed.run()
        assert result.returncode == 0, result.stdout + result.stderr
        assert env_file.read_text() == settings_before
        assert f"Keeping {env_file}" in result.stdout
        for name in ("app.py", "config.py", "plugnmeet_webhooks/serving.py"):
            assert (app / name).read_bytes() == (ROOT / name).read_bytes(), name
        assert not (app / "stale.py").exists()
        assert not (installed.prefix / "app.new").exists()
        # config.py is loaded by gunicorn's master: a reload would not pick it up.
        assert "systemctl restart plugnmeet-webhooks.service   # config.py changed" in (
            result.stdout
        )
        assert 'url: "http://127.0.0.1:8765/webhook-listener"' in result.stdout
        # Nothing changed since: the new code only needs new workers.
        again = installed.run()
        assert again.returncode == 0, again.stdout + again.stderr
        assert "systemctl reload plugnmeet-webhooks.service\n" in again.stdout
        assert "systemctl restart plugnmeet-webhooks.service" not in again.stdout
        assert "(unchanged)" in again.stdout
        # A new migration: the schema must be upgraded before the new code serves.
        versions = app / "plugnmeet_webhooks" / "storage" / "migrations" / "versions"
        max(versions.glob("0*.py")).unlink()
        migrated = installed.run()
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert "the new version changes the database schema: Run 'flask --app app db upgrade'" in (
            migrated.stdout
        )
        assert "systemctl reload plugnmeet-webhooks.service" not in migrated.stdout
    finally:
        socket_drop_in.unlink()
        socket_drop_in.parent.rmdir()


# --- What it refuses, in one sentence ------------------------------------------------------


def test_without_python_3_11_it_says_what_to_install(tmp_path):
    old = tmp_path / "bin"
    old.mkdir()
    for name in ("python3.11", "python3"):  # both too old: they fail the version check
        (old / name).write_text("#!/bin/sh\nexit 1\n")
        (old / name).chmod(0o755)
    env = os.environ | {"PATH": f"{old}:/usr/bin:/bin"}
    result = run_install("--prefix", tmp_path / "webhooks", "--unit-dir", tmp_path, env=env)
    assert result.returncode == 1
    assert "error: Python 3.11 or newer is needed" in result.stderr
    assert "--python /path/to/python3.11" in result.stderr
    assert not (tmp_path / "webhooks").exists()  # nothing was changed


@pytest.mark.parametrize(
    ("option", "value", "sentence"),
    [
        ("--prefix", "file", "is a file, not a folder; remove it or pass another --prefix."),
        ("--prefix", "relative/path", "--prefix must be an absolute path"),
        ("--state-dir", "with space", "has a space or another character"),
    ],
)
def test_a_wrong_folder_is_refused_with_a_sentence(tmp_path, option, value, sentence):
    (tmp_path / "file").write_text("")
    path = value if value.startswith("relative") else str(tmp_path / value)
    args = ["--prefix", str(tmp_path / "webhooks"), "--unit-dir", str(tmp_path / "units")]
    result = run_install(*args, option, path)
    assert result.returncode == 1
    assert sentence in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "units").exists()


def test_without_plugnmeets_config_it_installs_but_says_the_key_pair_is_missing(
    tmp_path, installed
):
    # A virtualenv that works is kept (and pip finds nothing to do): a copy saves the time.
    shutil.copytree(installed.prefix / "venv", tmp_path / "webhooks" / "venv", symlinks=True)
    result = run_install(
        "--prefix", tmp_path / "webhooks", "--unit-dir", tmp_path / "units",
        "--state-dir", tmp_path / "state", "--plugnmeet-config", tmp_path / "absent.yaml",
    )  # fmt: skip
    assert result.returncode == 1
    assert "PNM_API_KEY is not set" in result.stdout
    assert "installed, but not started" in result.stderr
    env_file = (tmp_path / "webhooks" / "webhooks.env").read_text()
    assert "#PNM_API_KEY=" in env_file and "#PNM_API_SECRET=" in env_file
    assert not (tmp_path / "units" / DROP_IN).exists()
    assert (tmp_path / "webhooks" / "venv" / "bin" / "gunicorn").is_file()
