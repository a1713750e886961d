"""The runtime: a schema check that does not hold every request, a schema from the future."""

from __future__ import annotations

import socket
import threading
from dataclasses import replace

from app import create_app
from plugnmeet_webhooks import runtime
from plugnmeet_webhooks.storage.engine import write_transaction
from tests.support.helpers import corpus, corpus_bodies, deliver


class _Silent:
    """A TCP server that takes connections and never says a word (a hung database)."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.listener.close()
        for conn in self.accepted:
            conn.close()


def test_while_the_database_hangs_one_request_at_a_time_checks_the_schema(settings):
    silent = _Silent()
    hung = f"postgresql://nobody@127.0.0.1:{silent.port}/none"
    app = create_app(replace(settings, database_url=hung, db_timeout=2.0))
    answers: list[int] = []
    barrier = threading.Barrier(6)

    def send(body: bytes) -> None:
        barrier.wait()
        answers.append(deliver(app.test_client(), body).status)

    threads = [threading.Thread(target=send, args=(body,)) for body in corpus_bodies()[:6]]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        runtime.of(app).close()
        silent.close()
    assert answers == [503] * 6
    # The others did not each wait for their own connection attempt in turn.
    assert len(silent.accepted) <= 2, len(silent.accepted)


def test_a_schema_made_by_a_newer_version_is_named_as_such(app, client, caplog):
    with write_transaction(runtime.of(app).database()) as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    fresh = create_app(runtime.of(app).settings)
    try:
        assert deliver(fresh.test_client(), corpus("room_created")).status == 503
        assert fresh.test_client().get("/readyz").json == {
            "status": "unavailable",
            "reason": "schema",
        }
    finally:
        runtime.of(fresh).close()
    assert "at revision 9999, which this version (0010) does not know" in caplog.text
    assert "run that version, or restore a backup" in caplog.text
