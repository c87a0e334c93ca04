"""SQL of the weekly_scores stage: the source relation, its aggregation per student and UTC week, and
reading a partition back."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import psycopg
import pyarrow as pa
from psycopg import sql

from seed_growth.settings import SourceRelation
from seed_growth.sql import bulk as bulk_sql
from seed_growth.sql.schema import fetch_one, relation_sql
from seed_growth.window import ScoreWindow


def check_source(conn: psycopg.Connection, source: SourceRelation) -> None:
    """Fail with a clear message when the configured relation or its columns do not exist."""
    [exists] = fetch_one(conn, "SELECT to_regclass(%s) IS NOT NULL", (source.relation,))
    if not exists:
        raise LookupError(f"source relation {source.relation!r} (ATTEMPT_RELATION) does not exist")
    cols = conn.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(relation_sql(source.relation))).description
    names = {c.name for c in cols or ()}
    for variable, column in (
        ("ATTEMPT_USER_COLUMN", source.user_column),
        ("ATTEMPT_CORRECT_COLUMN", source.correct_column),
        ("ATTEMPT_TIME_COLUMN", source.time_column),
    ):
        if column not in names:
            raise LookupError(f"column {column!r} ({variable}) is not in {source.relation!r}; it has {sorted(names)}")


def weekly_counts_query(source: SourceRelation) -> sql.Composed:
    """Attempts and correct answers per student and UTC week (``user_id, week_start, n_attempts,
    n_correct``) for attempts in ``[%(start_ts)s, %(end_ts)s)``: the one aggregation of the source."""
    return sql.SQL(
        """
        SELECT a.{user}::text AS user_id,
               date_trunc('week', a.{time} AT TIME ZONE 'UTC')::date AS week_start,
               count(*)::int AS n_attempts,
               count(*) FILTER (WHERE a.{correct})::int AS n_correct
        FROM {relation} AS a
        WHERE a.{time} >= %(start_ts)s AND a.{time} < %(end_ts)s
          AND a.{user} IS NOT NULL AND a.{correct} IS NOT NULL
        GROUP BY 1, 2
        """
    ).format(
        user=sql.Identifier(source.user_column),
        time=sql.Identifier(source.time_column),
        correct=sql.Identifier(source.correct_column),
        relation=relation_sql(source.relation),
    )


def replace_weekly_scores(conn: psycopg.Connection, source: SourceRelation, window: ScoreWindow) -> int:
    """Aggregate attempts into per-student weekly accuracy for ``window`` in SQL, replacing what the
    partition held. Returns the number of rows written."""
    query = sql.SQL(
        """
        INSERT INTO weekly_scores
            (as_of_week, user_id, week, week_start, n_attempts, n_correct, score, lookback_weeks)
        SELECT %(as_of)s, s.user_id, (s.week_start - %(start)s::date) / 7, s.week_start,
               s.n_attempts, s.n_correct, s.n_correct::float8 / s.n_attempts, %(lookback)s
        FROM ({counts}) AS s
        """
    ).format(counts=weekly_counts_query(source))
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
#: the partition's frame as Arrow reads it: ids stay exact text (leading zeros, ids that look like numbers)
_WEEKLY_SCORE_SCHEMA = pa.schema(
    zip(
        WEEKLY_SCORE_COLUMNS,
        [pa.string(), pa.int64(), pa.float64(), pa.int64(), pa.int64(), pa.date32()],
        strict=True,
    )
)


def read_weekly_scores(conn: psycopg.Connection, as_of_week: dt.date) -> pd.DataFrame:
    """The partition's rows as a frame with columns ``WEEKLY_SCORE_COLUMNS`` (sorted by student, week):
    one COPY parsed by Arrow as it streams in (at 10 M rows a Python tuple per row costs a minute and
    gigabytes). ``student`` is pandas' Arrow-backed ``str``, ``week_start`` an Arrow date column (no
    Python object per row); scores exact to the bit."""
    query = sql.SQL(
        """SELECT user_id, week, score, n_attempts, n_correct, week_start FROM weekly_scores
           WHERE as_of_week = {} ORDER BY user_id, week"""
    ).format(sql.Literal(as_of_week))
    table = bulk_sql.copy_out_table(conn, query, _WEEKLY_SCORE_SCHEMA)
    return table.to_pandas(types_mapper={pa.date32(): pd.ArrowDtype(pa.date32())}.get)


def weekly_scores_lookback(conn: psycopg.Connection, as_of_week: dt.date) -> int | None:
    row = conn.execute("SELECT max(lookback_weeks) FROM weekly_scores WHERE as_of_week = %s", (as_of_week,)).fetchone()
    return row[0] if row else None


def weekly_scores_problems(conn: psycopg.Connection, as_of_week: dt.date) -> dict[str, int]:
    """Counts of what the weekly_scores check refuses (all zero but ``rows`` when healthy)."""
    row = fetch_one(
        conn,
        """SELECT count(*),
                  count(*) FILTER (WHERE score < 0 OR score > 1 OR score IS NULL OR score = 'NaN'),
                  count(*) - count(DISTINCT (user_id, week))
           FROM weekly_scores WHERE as_of_week = %s""",
        (as_of_week,),
    )
    return {"rows": row[0], "scores_outside_0_1": row[1], "duplicate_student_weeks": row[2]}


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
    return fetch_one(conn, "SELECT count(DISTINCT user_id) FROM weekly_scores WHERE as_of_week = %s", (as_of_week,))[0]
