"""Log lines: text by default, one JSON object per line when asked; never a secret."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest

import app as receiver
import handlers
from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.logs import configure_logging
from tests.support.helpers import SECRET, corpus, deliver

BODY = corpus("session_ended")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger, put back as it was after the test."""
    root = logging.getLogger()
    handlers_before, level_before = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers_before
    root.setLevel(level_before)


def _deliver_with(settings, *tokens: str | None) -> None:
    app = create_app(settings)
    try:
        for token in tokens:
            deliver(app.test_client(), BODY, token=token)
    finally:
        runtime.of(app).close()


def test_json_format_writes_one_object_per_line(settings, capsys, root_logger):
    json_settings = replace(settings, log_format="json")
    configure_logging(json_settings)
    _deliver_with(json_settings, None, "forged.token.value")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    success = [x for x in lines if x["message"].startswith("SUCCESS")]
    assert success[0]["level"] == "INFO" and success[0]["logger"] == handlers.log.name
    [rejected] = [x for x in lines if x["level"] == "WARNING"]
    assert rejected["logger"] == receiver.log.name
    assert rejected["message"].startswith("rejected delivery from 127.0.0.1: ")
    assert "forged.token.value" not in json.dumps(lines)
    assert SECRET not in json.dumps(lines)


def test_text_format_is_the_default(settings, capsys, root_logger):
    configure_logging(settings)
    _deliver_with(settings, None)
    err = capsys.readouterr().err
    assert " INFO [handlers] SUCCESS: Room 'weekly-standup' lasted for 43 minutes." in err


def test_configuring_twice_does_not_double_the_log_lines(settings, capsys, root_logger):
    for _ in range(2):
        configure_logging(settings)
    receiver.log.warning("once")
    assert capsys.readouterr().err.count("once") == 1


def test_making_an_app_leaves_logging_alone(settings, root_logger):
    before = (list(root_logger.handlers), root_logger.level)
    app = create_app(replace(settings, log_format="json", log_level="DEBUG"))
    runtime.of(app).close()
    assert (list(root_logger.handlers), root_logger.level) == before


def test_under_any_other_server_the_first_request_sets_logging_up(settings, root_logger):
    root_logger.handlers[:] = []  # as under 'flask run': nobody has set logging up
    app = create_app(settings)
    try:
        app.test_client().get("/healthz")
    finally:
        runtime.of(app).close()
    assert [h for h in root_logger.handlers if getattr(h, "_pnm_handler", False)]
    assert root_logger.level == logging.INFO


def test_no_destination_secret_reaches_the_log_even_at_debug(settings, capsys, root_logger):
    import urllib3

    from plugnmeet_webhooks.storage.outbox import Claimed
    from plugnmeet_webhooks.workflows import kinds
    from plugnmeet_webhooks.workflows.dispatcher import send
    from plugnmeet_webhooks.workflows.rules import Destination
    from tests.support.sink import Sink

    configure_logging(replace(settings, log_level="DEBUG"))
    path = "/services/T0/B0/path-secret-123?token=query-secret-456"
    with Sink() as slack:
        destination = Destination(name="ops", kind=kinds.registry.get("slack"), url=slack.url(path))
        claimed = Claimed(1, "msg_1", "ops", b"{}", 1, 0, 0.0, None, "t")
        assert send(urllib3.PoolManager(), destination, claimed).sent
        slack.wait_for(path, 1)
    logging.getLogger("test").debug("debug lines are on")
    err = capsys.readouterr().err
    assert "debug lines are on" in err
    assert "path-secret-123" not in err and "query-secret-456" not in err
