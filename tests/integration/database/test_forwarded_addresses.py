"""Behind a proxy: the forwarded address is stored only when it is one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app import create_app
from plugnmeet_webhooks import runtime
from tests.support.helpers import KEY, SECRET, changed_body, corpus_json, stored_rows

JOINED = corpus_json("participant_joined")


@pytest.mark.parametrize(
    ("forwarded", "stored"),
    [
        ("203.0.113.5", "203.0.113.5"),
        ("10.0.0.1, 203.0.113.5", "203.0.113.5"),  # one proxy: its entry, the last
        ("not an address" + "x" * 500, "127.0.0.1"),
        ("203.0.113.5;<script>", "127.0.0.1"),
        ("2001:db8::1", "2001:db8::1"),
        ("fe80::1%zz ok", "127.0.0.1"),  # an IPv6 zone is free text
    ],
)
def test_a_forwarded_address_is_taken_only_when_it_is_one(settings, forwarded, stored):
    from validation import sign

    proxied = create_app(replace(settings, proxy_count=1))
    body = changed_body(JOINED, id=f"addr-{abs(hash(forwarded))}")
    token = sign(body, KEY, SECRET)
    headers = {"Authorization": token, "X-Forwarded-For": forwarded}
    try:
        response = proxied.test_client().post(
            "/webhook-listener", data=body, headers=headers, content_type="application/json"
        )
        assert response.status_code == 200
        [row] = stored_rows(proxied)
    finally:
        runtime.of(proxied).close()
    assert row["remote_addr"] == stored
