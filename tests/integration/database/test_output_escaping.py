"""What the commands print cannot act: no formula in a CSV cell, no terminal control in a table."""

from __future__ import annotations

import json

from tests.support.helpers import changed_body, corpus_json, deliver

JOINED = corpus_json("participant_joined")
SESSION_ENDED = corpus_json("session_ended")


def test_csv_cells_cannot_be_formulas(app, client, runner):
    titled = changed_body(
        SESSION_ENDED, room__metadata=json.dumps({"room_title": '=HYPERLINK("http://x")'})
    )
    assert deliver(client, titled).status == 200
    result = runner.invoke(args=["report", "sessions", "--format", "csv"])
    assert result.exit_code == 0, result.output
    import csv
    import io

    [row] = list(csv.DictReader(io.StringIO(result.output)))
    assert row["title"] == '\'=HYPERLINK("http://x")'


def test_table_output_escapes_what_a_terminal_would_act_on(app, client, runner):
    forged = changed_body(JOINED, id="forged", room__room_id="r\n9  2026  forged\x1b[2J")
    assert deliver(client, forged).status == 200
    result = runner.invoke(args=["events"])
    assert "\x1b" not in result.output
    assert len(result.output.splitlines()) == 2  # the header and one row, no forged row
    assert "r\\n9  2026  forged\\x1b[2J" in result.output
