"""SQL of the demo and test source: a local ``attempt`` table loaded with COPY."""

from __future__ import annotations

import io

import pandas as pd
import psycopg
from psycopg import sql

from seed_growth.sql.schema import fetch_one, relation_sql


def copy_attempts(conn: psycopg.Connection, attempts: pd.DataFrame, relation: str = "attempt") -> int:
    """Bulk-load demo attempts (columns user_id, is_correct, attempted_at) with COPY."""
    buffer = io.StringIO()
    attempts[["user_id", "is_correct", "attempted_at"]].to_csv(
        buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S+00"
    )
    buffer.seek(0)
    statement = sql.SQL("COPY {} (user_id, is_correct, attempted_at) FROM STDIN WITH (FORMAT csv)").format(
        relation_sql(relation)
    )
    with conn.cursor().copy(statement) as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
    return len(attempts)


def truncate_attempts(conn: psycopg.Connection, relation: str = "attempt") -> None:
    conn.execute(sql.SQL("TRUNCATE {}").format(relation_sql(relation)))


def count_rows(conn: psycopg.Connection, relation: str) -> int:
    return fetch_one(conn, sql.SQL("SELECT count(*) FROM {}").format(relation_sql(relation)))[0]
