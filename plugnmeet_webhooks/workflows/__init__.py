"""Workflows: rules that turn stored events into messages, a durable outbox, a dispatcher.

``rules`` reads the rules file, ``messages`` matches events and renders what they send (in
the transaction that stores the event), ``dispatcher`` sends what the outbox holds; each
destination kind (``kinds``) says what its destinations are sent, and how.
"""
