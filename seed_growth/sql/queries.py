"""Every SQL statement of the project, as plain functions over a psycopg connection.

Identifiers that come from configuration are composed with ``psycopg.sql.Identifier`` after
``settings.check_identifier`` has refused anything but plain names; values are always bound parameters.
Functions that write do so inside the caller's transaction (``with conn.transaction():``) so a failure
leaves the tables as they were.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from seed_growth.settings import SourceRelation
from seed_growth.window import ScoreWindow


def _sql_file(name: str) -> str:
    return resources.files("seed_growth.sql").joinpath(name).read_text()


def apply_schema(conn: psycopg.Connection, *, demo_source: bool = False) -> None:
    """Create the contract's tables if missing (idempotent); with ``demo_source`` also a local
    ``attempt`` table. A transaction-level advisory lock keeps concurrent runs from racing."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('seed_growth.apply_schema'))")
        conn.execute(_sql_file("schema.sql"))
        if demo_source:
            conn.execute(_sql_file("demo_schema.sql"))


def _relation(name: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


def check_source(conn: psycopg.Connection, source: SourceRelation) -> None:
    """Fail with a clear message when the configured relation or its columns do not exist."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (source.relation,)).fetchone()[0]
    if not exists:
        raise LookupError(f"source relation {source.relation!r} (ATTEMPT_RELATION) does not exist")
    cols = conn.execute(
        sql.SQL("SELECT * FROM {} LIMIT 0").format(_relation(source.relation))
    ).description
    names = {c.name for c in cols}
    for variable, column in (
        ("ATTEMPT_USER_COLUMN", source.user_column),
        ("ATTEMPT_CORRECT_COLUMN", source.correct_column),
        ("ATTEMPT_TIME_COLUMN", source.time_column),
    ):
        if column not in names:
            raise LookupError(f"column {column!r} ({variable}) is not in {source.relation!r}; it has {sorted(names)}")


def replace_weekly_scores(conn: psycopg.Connection, source: SourceRelation, window: ScoreWindow) -> int:
    """Aggregate attempts into per-student weekly accuracy for ``window`` in SQL, replacing what the
    partition held. Returns the number of rows written."""
    query = sql.SQL(
        """
        INSERT INTO weekly_scores
            (as_of_week, user_id, week, week_start, n_attempts, n_correct, score, lookback_weeks)
        SELECT %(as_of)s, s.user_id, (s.week_start - %(start)s::date) / 7, s.week_start,
               s.n_attempts, s.n_correct, s.n_correct::float8 / s.n_attempts, %(lookback)s
        FROM (
            SELECT a.{user}::text AS user_id,
                   date_trunc('week', a.{time} AT TIME ZONE 'UTC')::date AS week_start,
                   count(*)::int AS n_attempts,
                   count(*) FILTER (WHERE a.{correct})::int AS n_correct
            FROM {relation} AS a
            WHERE a.{time} >= %(start_ts)s AND a.{time} < %(end_ts)s
              AND a.{user} IS NOT NULL AND a.{correct} IS NOT NULL
            GROUP BY 1, 2
        ) AS s
        """
    ).format(
        user=sql.Identifier(source.user_column),
        time=sql.Identifier(source.time_column),
        correct=sql.Identifier(source.correct_column),
        relation=_relation(source.relation),
    )
    params = {
        "as_of": window.as_of_week,
        "start": window.start,
        "lookback": window.lookback_weeks,
        "start_ts": window.start_utc,
        "end_ts": window.end_utc,
    }
    conn.execute("DELETE FROM weekly_scores WHERE as_of_week = %s", (window.as_of_week,))
    return conn.execute(query, params).rowcount


WEEKLY_SCORE_COLUMNS = ["student", "week", "score", "n_attempts", "n_correct", "week_start"]


def read_weekly_scores(conn: psycopg.Connection, as_of_week: dt.date) -> pd.DataFrame:
    """The partition's rows as a frame with columns ``WEEKLY_SCORE_COLUMNS`` (sorted by student, week)."""
    with conn.cursor(binary=True) as cur:
        cur.execute(
            """SELECT user_id, week, score, n_attempts, n_correct, week_start FROM weekly_scores
               WHERE as_of_week = %s ORDER BY user_id, week""",
            (as_of_week,),
        )
        rows = cur.fetchall()
    frame = pd.DataFrame(rows, columns=WEEKLY_SCORE_COLUMNS)
    return frame.astype({"student": str, "week": "int64", "score": "float64", "n_attempts": "int64", "n_correct": "int64"})


def weekly_scores_lookback(conn: psycopg.Connection, as_of_week: dt.date) -> int | None:
    row = conn.execute(
        "SELECT max(lookback_weeks) FROM weekly_scores WHERE as_of_week = %s", (as_of_week,)
    ).fetchone()
    return row[0] if row else None


def weekly_scores_problems(conn: psycopg.Connection, as_of_week: dt.date) -> dict[str, int]:
    """Counts of what the weekly_scores check refuses (all zero but ``rows`` when healthy)."""
    row = conn.execute(
        """SELECT count(*),
                  count(*) FILTER (WHERE score < 0 OR score > 1 OR score IS NULL OR score = 'NaN'),
                  count(*) - count(DISTINCT (user_id, week))
           FROM weekly_scores WHERE as_of_week = %s""",
        (as_of_week,),
    ).fetchone()
    return {"rows": row[0], "scores_outside_0_1": row[1], "duplicate_student_weeks": row[2]}


# ---------------------------------------------------------------------------------------------- fits


def insert_fit(conn: psycopg.Connection, fit: dict[str, Any], students: pd.DataFrame) -> None:
    """One growth_brms_meta row and its per-student summaries (``students`` columns: user_id,
    intercept_mean, intercept_sd, slope_mean, slope_sd, cor, n_weeks)."""
    conn.execute(
        """INSERT INTO growth_brms_meta
             (run_id, fitted_at, as_of_week, window_start, lookback_weeks, family, engine, iter, chains,
              n_students, n_rows, converged, posterior_summary, diagnostics, model, dagster_run_id)
           VALUES (%(run_id)s, %(fitted_at)s, %(as_of_week)s, %(window_start)s, %(lookback_weeks)s,
                   %(family)s, %(engine)s, %(iter)s, %(chains)s, %(n_students)s, %(n_rows)s, %(converged)s,
                   %(posterior_summary)s, %(diagnostics)s, %(model)s, %(dagster_run_id)s)""",
        {
            **fit,
            "posterior_summary": json.dumps(fit["posterior_summary"], allow_nan=False),
            "diagnostics": json.dumps(fit["diagnostics"], allow_nan=False),
            "model": json.dumps(fit["model"], allow_nan=False),
        },
    )
    columns = ["user_id", "intercept_mean", "intercept_sd", "slope_mean", "slope_sd", "cor", "n_weeks"]
    with conn.cursor().copy(
        "COPY growth_student_posterior (run_id, " + ", ".join(columns) + ") FROM STDIN"
    ) as copy:
        for row in students[columns].itertuples(index=False):
            copy.write_row((fit["run_id"], *row))


def latest_fit(conn: psycopg.Connection, as_of_week: dt.date) -> dict[str, Any] | None:
    """The most recent fit for an as-of week, or None."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            """SELECT run_id, fitted_at, as_of_week, window_start, lookback_weeks, family, engine, iter,
                      chains, n_students, n_rows, converged, posterior_summary, diagnostics, model
               FROM growth_brms_meta WHERE as_of_week = %s ORDER BY fitted_at DESC LIMIT 1""",
            (as_of_week,),
        )
        return cur.fetchone()


def read_student_posterior(conn: psycopg.Connection, run_id: str) -> pd.DataFrame:
    columns = ["student", "intercept_mean", "intercept_sd", "slope_mean", "slope_sd", "cor", "n_weeks"]
    rows = conn.execute(
        """SELECT user_id, intercept_mean, intercept_sd, slope_mean, slope_sd, cor, n_weeks
           FROM growth_student_posterior WHERE run_id = %s""",
        (run_id,),
    ).fetchall()
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------------------- goals/KPI


def read_student_goals(conn: psycopg.Connection) -> pd.DataFrame:
    rows = conn.execute("SELECT user_id, goal_score, target_date FROM student_goal").fetchall()
    return pd.DataFrame(rows, columns=["student", "goal_score", "target_date"])


def merge_kpis(conn: psycopg.Connection, week_start: dt.date, kpis: pd.DataFrame) -> int:
    """Merge per-student KPI objects into ``weekly_kpi.kpis`` (``kpis || new``): keys this project
    does not write are kept. ``kpis`` has columns ``student`` and ``kpis`` (a dict per row). Bulk
    loaded through COPY into a temporary table, then one upsert."""
    conn.execute(
        "CREATE TEMP TABLE kpi_incoming (user_id text PRIMARY KEY, kpis jsonb NOT NULL) ON COMMIT DROP"
    )
    with conn.cursor().copy("COPY kpi_incoming (user_id, kpis) FROM STDIN") as copy:
        for student, values in zip(kpis["student"], kpis["kpis"]):
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


def copy_attempts(conn: psycopg.Connection, attempts: pd.DataFrame, relation: str = "attempt") -> int:
    """Bulk-load demo attempts (columns user_id, is_correct, attempted_at) with COPY."""
    buffer = io.StringIO()
    attempts[["user_id", "is_correct", "attempted_at"]].to_csv(
        buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S+00"
    )
    buffer.seek(0)
    statement = sql.SQL("COPY {} (user_id, is_correct, attempted_at) FROM STDIN WITH (FORMAT csv)").format(
        _relation(relation)
    )
    with conn.cursor().copy(statement) as copy:
        while chunk := buffer.read(1 << 20):
            copy.write(chunk)
    return len(attempts)


def truncate_attempts(conn: psycopg.Connection, relation: str = "attempt") -> None:
    conn.execute(sql.SQL("TRUNCATE {}").format(_relation(relation)))


def count_rows(conn: psycopg.Connection, relation: str) -> int:
    return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(_relation(relation))).fetchone()[0]


def weekly_scores_overview(conn: psycopg.Connection, as_of_week: dt.date) -> pd.DataFrame:
    """Per week of the partition: students, attempts and the mean score (for metadata and plots)."""
    rows = conn.execute(
        """SELECT week, week_start, count(*), sum(n_attempts), avg(score) FROM weekly_scores
           WHERE as_of_week = %s GROUP BY week, week_start ORDER BY week""",
        (as_of_week,),
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["week", "week_start", "students", "attempts", "mean_score"])
    return frame.astype({"mean_score": "float64"})


def weekly_scores_preview(conn: psycopg.Connection, as_of_week: dt.date, limit: int = 10) -> pd.DataFrame:
    rows = conn.execute(
        """SELECT user_id AS student, week, score, n_attempts FROM weekly_scores WHERE as_of_week = %s
           ORDER BY user_id, week LIMIT %s""",
        (as_of_week, limit),
    ).fetchall()
    return pd.DataFrame(rows, columns=["student", "week", "score", "n_attempts"])


def count_students(conn: psycopg.Connection, as_of_week: dt.date) -> int:
    return conn.execute(
        "SELECT count(DISTINCT user_id) FROM weekly_scores WHERE as_of_week = %s", (as_of_week,)
    ).fetchone()[0]


def kpi_p_coverage(conn: psycopg.Connection, week_start: dt.date) -> dict[str, int]:
    """For the week's weekly_scores students: how many have no P, and how many a P outside [0, 1]."""
    row = conn.execute(
        """SELECT count(*),
                  count(*) FILTER (WHERE k.kpis IS NULL OR NOT k.kpis ? 'P'),
                  count(*) FILTER (WHERE CASE WHEN jsonb_typeof(k.kpis->'P') = 'number'
                                              THEN (k.kpis->>'P')::float8 NOT BETWEEN 0 AND 1
                                              ELSE k.kpis ? 'P' END)
           FROM (SELECT DISTINCT user_id FROM weekly_scores WHERE as_of_week = %(w)s) AS s
           LEFT JOIN weekly_kpi AS k ON k.user_id = s.user_id AND k.week_start = %(w)s""",
        {"w": week_start},
    ).fetchone()
    return {"students": row[0], "students_without_P": row[1], "P_invalid": row[2]}


def observed_week_scores(conn: psycopg.Connection, source: SourceRelation, mondays: list[dt.date]) -> pd.DataFrame:
    """Each student's attempts and correct answers in each of the given UTC weeks (for backtests)."""
    query = sql.SQL(
        """SELECT a.{user}::text, date_trunc('week', a.{time} AT TIME ZONE 'UTC')::date AS monday,
                  count(*)::int, (count(*) FILTER (WHERE a.{correct}))::int
           FROM {relation} AS a
           WHERE a.{time} >= %(first_start)s AND a.{time} < %(last_end)s
             AND date_trunc('week', a.{time} AT TIME ZONE 'UTC')::date = ANY(%(mondays)s)
             AND a.{user} IS NOT NULL AND a.{correct} IS NOT NULL
           GROUP BY 1, 2"""
    ).format(
        user=sql.Identifier(source.user_column), time=sql.Identifier(source.time_column),
        correct=sql.Identifier(source.correct_column), relation=_relation(source.relation),
    )
    if not mondays:
        return pd.DataFrame(columns=["student", "target_week_start", "n", "correct"])
    starts = [dt.datetime.combine(m, dt.time(0), tzinfo=dt.timezone.utc) for m in mondays]
    rows = conn.execute(
        query, {"first_start": min(starts), "last_end": max(starts) + dt.timedelta(weeks=1), "mondays": list(mondays)}
    ).fetchall()
    return pd.DataFrame(rows, columns=["student", "target_week_start", "n", "correct"])


def converged_fits(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The latest fit of every as-of week, where it converged (oldest week first)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            """SELECT DISTINCT ON (as_of_week) run_id, as_of_week, lookback_weeks, family, engine, chains,
                      n_rows, converged, posterior_summary, diagnostics, model
               FROM growth_brms_meta ORDER BY as_of_week, fitted_at DESC"""
        )
        return [row for row in cur.fetchall() if row["converged"]]


def read_calibration(conn: psycopg.Connection) -> pd.DataFrame:
    """The latest backtest's scores per as-of week and method (overall last)."""
    rows = conn.execute(
        """SELECT as_of_week, method, students, brier, log_loss, mean_p, observed_rate FROM p_calibration
           ORDER BY as_of_week = 'overall', as_of_week, method"""
    ).fetchall()
    return pd.DataFrame(rows, columns=["as_of_week", "method", "students", "brier", "log_loss", "mean_P", "observed_rate"])


def replace_calibration(conn: psycopg.Connection, summary: pd.DataFrame, reliability: pd.DataFrame) -> None:
    """Keep only the latest backtest: its scores per as-of week and method, and its reliability bins."""
    conn.execute("DELETE FROM p_calibration")
    conn.execute("DELETE FROM p_calibration_bins")
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO p_calibration (as_of_week, method, students, brier, log_loss, mean_p, observed_rate)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            summary[["as_of_week", "method", "students", "brier", "log_loss", "mean_P", "observed_rate"]].itertuples(index=False),
        )
        cur.executemany(
            """INSERT INTO p_calibration_bins (method, bin, mean_p, observed_rate, count)
               VALUES (%s, %s, %s, %s, %s)""",
            [(m, b, None if np.isnan(p) else p, None if np.isnan(r) else r, c)
             for m, b, p, r, c in reliability[["method", "bin", "mean_P", "observed_rate", "count"]].itertuples(index=False)],
        )
