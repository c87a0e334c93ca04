"""The database contract: the schema (``schema.sql``, ``demo_schema.sql``) and how names are composed.

Identifiers that come from configuration are composed with ``psycopg.sql.Identifier`` after
``settings.check_identifier`` has refused anything but plain names; values are always bound parameters.
Functions that write do so inside the caller's transaction (``with conn.transaction():``) so a failure
leaves the tables as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql


def _sql_file(name: str) -> sql.SQL:
    text: Any = resources.files("seed_growth.sql").joinpath(name).read_text()  # our own file: trusted SQL
    return sql.SQL(text)


def apply_schema(conn: psycopg.Connection, *, demo_source: bool = False) -> None:
    """Create the contract's tables if missing (idempotent); with ``demo_source`` also a local
    ``attempt`` table. A transaction-level advisory lock keeps concurrent runs from racing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('seed_growth.apply_schema'))")
        conn.execute(_sql_file("schema.sql"))
        if demo_source:
            conn.execute(_sql_file("demo_schema.sql"))


def fetch_one(conn: psycopg.Connection, query: Any, params: Any = None) -> tuple[Any, ...]:
    """The one row an aggregate query returns."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError("the query returned no row")
    return row


def relation_sql(name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


@contextmanager
def advisory_lock(conn: psycopg.Connection, name: str) -> Iterator[bool]:
    """Try to take the session-level advisory lock ``name`` on ``conn`` without waiting; yields whether
    it was taken. Held until the block ends or the session does (a killed process releases it)."""
    [taken] = fetch_one(conn, "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (name,))
    try:
        yield bool(taken)
    finally:
        if taken and not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
            except psycopg.Error:
                pass  # the session is gone, and its locks with it
