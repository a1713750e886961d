"""Durable storage on SQLAlchemy Core: SQLite by default, PostgreSQL too.

``engine`` opens the database with its durability settings, ``events`` is the table of
verified deliveries, ``commit`` stores them in groups before they are acknowledged,
``migrate`` keeps the schema current, ``replay`` runs stored events again.
"""
