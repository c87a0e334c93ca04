"""SQL of the weekly_kpi_P stage: goals, and the merge of P into weekly_kpi.kpis (other keys kept)."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import psycopg

from seed_growth.sql.schema import fetch_one


def read_student_goals(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute("SELECT user_id, goal_score, target_date FROM student_goal").fetchall()
    return pd.DataFrame(rows, columns=["student", "goal_score", "target_date"])


def merge_kpis(conn: psycopg.Connection, week_start: dt.date, kpis: pd.DataFrame) -> int:
    """Merge per-student KPI objects into ``weekly_kpi.kpis`` (``kpis || new``): keys this project
    does not write are kept. ``kpis`` has columns ``student`` and ``kpis`` (a dict per row). Bulk
    loaded through COPY into a temporary table, then one upsert."""
    conn.execute("CREATE TEMP TABLE kpi_incoming (user_id text PRIMARY KEY, kpis jsonb NOT NULL) ON COMMIT DROP")
    with conn.cursor().copy("COPY kpi_incoming (user_id, kpis) FROM STDIN") as copy:
        for student, values in zip(kpis["student"], kpis["kpis"], strict=True):
            copy.write_row((student, json.dumps(values, allow_nan=False)))
    return conn.execute(
        """INSERT INTO weekly_kpi AS w (user_id, week_start, kpis)
           SELECT user_id, %s, kpis FROM kpi_incoming
           ON CONFLICT (user_id, week_start)
           DO UPDATE SET kpis = w.kpis || EXCLUDED.kpis, updated_at = now()""",
        (week_start,),
    ).rowcount


def read_kpi_p(conn: psycopg.Connection, week_start: dt.date) -> pd.DataFrame:
    rows = conn.execute(
        """SELECT user_id, (kpis->>'P')::float8, kpis->>'P_method' FROM weekly_kpi
           WHERE week_start = %s AND kpis ? 'P'""",
        (week_start,),
    ).fetchall()
    return pd.DataFrame(rows, columns=["student", "P", "method"])


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
