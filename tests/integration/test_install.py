"""``pip install .`` into a fresh virtualenv gives a working ``flask --app app``."""

from __future__ import annotations

import os
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.support.helpers import KEY, ROOT, SECRET

pytestmark = pytest.mark.slow


SOURCES = (
    "pyproject.toml",
    "README.md",
    "requirements.txt",
    "requirements-dev.txt",
    "requirements-bench.txt",
    "app.py",
    "config.py",
    "validation.py",
    "handlers.py",
)


def _source_copy(where: Path) -> Path:
    """Copy what a source distribution holds, so that building leaves the checkout alone."""
    for name in SOURCES:
        shutil.copy2(ROOT / name, where / name)
    shutil.copytree(
        ROOT / "plugnmeet_webhooks",
        where / "plugnmeet_webhooks",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return where


def test_pip_install_into_a_fresh_virtualenv_gives_the_commands(tmp_path):
    (tmp_path / "source").mkdir()
    source = _source_copy(tmp_path / "source")
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PNM_")}
    env |= {"PNM_API_KEY": KEY, "PNM_API_SECRET": SECRET}
    env["PNM_DATABASE_URL"] = f"sqlite:///{tmp_path / 'never' / 'made.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # From the checkout, as the README runs it, and from a folder with no source at all.
    for cwd in (ROOT, elsewhere):
        result = subprocess.run(
            [target / "bin" / "flask", "--app", "app", "--help"],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        for command in ("db", "events", "rebuild-ledger", "replay", "report", "send", "sign"):
            assert f"  {command} " in result.stdout, (command, result.stdout)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "never").exists(), "--help must not open the database"
    # The installed copy, not the checkout, answered from elsewhere.
    where = subprocess.run(
        [python, "-c", "import app, plugnmeet_webhooks; print(app.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(target) in where.stdout, where.stdout
    # Installed, the default database is under the working directory, not site-packages.
    default_env = {k: v for k, v in env.items() if k != "PNM_DATABASE_URL"}
    upgraded = subprocess.run(
        [target / "bin" / "flask", "--app", "app", "db", "upgrade"],
        cwd=elsewhere,
        env=default_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert (elsewhere / "instance" / "plugnmeet-webhooks.db").is_file()
    assert not list(target.rglob("site-packages/instance"))
