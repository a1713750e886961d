"""Verify and sign plugNmeet webhook deliveries (pure: bytes and header values in, claims out).

A plugNmeet server signs each delivery the way LiveKit does: a JWS compact token, HS256
with the API secret, ``iss`` = the API key, ``nbf``/``exp`` a five-minute window, and a
``sha256`` claim holding the standard base64 of the SHA-256 digest of the exact body bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import jwt
import jwt.algorithms

ALGORITHM = "HS256"
TOKEN_TTL_SECONDS = 300
MAX_TOKEN_LENGTH = 8192
# Servers mint 5-minute tokens; anything valid for longer than a day is not one of theirs.
MAX_TOKEN_LIFETIME = 24 * 3600
_DIGEST_SIZE = hashlib.sha256().digest_size
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


KINDS = (
    "no_token", "malformed", "algorithm", "unknown_key", "signature",
    "expired", "not_yet_valid", "lifetime", "body_hash",
)  # fmt: skip


class VerificationError(Exception):
    """A delivery failed verification; ``reason`` is for the log, never for the response.

    ``kind`` is one of :data:`KINDS`, a short class of the failure for metrics.
    """

    def __init__(self, reason: str, kind: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    @property
    def missing_token(self) -> bool:
        """Tell whether no token was sent at all (answered 401, not 403)."""
        return self.kind == "no_token"


def body_digest(body: bytes) -> bytes:
    """Return the raw SHA-256 digest of the body bytes."""
    return hashlib.sha256(body).digest()


def bearer(value: str) -> tuple[bool, str]:
    """Split an ``Authorization`` value: whether it said ``Bearer``, and the credential."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() == "bearer":
        return True, rest.strip()
    return False, value.strip()


def extract_tokens(authorization: str | None, hash_token: str | None) -> list[str]:
    """List the tokens sent: ``Authorization`` (bare or ``Bearer``) first, then ``Hash-Token``.

    Both usually carry the same token; a proxy may have put its own credentials in
    ``Authorization``, so ``Hash-Token`` is kept as a second candidate.
    """
    tokens: list[str] = []
    for value in (authorization, hash_token):
        if not value:
            continue
        _, token = bearer(value)
        if token and token not in tokens:
            tokens.append(token)
    if not tokens:
        raise VerificationError("no token in Authorization or Hash-Token", "no_token")
    return tokens


def decode_digest_claim(claim: object) -> bytes:
    """Turn a ``sha256`` claim (standard base64, or hex) into the 32 digest bytes it names."""
    if not isinstance(claim, str):
        raise VerificationError(
            f"sha256 claim is {type(claim).__name__}, not a string", "body_hash"
        )
    if len(claim) == 2 * _DIGEST_SIZE and _HEX_DIGITS.issuperset(claim):
        return bytes.fromhex(claim)
    try:
        digest = base64.b64decode(claim.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise VerificationError("sha256 claim is neither base64 nor hex", "body_hash") from None
    if len(digest) != _DIGEST_SIZE:
        raise VerificationError("sha256 claim does not hold a SHA-256 digest", "body_hash")
    return digest


_TIME_LIMIT = 2**53
_HS256 = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)


def _time_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None and name not in claims:
        return None
    # The wire format is a JSON number: not a string, a boolean, a list or an infinity.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VerificationError(f"token {name} is not a number")
    if not -_TIME_LIMIT < value < _TIME_LIMIT:  # also refuses inf, nan and 10**400
        raise VerificationError(f"token {name} is not a plausible time")
    return value


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")  # base64url without padding (RFC 7515)


def _segment(text: str, what: str) -> bytes:
    # Only the base64url alphabet, unpadded: b64decode would skip other characters silently.
    if not _SEGMENT.fullmatch(text) or len(text) % 4 == 1:
        raise VerificationError(f"token {what} is not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    value = json.loads(data)  # ValueError (and UnicodeDecodeError), RecursionError: malformed
    if not isinstance(value, dict):
        raise VerificationError(f"token {what} is not a JSON object")
    return value


def _parse(token: str) -> tuple[bytes, dict[str, Any], dict[str, Any], bytes]:
    """Split a JWS compact token: its signing input, header, claims and signature bytes.

    Only what a plugNmeet server sends parses: three base64url segments, a JSON object in
    each of the first two, and a header that asks for no extension (no ``crit``) and whose
    ``kid``, if any, is a string. The signature is not checked here.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError("token is not three dot-separated segments")
    header = _json_object(_segment(parts[0], "header"), "header")
    if "crit" in header:
        raise VerificationError("token header asks for extensions (crit)")
    if not isinstance(header.get("kid", ""), str):
        raise VerificationError("token kid is not a string")
    claims = _json_object(_segment(parts[1], "claims"), "claims")
    signature = _segment(parts[2], "signature")
    return f"{parts[0]}.{parts[1]}".encode("ascii"), header, claims, signature


class Verifier:
    """Verify deliveries against the configured key pairs, with a clock leeway.

    Each secret is prepared for HMAC once, when the verifier is made (by PyJWT, which also
    signs tokens: it refuses a secret that looks like a public key).
    """

    def __init__(self, keys: Mapping[str, str], *, leeway: float = 60) -> None:
        self.leeway = leeway
        self._keys = {key: _HS256.prepare_key(secret) for key, secret in keys.items()}

    def verify_delivery(
        self,
        body: bytes,
        authorization: str | None,
        hash_token: str | None,
        *,
        digest: bytes | None = None,
    ) -> dict[str, Any]:
        """Verify a delivery by whichever of its tokens holds; the first failure is the reason."""
        first_failure: VerificationError | None = None
        for token in extract_tokens(authorization, hash_token):
            try:
                return self.verify(body, token, digest=digest)
            except VerificationError as exc:
                first_failure = first_failure or exc
        assert first_failure is not None  # extract_tokens returns at least one token
        raise first_failure

    def verify(self, body: bytes, token: str, *, digest: bytes | None = None) -> dict[str, Any]:
        """Verify the token and the body's hash; return the token's claims.

        The token is parsed once (:func:`_parse`), its HS256 signature checked with the
        standard library's HMAC under the secret of its ``iss``, then its times and the
        body's digest (``digest``, when the caller has hashed the body already). Raises
        :class:`VerificationError` for every way a token or its claims can be wrong.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise VerificationError(f"token longer than {MAX_TOKEN_LENGTH} characters")
        try:
            signing_input, header, claims, signature = _parse(token)
            if header.get("alg") != ALGORITHM:
                raise VerificationError(f"token algorithm is not {ALGORITHM}", "algorithm")
            issuer = claims.get("iss")
            if not isinstance(issuer, str) or not issuer:
                raise VerificationError("token has no string iss claim", "unknown_key")
            key = self._keys.get(issuer)
            if key is None:
                raise VerificationError("token iss is not a configured API key", "unknown_key")
            expected_signature = hmac.digest(key, signing_input, "sha256")
            if not hmac.compare_digest(signature, expected_signature):
                raise VerificationError(
                    "token signature does not match the secret of its iss", "signature"
                )
        except VerificationError:
            raise
        except (ValueError, TypeError, OverflowError, RecursionError, KeyError) as exc:
            raise VerificationError(f"malformed token: {type(exc).__name__}") from None
        self._check_times(claims)
        expected = digest if digest is not None else body_digest(body)
        if not hmac.compare_digest(decode_digest_claim(claims.get("sha256")), expected):
            raise VerificationError("sha256 claim does not match the body", "body_hash")
        return claims

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now, leeway = time.time(), self.leeway
        exp = _time_claim(claims, "exp")
        nbf = _time_claim(claims, "nbf")
        iat = _time_claim(claims, "iat")
        if exp is None:
            raise VerificationError("token has no exp claim")
        if exp <= now - leeway:
            raise VerificationError("token has expired", "expired")
        if (nbf is not None and nbf > now + leeway) or (iat is not None and iat > now + leeway):
            raise VerificationError("token is not valid yet (nbf)", "not_yet_valid")
        if exp > now + leeway + MAX_TOKEN_LIFETIME:
            raise VerificationError("token exp is more than a day away", "lifetime")


def verify(
    body: bytes,
    token: str,
    keys: Mapping[str, str],
    *,
    leeway: float = 60,
    digest: bytes | None = None,
) -> dict[str, Any]:
    """Verify one token against ``keys`` (see :meth:`Verifier.verify`); for one-off checks.

    A service verifies many deliveries with one :class:`Verifier`, which prepares each secret
    once.
    """
    return Verifier(keys, leeway=leeway).verify(body, token, digest=digest)


def sign(
    body: bytes,
    api_key: str,
    api_secret: str,
    *,
    ttl: int = TOKEN_TTL_SECONDS,
    now: float | None = None,
    digest_format: str = "base64",
) -> str:
    """Mint the token a plugNmeet server would send with ``body``."""
    issued = int(time.time() if now is None else now)
    digest = body_digest(body)
    if digest_format == "base64":
        claim = base64.b64encode(digest).decode("ascii")
    elif digest_format == "hex":
        claim = digest.hex()
    else:
        raise ValueError(f"digest_format must be 'base64' or 'hex', not {digest_format!r}")
    claims = {"iss": api_key, "nbf": issued, "exp": issued + ttl, "sub": "", "sha256": claim}
    return jwt.encode(claims, api_secret, algorithm=ALGORITHM)
