"""The client's address behind reverse proxies: from exactly the proxies configured, and only
when it is an IP address."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class _AddressCheck:
    """Undo ProxyFix's choice unless the forwarded address is a valid IP address."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        original: dict[str, Any] = environ.get("werkzeug.proxy_fix.orig", {})
        forwarded = environ.get("REMOTE_ADDR")
        if forwarded != original.get("REMOTE_ADDR"):
            try:
                if "%" in (forwarded or ""):  # an IPv6 zone: free text, never a client's
                    raise ValueError(forwarded)
                environ["REMOTE_ADDR"] = str(ipaddress.ip_address(forwarded or ""))
            except ValueError:  # a client that reached us directly wrote what it liked
                environ["REMOTE_ADDR"] = original.get("REMOTE_ADDR")
        return self.app(environ, start_response)


def behind_proxies(app: WSGIApplication, count: int) -> WSGIApplication:
    """Take the client's address from the ``count``-th X-Forwarded-For entry from the right.

    With fewer entries than ``count``, or an entry that is not an IP address, the address
    stays the socket's. The scheme comes from X-Forwarded-Proto the same way, so that a
    proxy that ends HTTPS gets Secure cookies.
    """
    return ProxyFix(_AddressCheck(app), x_for=count, x_proto=count)
