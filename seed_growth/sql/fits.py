"""SQL of the brms_posterior stage: growth_brms_meta (one row per fit) and growth_student_posterior."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import psycopg.rows
import pyarrow as pa
from psycopg import sql

from seed_growth.sql import bulk as bulk_sql


def insert_fit(conn: psycopg.Connection, fit: dict[str, Any], students: pd.DataFrame) -> None:
    """One growth_brms_meta row and its per-student summaries (``students`` columns:
    ``STUDENT_POSTERIOR_COLUMNS``), these by one COPY (a million rows in seconds; doubles exact to the
    bit). Atomic only within the caller's transaction."""
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
    bulk_sql.copy_in_table(
        conn, sql.Identifier("growth_student_posterior"), _student_posterior_table(fit["run_id"], students)
    )


STUDENT_POSTERIOR_COLUMNS = ["user_id", "intercept_mean", "intercept_sd", "slope_mean", "slope_sd", "cor", "n_weeks"]
#: the summaries as read back (``student`` for ``user_id``, as the rest of the code names it)
_STUDENT_POSTERIOR_SCHEMA = pa.schema(
    [("student", pa.string())]
    + [(name, pa.float64()) for name in STUDENT_POSTERIOR_COLUMNS[1:-1]]
    + [("n_weeks", pa.int64())]
)


def _student_posterior_table(run_id: str, students: pd.DataFrame) -> pa.Table:
    """growth_student_posterior's rows as Arrow columns; run_id dictionary-encoded (one string, not a
    million)."""
    table = pa.Table.from_pandas(students[STUDENT_POSTERIOR_COLUMNS], preserve_index=False)
    run_ids = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(students), dtype=np.int32)), pa.array([run_id]))
    return table.add_column(0, "run_id", run_ids)


_FIT_COLUMNS = """run_id, fitted_at, as_of_week, window_start, lookback_weeks, family, engine, iter, chains,
                  n_students, n_rows, converged, posterior_summary, diagnostics, model, dagster_run_id"""


def latest_fit(conn: psycopg.Connection, as_of_week: dt.date) -> dict[str, Any] | None:
    """The most recent fit for an as-of week, or None."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            f"SELECT {_FIT_COLUMNS} FROM growth_brms_meta WHERE as_of_week = %s ORDER BY fitted_at DESC LIMIT 1",
            (as_of_week,),
        )
        return cur.fetchone()


def fit_by_run_id(conn: psycopg.Connection, run_id: str) -> dict[str, Any] | None:
    """The fit the service called ``run_id``, or None when it is not stored."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(f"SELECT {_FIT_COLUMNS} FROM growth_brms_meta WHERE run_id = %s", (run_id,))
        return cur.fetchone()


def read_student_posterior(conn: psycopg.Connection, run_id: str) -> pd.DataFrame:
    """A fit's per-student summaries (columns student, intercept_mean, ..., n_weeks), by one COPY."""
    query = sql.SQL(
        """SELECT user_id, intercept_mean, intercept_sd, slope_mean, slope_sd, cor, n_weeks
           FROM growth_student_posterior WHERE run_id = {}"""
    ).format(sql.Literal(run_id))
    return bulk_sql.copy_out_table(conn, query, _STUDENT_POSTERIOR_SCHEMA).to_pandas()


def converged_fits(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """The latest fit of every as-of week, where it converged (oldest week first)."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            """SELECT DISTINCT ON (as_of_week) run_id, as_of_week, lookback_weeks, family, engine, chains,
                      n_rows, converged, posterior_summary, diagnostics, model
               FROM growth_brms_meta ORDER BY as_of_week, fitted_at DESC"""
        )
        return [row for row in cur.fetchall() if row["converged"]]
