"""Every way a delivery is refused: the exact status, nothing stored, never a 500."""

from __future__ import annotations

import json
import time

import pytest

from plugnmeet_webhooks import runtime
from tests.support.helpers import (
    DROP,
    KEY,
    OTHER_SECRET,
    PATH,
    SECRET,
    assert_rejection_logged,
    b64url,
    corpus,
    deliver,
    forge,
    good_claims,
    ledger_snapshot,
    stored_count,
    stored_rows,
)
from validation import sign

BODY = corpus("room_created")
HS256 = {"alg": "HS256", "typ": "JWT"}
NOW = int(time.time())


def _claims(**overrides):
    return good_claims(BODY, **overrides)


FORBIDDEN_TOKENS = {
    "wrong secret": lambda: sign(BODY, KEY, OTHER_SECRET),
    "unknown iss": lambda: forge(HS256, _claims(iss="someone-else")),
    "iss missing": lambda: forge(HS256, _claims(iss=DROP)),
    "iss not a string": lambda: forge(HS256, _claims(iss=123)),
    "iss a list": lambda: forge(HS256, _claims(iss=[KEY])),
    "alg none": lambda: b64url(b'{"alg":"none"}') + "." + b64url(b"{}") + ".",
    "alg none with claims": lambda: forge({"alg": "none"}, _claims()).rsplit(".", 1)[0] + ".",
    "alg HS384": lambda: forge({"alg": "HS384"}, _claims()),
    "alg RS256": lambda: forge({"alg": "RS256"}, _claims()),
    "alg missing": lambda: forge({"typ": "JWT"}, _claims()),
    "expired": lambda: sign(BODY, KEY, SECRET, now=NOW - 900),
    "not yet valid": lambda: forge(HS256, _claims(nbf=NOW + 900, exp=NOW + 1200)),
    "exp missing": lambda: forge(HS256, _claims(exp=DROP)),
    "exp a list": lambda: forge(HS256, _claims(exp=[NOW + 300])),
    "exp a string": lambda: forge(HS256, _claims(exp="soon")),
    "exp a numeric string": lambda: forge(HS256, _claims(exp=str(NOW + 300))),
    "exp true": lambda: forge(HS256, _claims(exp=True)),
    "nbf a numeric string": lambda: forge(HS256, _claims(nbf=str(NOW))),
    "iat a numeric string": lambda: forge(HS256, _claims(iat=str(NOW))),
    "exp null": lambda: forge(HS256, _claims(exp=None)),
    "exp absurd float": lambda: forge(HS256, b'{"iss":"plugnmeet","exp":1e999}'),
    "exp huge integer": lambda: forge(HS256, _claims(exp=10**400)),
    "exp NaN": lambda: forge(HS256, json.dumps(_claims(exp=float("nan"))).encode()),
    "exp Infinity": lambda: forge(HS256, json.dumps(_claims(exp=float("inf"))).encode()),
    "iat in the future": lambda: forge(HS256, _claims(iat=NOW + 900)),
    "exp a year away": lambda: forge(HS256, _claims(exp=NOW + 365 * 86400)),
    "nbf an object": lambda: forge(HS256, _claims(nbf={"a": 1})),
    "iat a list": lambda: forge(HS256, _claims(iat=[1])),
    "sha256 missing": lambda: forge(HS256, _claims(sha256=DROP)),
    "sha256 a number": lambda: forge(HS256, _claims(sha256=12345)),
    "sha256 a list": lambda: forge(HS256, _claims(sha256=["x"])),
    "sha256 of another body": lambda: sign(b"{}", KEY, SECRET),
    "sha256 garbage": lambda: forge(HS256, _claims(sha256="!!not-a-digest!!")),
    "header nested 1000 levels": lambda: forge(
        b'{"alg":"HS256","x":' + b"[" * 1000 + b"]" * 1000 + b"}", _claims()
    ),
    "claims nested 1000 levels": lambda: forge(
        HS256, b'{"iss":"plugnmeet","x":' + b"[" * 1000 + b"]" * 1000 + b"}"
    ),
    "header an array": lambda: forge(b"[1,2]", _claims()),
    "claims an array": lambda: forge(HS256, b"[1,2]"),
    "header not JSON": lambda: forge(b"{nope", _claims()),
    "crit header": lambda: forge({"alg": "HS256", "crit": ["exp"]}, _claims()),
    "kid a list": lambda: forge({"alg": "HS256", "kid": [1]}, _claims()),
    "two segments": lambda: "abc.def",
    "garbage": lambda: "not a token at all",
    "bad base64": lambda: "@@@.@@@.@@@",
    "signature stripped": lambda: sign(BODY, KEY, SECRET).rsplit(".", 1)[0] + ".",
    "signature swapped": lambda: (
        sign(BODY, KEY, SECRET).rsplit(".", 1)[0] + "." + sign(b"{}", KEY, SECRET).rsplit(".", 1)[1]
    ),
    "token too long": lambda: forge(HS256, _claims(pad="x" * 10_000)),
    "non-ASCII token": lambda: "é.é.é",
}


@pytest.mark.parametrize("name", FORBIDDEN_TOKENS, ids=list(FORBIDDEN_TOKENS))
def test_failed_check_is_403_and_stores_nothing(app, client, caplog, name):
    caplog.set_level("WARNING")
    token = FORBIDDEN_TOKENS[name]()

    answer = deliver(client, BODY, token=token)

    assert answer.status == 403
    assert answer.json == {"status": "forbidden"}
    assert stored_count(app) == 0
    assert_rejection_logged(caplog, 403, token)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": ""}, {"Authorization": "Bearer "}, {"Hash-Token": "  "}],
    ids=["no headers", "empty Authorization", "bare Bearer", "blank Hash-Token"],
)
def test_missing_token_is_401_and_stores_nothing(app, client, caplog, headers):
    answer = deliver(client, BODY, headers=headers)
    assert answer.status == 401
    assert answer.json == {"status": "unauthorized"}
    assert stored_count(app) == 0
    assert_rejection_logged(caplog, 401)


def test_body_over_the_limit_is_413_and_stores_nothing(app, client, caplog):
    body = b'{"event":"room_started","pad":"' + b"x" * (64 * 1024) + b'"}'
    answer = deliver(client, body)
    assert answer.status == 413
    assert answer.json == {"status": "request_entity_too_large"}
    assert stored_count(app) == 0
    assert_rejection_logged(caplog, 413)


def test_body_of_exactly_the_limit_is_accepted(app, client):
    head, tail = b'{"event":"room_started","id":"full","pad":"', b'"}'
    body = head + b"x" * (64 * 1024 - len(head) - len(tail)) + tail
    assert len(body) == runtime.of(app).settings.max_body_bytes
    assert deliver(client, body).status == 200
    assert deliver(client, body + b" ").status == 413


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonp",
        "application/json-patch+json",
    ],
)
def test_other_content_types_are_415_and_store_nothing(app, client, caplog, content_type):
    answer = deliver(client, BODY, content_type=content_type)
    assert answer.status == 415
    assert answer.json == {"status": "unsupported_media_type"}
    assert stored_count(app) == 0
    assert_rejection_logged(caplog, 415)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/webhook+json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/webhook+json;charset=UTF-8",
    ],
)
def test_both_json_content_types_with_parameters_are_accepted(app, client, content_type):
    assert deliver(client, BODY, content_type=content_type).status == 200
    assert stored_count(app) == 1


NOT_AN_EVENT = {
    "not JSON": b"event=room_started",
    "empty body": b"",
    "bad UTF-8": b'{"event":"room_started","x":"\xff\xfe"}',
    "UTF-16": '{"event":"room_started"}'.encode("utf-16"),
    "an array": b'[{"event":"room_started"}]',
    "a string": b'"room_started"',
    "null": b"null",
    "deep nesting": b'{"event":"x","a":' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    "no event": b'{"id":"abc"}',
    "event a number": b'{"event":7}',
    "event null": b'{"event":null}',
    "event empty": b'{"event":""}',
    "event with a control char": b'{"event":"room\\u0000started"}',
    "event a lone surrogate": b'{"event":"\\ud800"}',
    "event too long": b'{"event":"' + b"e" * 500 + b'"}',
    "huge integer": b'{"event":"room_started","n":' + b"9" * 5000 + b"}",
    "trailing garbage": b'{"event":"room_started"} {}',
}


@pytest.mark.parametrize("name", NOT_AN_EVENT, ids=list(NOT_AN_EVENT))
def test_verified_body_that_is_not_an_event_is_400_and_stores_nothing(app, client, caplog, name):
    answer = deliver(client, NOT_AN_EVENT[name])
    assert answer.status == 400
    assert answer.json == {"status": "bad_request"}
    assert stored_count(app) == 0
    assert_rejection_logged(caplog, 400)


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
def test_other_methods_are_405(app, client, method):
    response = client.open(PATH, method=method, data=BODY)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert stored_count(app) == 0


def test_unknown_path_is_404(app, client):
    assert deliver(client, BODY, path="/webhook").status == 404
    assert stored_count(app) == 0


def test_token_in_hash_token_alone_is_accepted(app, client):
    token = sign(BODY, KEY, SECRET)
    assert deliver(client, BODY, headers={"Hash-Token": token}).status == 200
    assert stored_count(app) == 1


def test_bearer_prefix_is_accepted(app, client):
    token = sign(BODY, KEY, SECRET)
    assert deliver(client, BODY, headers={"Authorization": f"Bearer {token}"}).status == 200


KIND_OF = {
    "wrong secret": "signature",
    "unknown iss": "unknown_key",
    "alg HS384": "algorithm",
    "expired": "expired",
    "not yet valid": "not_yet_valid",
    "exp a year away": "lifetime",
    "sha256 of another body": "body_hash",
    "exp a list": "malformed",
    "garbage": "malformed",
}


@pytest.mark.parametrize("name", KIND_OF, ids=list(KIND_OF))
def test_each_failure_has_a_class_for_the_metrics(name):
    from validation import KINDS, VerificationError, verify

    with pytest.raises(VerificationError) as caught:
        verify(BODY, FORBIDDEN_TOKENS[name](), {KEY: SECRET})
    assert caught.value.kind == KIND_OF[name]
    assert caught.value.kind in KINDS


BAD_IDS = {
    "id a number": b'{"event":"room_started","id":5,"room":{"sid":"RM_1"}}',
    "id with a newline": b'{"event":"room_started","id":"a\\nWARNING","room":{"sid":"RM_1"}}',
    "id with a NUL": b'{"event":"room_started","id":"a\\u0000b","room":{"sid":"RM_1"}}',
    "id too long": b'{"event":"room_started","id":"' + b"i" * 500 + b'","room":{"sid":"RM_1"}}',
}


@pytest.mark.parametrize("name", BAD_IDS, ids=list(BAD_IDS))
def test_an_id_that_cannot_key_the_event_stores_it_refused(app, client, name):
    body = BAD_IDS[name]
    assert deliver(client, body).json == {"status": "accepted"}
    [row] = stored_rows(app)
    assert row["event_id"] is None and row["dedupe_key"].startswith("sha256:")
    assert row["handler_status"] == "failed"
    assert row["handler_error"].startswith("NormalizationError: event.id")
    assert all(rows == [] for rows in ledger_snapshot(app).values())
    assert deliver(client, body).json == {"status": "duplicate"}
