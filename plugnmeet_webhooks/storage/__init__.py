"""Durable storage on SQLAlchemy Core: SQLite by default, PostgreSQL too.

``engine`` opens the database with its durability settings, ``events`` is the table of
verified deliveries, ``batch`` stores a group of them in one transaction and
``committer`` gathers the groups, before any is acknowledged;
``migrate`` keeps the schema current, ``replay`` runs stored events again.
"""
