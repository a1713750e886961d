"""Log lines: text by default, one JSON object per line when asked; never a secret."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

from app import create_app
from tests.support.helpers import CORPUS, SECRET, deliver

BODY = CORPUS[16].read_bytes()


def test_json_format_writes_one_object_per_line(settings, capsys):
    app = create_app(replace(settings, log_format="json"))
    client = app.test_client()
    try:
        deliver(client, BODY)
        deliver(client, BODY, token="forged.token.value")
    finally:
        app.extensions["pnm"].close()
        logging.getLogger().handlers = [
            h for h in logging.getLogger().handlers if not getattr(h, "_pnm_handler", False)
        ]

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    success = [x for x in lines if x["message"].startswith("SUCCESS")]
    assert success[0]["level"] == "INFO" and success[0]["logger"] == "handlers"
    [rejected] = [x for x in lines if x["level"] == "WARNING"]
    assert rejected["logger"] == "app"
    assert rejected["message"].startswith("rejected delivery from 127.0.0.1: ")
    assert "forged.token.value" not in json.dumps(lines)
    assert SECRET not in json.dumps(lines)


def test_text_format_is_the_default(settings, capsys):
    app = create_app(settings)
    try:
        deliver(app.test_client(), BODY)
    finally:
        app.extensions["pnm"].close()
    err = capsys.readouterr().err
    assert " INFO [handlers] SUCCESS: Room 'weekly-standup' lasted for 43 minutes." in err


def test_creating_the_app_twice_does_not_double_the_log_lines(settings, capsys):
    for _ in range(2):
        app = create_app(settings)
        app.extensions["pnm"].close()
    logging.getLogger("app").warning("once")
    assert capsys.readouterr().err.count("once") == 1
