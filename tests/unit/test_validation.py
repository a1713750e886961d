"""validation.py on its own: token extraction, claims, digests, signing."""

from __future__ import annotations

import base64
import hashlib
import string
import time

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.helpers import KEY, OTHER_KEY, OTHER_SECRET, SECRET, forge, good_claims
from validation import (
    VerificationError,
    Verifier,
    decode_digest_claim,
    extract_tokens,
    sign,
    verify,
)

BODY = b'{"event":"room_started","id":"x"}'
KEYS = {KEY: SECRET, OTHER_KEY: OTHER_SECRET}
HS256 = {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize(
    ("authorization", "hash_token", "expected"),
    [
        ("tok", None, ["tok"]),
        ("Bearer tok", None, ["tok"]),
        ("bearer  tok ", None, ["tok"]),
        (None, "tok", ["tok"]),
        ("", "tok", ["tok"]),
        ("  ", "tok", ["tok"]),
        ("tok", "tok", ["tok"]),
        ("first", "second", ["first", "second"]),
    ],
)
def test_tokens_are_taken_from_authorization_then_hash_token(authorization, hash_token, expected):
    assert extract_tokens(authorization, hash_token) == expected


@pytest.mark.parametrize(("authorization", "hash_token"), [(None, None), ("", ""), (" ", None)])
def test_no_token_is_a_missing_token(authorization, hash_token):
    with pytest.raises(VerificationError) as caught:
        extract_tokens(authorization, hash_token)
    assert caught.value.missing_token


def test_signed_body_verifies_and_returns_the_claims():
    claims = verify(BODY, sign(BODY, KEY, SECRET), KEYS)
    assert claims["iss"] == KEY
    assert claims["exp"] - claims["nbf"] == 300
    assert claims["sha256"] == base64.b64encode(hashlib.sha256(BODY).digest()).decode()


def test_secret_is_chosen_by_the_issuer_for_key_rotation():
    assert verify(BODY, sign(BODY, OTHER_KEY, OTHER_SECRET), KEYS)["iss"] == OTHER_KEY
    with pytest.raises(VerificationError, match="signature"):
        verify(BODY, sign(BODY, OTHER_KEY, SECRET), KEYS)


def test_hex_digest_claim_of_the_guide_is_accepted():
    token = sign(BODY, KEY, SECRET, digest_format="hex")
    assert verify(BODY, token, KEYS)["sha256"] == hashlib.sha256(BODY).hexdigest()
    upper = forge(HS256, good_claims(BODY, sha256=hashlib.sha256(BODY).hexdigest().upper()))
    assert verify(BODY, upper, KEYS)


def test_any_change_to_the_body_fails():
    token = sign(BODY, KEY, SECRET)
    for changed in (BODY + b" ", BODY.replace(b"x", b"y"), b"", BODY[:-1]):
        with pytest.raises(VerificationError, match="does not match the body"):
            verify(changed, token, KEYS)


def test_leeway_allows_small_clock_skew_only():
    now = int(time.time())
    late = forge(HS256, good_claims(BODY, nbf=now - 400, exp=now - 30))
    assert verify(BODY, late, KEYS, leeway=60)
    with pytest.raises(VerificationError, match="expired"):
        verify(BODY, late, KEYS, leeway=10)
    early = forge(HS256, good_claims(BODY, nbf=now + 30))
    assert verify(BODY, early, KEYS, leeway=60)
    with pytest.raises(VerificationError, match="nbf"):
        verify(BODY, early, KEYS, leeway=0)


def test_sign_rejects_an_unknown_digest_format():
    with pytest.raises(ValueError, match="digest_format"):
        sign(BODY, KEY, SECRET, digest_format="base32")


@pytest.mark.parametrize(
    "claim",
    [
        None,
        7,
        ["a"],
        "",
        "not base64!",
        "é" * 44,
        base64.b64encode(b"short").decode(),
        base64.urlsafe_b64encode(b"\xfb" * 32).decode(),  # URL-safe alphabet is not standard
        "g" * 64,
    ],
)
def test_malformed_digest_claims_are_rejected(claim):
    with pytest.raises(VerificationError):
        decode_digest_claim(claim)


def test_digest_claim_accepts_base64_and_hex():
    digest = hashlib.sha256(BODY).digest()
    assert decode_digest_claim(base64.b64encode(digest).decode()) == digest
    assert decode_digest_claim(digest.hex()) == digest


def test_a_proxy_credential_in_authorization_does_not_hide_hash_token():
    token = sign(BODY, KEY, SECRET)
    verifier = Verifier(KEYS)
    claims = verifier.verify_delivery(BODY, "Basic dXNlcjpwYXNz", token)
    assert claims["iss"] == KEY
    with pytest.raises(VerificationError, match="not three dot-separated segments"):
        verifier.verify_delivery(BODY, "Basic dXNlcjpwYXNz", "also.not.valid")


def _pyjwt_accepts(token: str) -> bool:
    """PyJWT's own HS256 check of the token's form and signature, as a second opinion."""
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_iss": False})
    except (jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return False
    return True


def _ours_accepts(token: str) -> bool:
    try:
        Verifier(KEYS).verify(BODY, token)
    except VerificationError:
        return False
    return True


# The base64url alphabet, and what a token must not hold: padding, the other base64
# alphabet's two, a space, a non-ASCII letter and a NUL.
_TOKEN_CHARACTERS = st.sampled_from(string.ascii_letters + string.digits + "-_.=+/ é\x00")


@settings(max_examples=400, deadline=None)
@given(
    edits=st.lists(
        st.tuples(st.sampled_from(["replace", "insert", "delete"]), st.integers(0, 10**6),
                  _TOKEN_CHARACTERS),
        min_size=0, max_size=3,
    ),
    header=st.sampled_from([HS256, {"alg": "HS256"}, {"alg": "HS384"}, {"alg": "none"},
                            {"typ": "JWT"}, {"alg": "HS256", "kid": "k1"}, b"[1]", b"{nope"]),
)  # fmt: skip
def test_the_token_check_agrees_with_pyjwt_on_form_and_signature(edits, header):
    token = forge(header, good_claims(BODY))
    for operation, position, character in edits:
        at = position % (len(token) + 1)
        if operation == "replace" and at < len(token):
            token = token[:at] + character + token[at + 1 :]
        elif operation == "insert":
            token = token[:at] + character + token[at:]
        elif operation == "delete":
            token = token[:at] + token[at + 1 :]
    assert _ours_accepts(token) == _pyjwt_accepts(token)


def test_a_header_that_asks_for_extensions_is_refused_though_signed():
    token = forge({"alg": "HS256", "crit": ["b64"], "b64": False}, good_claims(BODY))
    with pytest.raises(VerificationError, match="crit"):
        Verifier(KEYS).verify(BODY, token)
