"""Interop with livekit-api, an independent implementation of the same token scheme."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta

import pytest

from tests.support.helpers import CORPUS, KEY, SECRET, corpus, deliver, stored_count
from validation import VerificationError, sign, verify

livekit_api = pytest.importorskip("livekit.api", reason="livekit-api is a test dependency")


def _livekit_token(body: bytes, secret: str = SECRET, ttl: timedelta | None = None) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = livekit_api.AccessToken(KEY, secret).with_sha256(digest)
    if ttl is not None:
        token = token.with_ttl(ttl)
    return token.to_jwt()


@pytest.mark.parametrize("path", CORPUS[::7], ids=[p.stem for p in CORPUS[::7]])
def test_livekit_minted_tokens_verify(path):
    body = path.read_bytes()
    claims = verify(body, _livekit_token(body), {KEY: SECRET})
    assert claims["iss"] == KEY


def test_livekit_minted_token_is_accepted_by_the_route(app, client):
    body = corpus("room_created")
    assert deliver(client, body, token=_livekit_token(body)).status == 200
    assert stored_count(app) == 1


def test_livekit_token_with_the_wrong_secret_is_rejected(app, client):
    body = corpus("room_created")
    with pytest.raises(VerificationError):
        verify(body, _livekit_token(body, secret="another-secret-of-enough-length!"), {KEY: SECRET})
    assert deliver(client, body, token=_livekit_token(body, secret="x" * 40)).status == 403
    assert stored_count(app) == 0


def test_expired_livekit_token_is_rejected():
    body = corpus("room_created")
    token = _livekit_token(body, ttl=timedelta(seconds=-120))
    with pytest.raises(VerificationError, match="expired"):
        verify(body, token, {KEY: SECRET})


def test_our_tokens_verify_with_livekit():
    body = corpus("session_ended")
    claims = livekit_api.TokenVerifier(KEY, SECRET).verify(sign(body, KEY, SECRET))
    assert claims.sha256 == base64.b64encode(hashlib.sha256(body).digest()).decode()
