"""Destination kinds: what each kind of destination is sent, one module each.

``slack`` makes a chat message (a Slack-style incoming webhook), ``webhook`` the event as
JSON, signed per Standard Webhooks.
"""
