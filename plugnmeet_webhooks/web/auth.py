"""Tokens presented to the web routes: ``Authorization: Bearer …``, compared in constant time."""

from __future__ import annotations

import hmac

from flask import request

from validation import bearer


def presents(token: str) -> bool:
    """Tell whether the request presents ``token`` as its Bearer credential."""
    is_bearer, presented = bearer(request.headers.get("Authorization", ""))
    return is_bearer and hmac.compare_digest(
        presented.encode("utf-8", "replace"), token.encode("utf-8")
    )
