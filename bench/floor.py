"""The floor: a Flask app that reads the body and answers 200, under the same gunicorn."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhook-listener")
def receive() -> tuple[str, int]:
    """Read the whole body, answer 200: what no Flask webhook receiver can beat."""
    request.get_data()
    return '{"status":"accepted"}', 200
