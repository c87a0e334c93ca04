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
    """Aggregate attempts into per-student weekly accuracy for ``window`` in SQL and store them as the
    partition's rows (weekly_scores_rows), replacing what the partition held, in the caller's transaction.
    Returns the number of rows written. (The asset reads kept weeks instead: kept_weeks.py.)"""
    query = sql.SQL(
        """
        INSERT INTO weekly_scores_rows
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
    delete_partition(conn, window.as_of_week)
    return conn.execute(query, params).rowcount


def delete_partition(conn: psycopg.Connection, as_of_week: dt.date) -> None:
    """Delete the partition's rows, whether stored or read from kept weeks (the kept weeks stay), in the
    caller's transaction."""
    conn.execute("DELETE FROM weekly_score_weeks WHERE as_of_week = %s", (as_of_week,))
    conn.execute("DELETE FROM weekly_scores_rows WHERE as_of_week = %s", (as_of_week,))


# A partition read from kept weeks arrives week by week; it is sorted by (student, week) once read, by Arrow:
# in byte order (the order np.unique and Python give, whatever the database's locale), and in a fifth of the
# time PostgreSQL's sort takes (0.13 s against 0.75 s for 1 M rows, measured). The memory is for grouping
# a million students in the database without spilling to disk.
READ_WORK_MEM = "256MB"


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.sort_by([(key, "ascending") for key in keys])


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
    """The partition's rows as a frame with columns ``WEEKLY_SCORE_COLUMNS`` (sorted by student, in byte
    order, and week):
    one COPY parsed by Arrow as it streams in (at 10 M rows a Python tuple per row costs a minute and
    gigabytes). ``student`` is pandas' Arrow-backed ``str``, ``week_start`` an Arrow date column (no
    Python object per row); scores exact to the bit."""
    query = sql.SQL(
        """SELECT user_id, week, score, n_attempts, n_correct, week_start FROM weekly_scores
           WHERE as_of_week = {}"""
    ).format(sql.Literal(as_of_week))
    table = bulk_sql.copy_out_table(conn, query, _WEEKLY_SCORE_SCHEMA, work_mem=READ_WORK_MEM)
    return _sorted(table, ["student", "week"]).to_pandas(types_mapper={pa.date32(): pd.ArrowDtype(pa.date32())}.get)


#: the columns a fit reads, as Arrow reads them (``student`` exact text; no pandas: a million students'
#: 10.9 M rows stay a few hundred MB)
_FIT_ROW_SCHEMA = pa.schema(
    [("student", pa.string()), ("week", pa.int32()), ("score", pa.float64()), ("n_attempts", pa.int32())]
)


def read_fit_rows(conn: psycopg.Connection, as_of_week: dt.date) -> pa.Table:
    """The partition's rows as the fit needs them: an Arrow table (student, week, score, n_attempts),
    sorted by student (byte order) and week, scores exact to the bit."""
    query = sql.SQL("SELECT user_id, week, score, n_attempts FROM weekly_scores WHERE as_of_week = {}").format(
        sql.Literal(as_of_week)
    )
    table = bulk_sql.copy_out_table(conn, query, _FIT_ROW_SCHEMA, work_mem=READ_WORK_MEM)
    return _sorted(table, ["student", "week"])


@dataclasses.dataclass(frozen=True)
class WeekStudents:
    """A partition's students (sorted in byte order, as text) and how many rows it holds, without the rows."""

    students: pd.Series
    n_rows: int


def read_week_students(conn: psycopg.Connection, as_of_week: dt.date) -> WeekStudents:
    query = sql.SQL("SELECT user_id, count(*) FROM weekly_scores WHERE as_of_week = {} GROUP BY user_id").format(
        sql.Literal(as_of_week)
    )
    schema = pa.schema([("student", pa.string()), ("rows", pa.int64())])
    table = _sorted(bulk_sql.copy_out_table(conn, query, schema, work_mem=READ_WORK_MEM), ["student"])
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
    """Whether (as_of_week, user_id, week) is unique in weekly_scores by construction: the schema's view
    (a partition's kept weeks are one version per week, each unique per student, and never stored rows
    too) over stored rows under such a key; or a table (made otherwise, by the platform) with a unique
    index covering exactly those columns, in any order."""
    [kind] = fetch_one(conn, "SELECT relkind FROM pg_class WHERE oid = to_regclass('weekly_scores')")
    stored = "weekly_scores_rows" if kind == "v" else "weekly_scores"
    [unique] = fetch_one(
        conn,
        """SELECT EXISTS (
               SELECT 1 FROM pg_index AS i
               WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL
                 AND i.indexprs IS NULL
                 AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute AS a
                      WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey))
                     = ARRAY['as_of_week', 'user_id', 'week'])""",
        (stored,),
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
           ORDER BY user_id COLLATE "C", week LIMIT %s""",
        (as_of_week, limit),
    ).fetchall()
    return pd.DataFrame(rows, columns=["student", "week", "score", "n_attempts"])


def count_students(conn: psycopg.Connection, as_of_week: dt.date) -> int:
    """The partition's distinct students, grouped by hashing (count(DISTINCT) would sort every row)."""
    query = "SELECT count(*) FROM (SELECT user_id FROM weekly_scores WHERE as_of_week = %s GROUP BY user_id) AS s"
    return fetch_one(conn, query, (as_of_week,))[0]
