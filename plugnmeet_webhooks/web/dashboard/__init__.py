"""The dashboard: minutes, AI cost and attendance at a glance, the events, the outbox and,
with a billing file, billing.

Pages are rendered on the server from the same reports code as the report API, so every
figure on a page is the API's figure for the same filters. Charts are drawn in the browser
by Chart.js (vendored in ``static/vendor``: no CDN), from data in the page; each chart has
its numbers in a table beside it. The dashboard exists only when ``PNM_ADMIN_TOKEN`` is set.
"""

from __future__ import annotations

from flask import Flask

from plugnmeet_webhooks.web.dashboard.access import init_access
from plugnmeet_webhooks.web.dashboard.views import bp


def init_app(app: Flask) -> None:
    """Add the dashboard to the app (only called when an admin token is set)."""
    init_access(app)
    app.register_blueprint(bp)
