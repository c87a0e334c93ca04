"""SQL of the weekly_kpi_P stage: goals, and the merge of P into weekly_kpi.kpis (other keys kept)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql

from seed_growth.sql import bulk as bulk_sql
from seed_growth.sql.schema import fetch_one


def read_student_goals(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute("SELECT user_id, goal_score, target_date FROM student_goal").fetchall()
    return pd.DataFrame(rows, columns=["student", "goal_score", "target_date"])


def merge_kpis(
    conn: psycopg.Connection, week_start: dt.date, kpis: pd.DataFrame, shared: Mapping[str, Any] | None = None
) -> int:
    """Merge per-student KPI objects into ``weekly_kpi.kpis`` (``kpis || new``): keys this project does
    not write are kept. ``kpis`` has a column ``student`` and one column per key (numbers, strings,
    booleans, dates; missing values become JSON null); ``shared`` holds keys of the same value for every
    student. The typed columns go by one COPY into a temporary table, the JSON is built in SQL (to the
    text Python's json.dumps writes), then one upsert: all or nothing within the caller's transaction.
    A number that is not finite is refused (ValueError), as json.dumps refuses it."""
    _refuse_non_finite(kpis)
    table = pa.Table.from_pandas(kpis, preserve_index=False).rename_columns(
        ["user_id" if name == "student" else name for name in kpis.columns]
    )
    keys = [name for name in table.column_names if name != "user_id"]
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(field.name), _PG_TYPES[_value_type(field.type)])
        for field in table.schema
    )
    bulk_sql.exact_doubles(conn)  # the JSON's numbers are the doubles' text
    conn.execute(sql.SQL("CREATE TEMP TABLE kpi_incoming ({}, PRIMARY KEY (user_id)) ON COMMIT DROP").format(columns))
    bulk_sql.copy_in_table(conn, sql.Identifier("kpi_incoming"), table)
    payload = sql.SQL("jsonb_build_object({}) || {}::jsonb").format(
        sql.SQL(", ").join(
            sql.SQL("{}, {}").format(sql.Literal(key), _json_value(key, table.schema.field(key).type)) for key in keys
        ),
        sql.Literal(json.dumps(dict(shared or {}), allow_nan=False)),
    )
    return conn.execute(
        sql.SQL(
            """INSERT INTO weekly_kpi AS w (user_id, week_start, kpis)
               SELECT user_id, {week}, {payload} FROM kpi_incoming
               ON CONFLICT (user_id, week_start)
               DO UPDATE SET kpis = w.kpis || EXCLUDED.kpis, updated_at = now()"""
        ).format(week=sql.Literal(week_start), payload=payload)
    ).rowcount


#: the temporary table's column type for each kind of Arrow column
_PG_TYPES = {
    pa.float64(): sql.SQL("double precision"),
    pa.int64(): sql.SQL("bigint"),
    pa.bool_(): sql.SQL("boolean"),
    pa.date32(): sql.SQL("date"),
    pa.large_string(): sql.SQL("text"),
    pa.null(): sql.SQL("text"),
}


def _value_type(kind: pa.DataType) -> pa.DataType:
    """The Arrow type a column is stored as (text of every width as large_string)."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return pa.large_string()
    if pa.types.is_floating(kind):
        return pa.float64()
    if pa.types.is_integer(kind):
        return pa.int64()
    if kind in _PG_TYPES:
        return kind
    raise TypeError(f"a KPI column of type {kind} cannot be written")


def _json_value(key: str, kind: pa.DataType) -> sql.Composable:
    """The JSON of a column's value. A double as json.dumps writes it: its shortest exact digits, an
    integral one with '.0' (jsonb keeps a number's scale: 1.0 stays 1.0, as Python wrote it)."""
    column = sql.Identifier(key)
    if _value_type(kind) != pa.float64():
        return sql.SQL("to_jsonb({})").format(column)
    return sql.SQL(
        "CASE WHEN {c} = trunc({c}) AND abs({c}) < 1e16 THEN to_jsonb(round({c}::text::numeric, 1))"
        " ELSE to_jsonb({c}) END"
    ).format(c=column)


def _refuse_non_finite(kpis: pd.DataFrame) -> None:
    for name in kpis.columns:
        if pd.api.types.is_float_dtype(kpis[name].dtype):
            bad = int((~np.isfinite(kpis[name].to_numpy(dtype=float))).sum())
            if bad:
                raise ValueError(f"{bad} values of KPI {name!r} are not finite numbers (NaN or infinite)")


def kpi_p_methods(conn: psycopg.Connection, week_start: dt.date) -> dict[str, int]:
    """How many of the week's P came by each method (``P_method``), most first."""
    rows = conn.execute(
        """SELECT coalesce(kpis->>'P_method', 'none'), count(*) FROM weekly_kpi
           WHERE week_start = %s AND kpis ? 'P' GROUP BY 1 ORDER BY 2 DESC, 1""",
        (week_start,),
    ).fetchall()
    return {method: count for method, count in rows}


def kpi_p_coverage(conn: psycopg.Connection, week_start: dt.date) -> dict[str, int]:
    """For the week's weekly_scores students: how many have no P, and how many a P outside [0, 1]."""
    row = fetch_one(
        conn,
        """SELECT count(*),
                  count(*) FILTER (WHERE k.kpis IS NULL OR NOT k.kpis ? 'P'),
                  count(*) FILTER (WHERE CASE WHEN jsonb_typeof(k.kpis->'P') = 'number'
                                              THEN (k.kpis->>'P')::float8 NOT BETWEEN 0 AND 1
                                              ELSE k.kpis ? 'P' END)
           FROM (SELECT DISTINCT user_id FROM weekly_scores WHERE as_of_week = %(w)s) AS s
           LEFT JOIN weekly_kpi AS k ON k.user_id = s.user_id AND k.week_start = %(w)s""",
        {"w": week_start},
    )
    return {"students": row[0], "students_without_P": row[1], "P_invalid": row[2]}
