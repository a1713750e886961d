"""Keys made once per installation: random, kept in the database, shared by every host.

A key is made by whichever process asks first (``INSERT … ON CONFLICT DO NOTHING``), and
every process and host on the same database reads the same one. It never leaves the
database except into the process that uses it.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import Column, Engine, Float, Table, Text, bindparam, select

from plugnmeet_webhooks.storage.engine import write_transaction
from plugnmeet_webhooks.storage.sql import compiled, execute, metadata

instance_keys = Table(
    "instance_keys",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)


def _insert(module: Any) -> Any:
    statement = module.insert(instance_keys).values(
        {c: bindparam(c) for c in ("name", "value", "created_at")}
    )
    return statement.on_conflict_do_nothing(index_elements=["name"])


def instance_key(engine: Engine, name: str) -> bytes:
    """Return the installation's key called ``name`` (32 random bytes), made on first use."""
    query = select(instance_keys.c.value).where(instance_keys.c.name == name)
    with engine.connect() as conn:
        found = conn.execute(query).scalar()
    if found is None:
        made = secrets.token_hex(32)
        with write_transaction(engine) as conn:
            params = {"name": name, "value": made, "created_at": time.time()}
            execute(conn, compiled(conn.dialect, _insert), params)
            found = conn.execute(query).scalar_one()
    return bytes.fromhex(found)
