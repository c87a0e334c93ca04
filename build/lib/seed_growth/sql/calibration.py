"""SQL of the p_calibration backtest: observed target weeks, and the stored scores and reliability bins."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from seed_growth.settings import SourceRelation
from seed_growth.sql.scores import weekly_counts_query


def observed_week_scores(conn: psycopg.Connection, source: SourceRelation, mondays: list[dt.date]) -> pd.DataFrame:
    """Each student's attempts and correct answers in each of the given UTC weeks (for backtests)."""
    columns = ["student", "target_week_start", "n", "correct"]
    if not mondays:
        return pd.DataFrame(columns=columns)
    query = sql.SQL(
        "SELECT user_id, week_start, n_attempts, n_correct FROM ({counts}) AS s WHERE week_start = ANY(%(mondays)s)"
    ).format(counts=weekly_counts_query(source))
    starts = [dt.datetime.combine(m, dt.time(0), tzinfo=dt.UTC) for m in mondays]
    rows = conn.execute(
        query, {"start_ts": min(starts), "end_ts": max(starts) + dt.timedelta(weeks=1), "mondays": list(mondays)}
    ).fetchall()
    return pd.DataFrame(rows, columns=columns)


def read_calibration(conn: psycopg.Connection) -> pd.DataFrame:
    """The latest backtest's scores per as-of week and method (overall last)."""
    rows = conn.execute(
        """SELECT as_of_week, method, students, brier, log_loss, mean_p, observed_rate FROM p_calibration
           ORDER BY as_of_week = 'overall', as_of_week, method"""
    ).fetchall()
    return pd.DataFrame(
        rows, columns=["as_of_week", "method", "students", "brier", "log_loss", "mean_P", "observed_rate"]
    )


def replace_calibration(conn: psycopg.Connection, summary: pd.DataFrame, reliability: pd.DataFrame) -> None:
    """Keep only the latest backtest: its scores per as-of week and method, and its reliability bins."""
    conn.execute("DELETE FROM p_calibration")
    conn.execute("DELETE FROM p_calibration_bins")
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO p_calibration (as_of_week, method, students, brier, log_loss, mean_p, observed_rate)
               VALUES (%s, %s, %s, %s, %s, %s, %s)""",
            summary[["as_of_week", "method", "students", "brier", "log_loss", "mean_P", "observed_rate"]].itertuples(
                index=False
            ),
        )
        cur.executemany(
            """INSERT INTO p_calibration_bins (method, bin, mean_p, observed_rate, count)
               VALUES (%s, %s, %s, %s, %s)""",
            [
                (m, b, None if np.isnan(p) else p, None if np.isnan(r) else r, c)
                for m, b, p, r, c in reliability[["method", "bin", "mean_P", "observed_rate", "count"]].itertuples(
                    index=False
                )
            ],
        )
