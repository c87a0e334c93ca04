"""SQL of the weekly_scores stage: the source relation, its aggregation per student and UTC week, and
reading a partition back."""

from __future__ import annotations

import dataclasses
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


def partition_name(as_of_week: dt.date) -> str:
    """The table of one week's weekly_scores rows (schema.sql)."""
    return f"weekly_scores_p{as_of_week:%Y%m%d}"


def create_staged_partition(conn: psycopg.Connection, as_of_week: dt.date) -> sql.Identifier:
    """Create, in the caller's transaction, the table that :func:`swap_in_staged_partition` will swap in for
    the week's rows: like weekly_scores, without an index, with a CHECK that its rows are of the week (so
    ATTACH skips a scan proving it; checked per row as they are written, no scan either)."""
    name = partition_name(as_of_week)
    staging = sql.Identifier(f"{name}_new")
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (LIKE weekly_scores INCLUDING DEFAULTS INCLUDING CONSTRAINTS, "
            "CONSTRAINT {} CHECK (as_of_week = {}))"
        ).format(staging, sql.Identifier(f"{name}_week"), sql.Literal(as_of_week))
    )
    return staging


def swap_in_staged_partition(conn: psycopg.Connection, as_of_week: dt.date) -> None:
    """Index the staged table of the week (its primary key in one sorted build: half the time of filling
    it row by row, 1.9 s against 3.3 s for 1.1 M rows), analyse it, and swap it in for the week's table,
    within the caller's transaction: readers of other weeks wait only for the swap, not for the writing."""
    name = partition_name(as_of_week)
    staging, final = sql.Identifier(f"{name}_new"), sql.Identifier(name)
    staging_key, final_key = sql.Identifier(f"{name}_new_pkey"), sql.Identifier(f"{name}_pkey")
    conn.execute(
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} PRIMARY KEY (as_of_week, user_id, week)").format(staging, staging_key)
    )
    conn.execute(sql.SQL("ANALYZE {}").format(staging))
    # the swap: the parent first, always (two swaps taking the default partition first could deadlock)
    conn.execute("LOCK TABLE weekly_scores IN ACCESS EXCLUSIVE MODE")
    conn.execute("DELETE FROM weekly_scores_default WHERE as_of_week = %s", (as_of_week,))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(final))
    conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(staging, final))
    conn.execute(sql.SQL("ALTER INDEX {} RENAME TO {}").format(staging_key, final_key))
    conn.execute(
        sql.SQL("ALTER TABLE weekly_scores ATTACH PARTITION {} FOR VALUES IN ({})").format(
            final, sql.Literal(as_of_week)
        )
    )


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


#: the columns a fit reads, as Arrow reads them (``student`` exact text; no pandas: a million students'
#: 10.9 M rows stay a few hundred MB)
_FIT_ROW_SCHEMA = pa.schema(
    [("student", pa.string()), ("week", pa.int32()), ("score", pa.float64()), ("n_attempts", pa.int32())]
)


def read_fit_rows(conn: psycopg.Connection, as_of_week: dt.date) -> pa.Table:
    """The partition's rows as the fit needs them: an Arrow table (student, week, score, n_attempts),
    sorted by student and week, scores exact to the bit."""
    query = sql.SQL(
        """SELECT user_id, week, score, n_attempts FROM weekly_scores
           WHERE as_of_week = {} ORDER BY user_id, week"""
    ).format(sql.Literal(as_of_week))
    return bulk_sql.copy_out_table(conn, query, _FIT_ROW_SCHEMA)


@dataclasses.dataclass(frozen=True)
class WeekStudents:
    """A partition's students (sorted, as text) and how many rows it holds, without the rows."""

    students: pd.Series
    n_rows: int


def read_week_students(conn: psycopg.Connection, as_of_week: dt.date) -> WeekStudents:
    query = sql.SQL(
        """SELECT user_id, count(*) FROM weekly_scores WHERE as_of_week = {}
           GROUP BY user_id ORDER BY user_id"""
    ).format(sql.Literal(as_of_week))
    table = bulk_sql.copy_out_table(conn, query, pa.schema([("student", pa.string()), ("rows", pa.int64())]))
    students = table.column("student").to_pandas().rename("student")
    return WeekStudents(students, int(table.column("rows").to_numpy().sum()))


def weekly_scores_lookback(conn: psycopg.Connection, as_of_week: dt.date) -> int | None:
    """The lookback the partition was scored with (None: no rows). A partition is written by one
    statement with one lookback, so any row says it; the primary key's index finds one at once."""
    row = conn.execute(
        "SELECT lookback_weeks FROM weekly_scores WHERE as_of_week = %s LIMIT 1", (as_of_week,)
    ).fetchone()
    return row[0] if row else None


def weekly_scores_problems(conn: psycopg.Connection, as_of_week: dt.date) -> dict[str, int]:
    """Counts of what the weekly_scores check refuses (all zero but ``rows`` when healthy). Duplicate
    (student, week) rows are counted only when no unique index rules them out: with the schema's primary
    key they cannot exist, and counting distinct pairs costs more than the rest (12 s at a million
    students); a table created otherwise (by the platform, before this schema) is still counted."""
    duplicates = sql.SQL("0" if _student_weeks_unique(conn) else "count(*) - count(DISTINCT (user_id, week))")
    row = fetch_one(
        conn,
        sql.SQL(
            """SELECT count(*),
                      count(*) FILTER (WHERE score < 0 OR score > 1 OR score IS NULL OR score = 'NaN'),
                      {}
               FROM weekly_scores WHERE as_of_week = %s"""
        ).format(duplicates),
        (as_of_week,),
    )
    return {"rows": row[0], "scores_outside_0_1": row[1], "duplicate_student_weeks": row[2]}


def _student_weeks_unique(conn: psycopg.Connection) -> bool:
    """Whether a unique index of weekly_scores covers exactly (as_of_week, user_id, week), in any order."""
    [unique] = fetch_one(
        conn,
        """SELECT EXISTS (
               SELECT 1 FROM pg_index AS i
               WHERE i.indrelid = to_regclass('weekly_scores') AND i.indisunique AND i.indpred IS NULL
                 AND i.indexprs IS NULL
                 AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute AS a
                      WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                     = ARRAY['as_of_week', 'user_id', 'week'])""",
    )
    return bool(unique)


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
