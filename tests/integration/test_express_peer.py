"""The bench's Express peer (the public guide's listener) accepts a real delivery.

It starts `node bench/express/listener.js` on a free port. Node.js is not something CI
installs (.ci/run installs Chromium, systemd and Pango only): without node and npm, or
without the npm registry to install the listener's pinned packages, these tests skip and
say why.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from bench import node_peer
from tests.support.helpers import KEY, SECRET, corpus
from validation import sign


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def listener(tmp_path_factory) -> Iterator[int]:
    try:
        node_peer.ensure_installed(say=lambda _: None)
    except (node_peer.NodeMissing, OSError) as exc:
        pytest.skip(f"the Express peer cannot run here: {exc}")
    port = _free_port()
    log = tmp_path_factory.mktemp("express") / "listener.log"
    process = node_peer.start([], port, SECRET, log, say=lambda _: None)
    try:
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _post(port: int, body: bytes, token: str, content_type: str = "application/json") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": content_type, "Authorization": token, "Hash-Token": token}
        connection.request("POST", "/webhook-listener", body, headers)
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


@pytest.mark.parametrize(
    "name", ["session_ended", "participant_left", "artifact_created_meeting_summary"]
)
def test_it_accepts_a_real_delivery_signed_as_plugnmeet_signs_it(listener, name):
    body = corpus(name)  # application/json and a base64 sha256 claim, as real servers send
    assert _post(listener, body, sign(body, KEY, SECRET)) == 200


def test_it_still_accepts_what_the_guide_expected(listener):
    body = corpus("room_finished")
    token = sign(body, KEY, SECRET, digest_format="hex")
    assert _post(listener, body, token, "application/webhook+json") == 200


def test_it_refuses_a_bad_signature(listener):
    body = corpus("session_ended")
    assert _post(listener, body, sign(body, KEY, SECRET[::-1])) == 401
    assert _post(listener, body + b" ", sign(body, KEY, SECRET)) == 401
