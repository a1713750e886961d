"""A peer: the public guide's webhook listener, ported to Flask, under the same gunicorn.

It does what the guide's listener does and nothing more: verify the token with PyJWT
(HS256), compare the body's SHA-256 digest with the token's claim (base64, as real servers
send it), parse the JSON, log two lines and answer 200. It stores nothing, so a crash or a
restart loses every event it acknowledged.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import sys

import jwt
from flask import Flask, request

SECRET = os.environ["PNM_API_SECRET"]
log = logging.getLogger("guide")
log.setLevel(logging.INFO)
log.addHandler(logging.StreamHandler(sys.stderr))
log.propagate = False

app = Flask(__name__)


@app.post("/webhook-listener")
def receive() -> tuple[str, int]:
    """Verify, parse, log, answer."""
    token = request.headers.get("Authorization") or request.headers.get("Hash-Token")
    if not token:
        return "missing token", 401
    body = request.get_data()
    try:
        claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return "invalid token", 401
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    if not hmac.compare_digest(digest, str(claims.get("sha256", ""))):
        return "digest mismatch", 401
    event = json.loads(body)
    log.info("Webhook received and validated!")
    log.info("Event: %s for room %s", event.get("event"), (event.get("room") or {}).get("room_id"))
    return '{"status":"accepted"}', 200
