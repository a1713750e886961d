"""The receiver plus one handler that stalls inside its transaction, for the fault tests.

Gunicorn runs ``tests.support.slow_app:create_app()``: a ``slow_event`` delivery stores its
event, then its handler announces itself by creating the file named by
``PNM_TEST_STALL_MARKER`` and sleeps, so a test can kill the worker while the transaction
is open. Once the marker exists, later ``slow_event`` deliveries go straight through.
"""

import os
import time

from flask import Flask

from app import create_app as create_receiver
from plugnmeet_webhooks import runtime


def _stall_once(event, ctx):
    marker = os.environ["PNM_TEST_STALL_MARKER"]
    if not os.path.exists(marker):
        with open(marker, "w"):
            pass
        time.sleep(60)


def create_app() -> Flask:
    app = create_receiver()
    runtime.of(app).registry.on("slow_event")(_stall_once)
    return app
