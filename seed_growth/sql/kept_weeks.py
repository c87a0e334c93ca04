"""Incremental extraction: each UTC week's per-student counts are aggregated from the source once and kept
(``weekly_attempt_counts``, bookkeeping in ``weekly_attempt_weeks``), and a partition of the
``weekly_scores`` view reads the kept weeks of its window (``weekly_score_weeks``: per week of the window,
the kept version it reads). A run writes only the weeks it aggregates, never the other weeks' rows again.

A run of a partition (``extract_weekly_scores``):

1. plans each week of the window (``plan_weeks``): aggregate it when it is not kept yet, is one of the
   ``recent_weeks`` most recent weeks of the window (late attempts), the rebuild was asked for, or the
   source no longer matches what was kept; otherwise reuse it;
2. aggregates the weeks that need it whatever the source says (``aggregate_week``, each in a transaction
   of its own: the fingerprint and the counts come from one scan of the week, so they agree) as a new
   version of the week: the newer half on a second connection when it is given, while the first one goes
   on with step 3 and then aggregates the rest;
3. finds the stale kept weeks with one query over the source (``source_fingerprints``): per week, its row
   count, correct answers and latest attempt time (an index-only scan given an index on the time column
   that includes the answer), compared with the fingerprint taken when the week was aggregated, and the
   relation's definition (view text, column types) compared with the one it was aggregated under; and
   re-aggregates each such week;
4. points the partition at its weeks' versions in one transaction (``assign_partition_weeks``), and deletes
   the versions that no partition reads any more and are not the latest of their week.

A partition's rows never change once written: a week aggregated again is a new version, and the version a
partition read stays while it reads it.

The whole run holds a PostgreSQL advisory lock per source, so runs of two partitions at once (a backfill)
do not aggregate the same week twice at the same time.

What the fingerprint cannot see (documented in the README): a change that keeps a week's row count,
correct-answer count and latest time (an attempt moved from one student to another, one answer corrected
to right and another to wrong, an attempt's time moved within the week but not past the latest, a NULL
user filled in, a NULL answer set to false), and a change in a relation underneath the named view that
keeps those counts (only the named relation's own definition is compared). The ``recent_weeks``
re-aggregation and the rebuild cover those.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
from psycopg import sql

from seed_growth.settings import SourceRelation
from seed_growth.sql import scores as scores_sql
from seed_growth.sql.schema import fetch_one, relation_sql
from seed_growth.window import ScoreWindow

# Per transaction (SET LOCAL): aggregating a week of ~100,000 students stays in memory instead of spilling to
# disk at PostgreSQL's default of 4 MB.
WORK_MEM = "128MB"

REUSE, AGGREGATE = "reuse", "aggregate"

#: what aggregating some weeks gives: the seconds it took, and each week's new version
Aggregated = tuple[float, dict[dt.date, int]]


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What a cheap pass over one week of the source says about it: every row of the week (NULL user or
    answer included), those with a correct answer, and the latest attempt time (None: no rows)."""

    rows: int
    correct: int
    max_time: dt.datetime | None

    def differences(self, now: Fingerprint) -> list[str]:
        """How ``now`` differs from this (kept) fingerprint, in words; empty when it does not."""
        changes = []
        if now.rows != self.rows:
            changes.append(f"rows {self.rows} -> {now.rows}")
        if now.correct != self.correct:
            changes.append(f"correct {self.correct} -> {now.correct}")
        if now.max_time != self.max_time:
            changes.append(f"latest attempt {_iso(self.max_time)} -> {_iso(now.max_time)}")
        return changes


@dataclasses.dataclass(frozen=True)
class KeptWeek:
    """A week's bookkeeping row: its fingerprint and the source definition it was aggregated under."""

    week_start: dt.date
    version: int
    fingerprint: Fingerprint
    definition: str
    n_students: int
    n_attempts: int
    aggregated_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class WeekPlan:
    """What a run does with one week of its window, and why."""

    week_start: dt.date
    action: str  # REUSE or AGGREGATE
    reason: str
    stale: bool = False  # re-aggregated because the source changed after the week was kept


@dataclasses.dataclass(frozen=True)
class Extraction:
    """What a partition's extraction did: the partition's weekly_scores rows, each week's plan, the seconds
    spent finding stale weeks, aggregating weeks (on either connection) and assigning the partition its
    weeks (waiting for the weeks aggregated meanwhile included), and the run's wall time."""

    rows: int
    weeks: tuple[WeekPlan, ...]
    detect_seconds: float
    aggregate_seconds: float
    assemble_seconds: float
    seconds: float

    def weeks_with(self, action: str, *, stale: bool | None = None) -> list[WeekPlan]:
        return [w for w in self.weeks if w.action == action and (stale is None or w.stale == stale)]


# ------------------------------------------------------------------------------------------ planning


def plan_weeks(
    window: ScoreWindow,
    kept: dict[dt.date, KeptWeek],
    fingerprints: dict[dt.date, Fingerprint],
    definition: str,
    *,
    recent_weeks: int,
    rebuild: bool,
) -> list[WeekPlan]:
    """Each week of ``window``: reuse the kept week, or aggregate it from the source, and why.
    ``fingerprints`` holds the source's present fingerprint of the kept weeks that could be reused."""
    plans = []
    for index in range(window.lookback_weeks):
        monday = window.monday_of(index)
        week = kept.get(monday)
        if rebuild:
            plans.append(WeekPlan(monday, AGGREGATE, "rebuild (REBUILD_KEPT_WEEKS)"))
        elif index >= window.lookback_weeks - recent_weeks:
            plans.append(WeekPlan(monday, AGGREGATE, f"recent week (REAGGREGATE_RECENT_WEEKS={recent_weeks})"))
        elif week is None:
            plans.append(WeekPlan(monday, AGGREGATE, "not kept yet"))
        elif week.definition != definition:
            reason = "stale: the source's definition changed (view text or column types)"
            plans.append(WeekPlan(monday, AGGREGATE, reason, stale=True))
        elif changes := week.fingerprint.differences(fingerprints[monday]):
            plans.append(WeekPlan(monday, AGGREGATE, "stale: " + ", ".join(changes), stale=True))
        else:
            plans.append(WeekPlan(monday, REUSE, f"kept {week.aggregated_at:%Y-%m-%d %H:%M} UTC, unchanged"))
    return plans


def weeks_to_check(
    window: ScoreWindow, kept: dict[dt.date, KeptWeek], definition: str, *, recent_weeks: int, rebuild: bool
) -> list[dt.date]:
    """The kept weeks whose reuse depends on the source's present fingerprint (the others are aggregated
    whatever it says, so the detection query does not read them)."""
    if rebuild:
        return []
    older = window.lookback_weeks - recent_weeks
    mondays = [window.monday_of(i) for i in range(max(older, 0))]
    return [m for m in mondays if m in kept and kept[m].definition == definition]


# ------------------------------------------------------------------------------------------ the source


def source_id(conn: psycopg.Connection, source: SourceRelation) -> int:
    """The id under which ``source``'s weeks are kept (created on first use)."""
    values = (source.relation, source.user_column, source.correct_column, source.time_column)
    select = """SELECT source_id FROM weekly_attempt_sources
                WHERE relation = %s AND user_column = %s AND correct_column = %s AND time_column = %s"""
    row = conn.execute(select, values).fetchone()
    if row is None:  # a concurrent first run may insert it too: then its row is the one
        conn.execute(
            """INSERT INTO weekly_attempt_sources (relation, user_column, correct_column, time_column)
               VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING""",
            values,
        )
        row = fetch_one(conn, select, values)
    return row[0]


def source_definition(conn: psycopg.Connection, source: SourceRelation) -> str:
    """md5 of what the relation is: its kind, a view's text, its three columns' types. Changes when the
    view is redefined or a column's type changes (not when a relation under the view changes)."""
    row = conn.execute(
        """SELECT md5(concat_ws('|', c.relkind,
                      CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
                      (SELECT string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ','
                                         ORDER BY a.attname)
                       FROM pg_attribute AS a
                       WHERE a.attrelid = c.oid AND a.attname = ANY(%(columns)s) AND NOT a.attisdropped)))
           FROM pg_class AS c WHERE c.oid = to_regclass(%(relation)s)""",
        {
            "relation": source.relation,
            "columns": [source.user_column, source.correct_column, source.time_column],
        },
    ).fetchone()
    if row is None:
        raise LookupError(f"source relation {source.relation!r} (ATTEMPT_RELATION) does not exist")
    return row[0]


def fingerprint_query(source: SourceRelation, mondays: Sequence[dt.date]) -> sql.Composed:
    """The query of :func:`source_fingerprints`: per week of ``mondays`` (at least one), a range scan on the
    time column (index-only when an index on it includes the answer column), each a branch of one UNION ALL,
    which PostgreSQL shares among its parallel workers (Parallel Append)."""
    week = sql.SQL(
        """SELECT {monday}::date, count(*), count(*) FILTER (WHERE a.{correct}), max(a.{time})
           FROM {relation} AS a WHERE a.{time} >= {lower} AND a.{time} < {upper}"""
    )
    branches = [
        week.format(
            monday=sql.Literal(monday),
            correct=sql.Identifier(source.correct_column),
            time=sql.Identifier(source.time_column),
            relation=relation_sql(source.relation),
            lower=sql.Literal(_utc_midnight(monday)),
            upper=sql.Literal(_utc_midnight(monday + dt.timedelta(weeks=1))),
        )
        for monday in mondays
    ]
    return sql.SQL("\nUNION ALL\n").join(branches)


def source_fingerprints(
    conn: psycopg.Connection, source: SourceRelation, mondays: Sequence[dt.date]
) -> dict[dt.date, Fingerprint]:
    """The source's present fingerprint of each week in ``mondays``, in one query."""
    if not mondays:
        return {}
    rows = conn.execute(fingerprint_query(source, mondays)).fetchall()
    return {monday: Fingerprint(n_rows, n_correct, max_time) for monday, n_rows, n_correct, max_time in rows}


# ------------------------------------------------------------------------------------------ kept weeks


def kept_weeks(conn: psycopg.Connection, source_key: int, window: ScoreWindow) -> dict[dt.date, KeptWeek]:
    """The bookkeeping of the latest kept version of each of the source's weeks in ``window``."""
    rows = conn.execute(
        """SELECT DISTINCT ON (week_start) week_start, version, source_rows, source_correct, source_max_time,
                  source_definition, n_students, n_attempts, aggregated_at
           FROM weekly_attempt_weeks WHERE source_id = %s AND week_start >= %s AND week_start < %s
           ORDER BY week_start, version DESC""",
        (source_key, window.start, window.end),
    ).fetchall()
    return {
        row[0]: KeptWeek(row[0], row[1], Fingerprint(row[2], row[3], row[4]), row[5], row[6], row[7], row[8])
        for row in rows
    }


def aggregate_week(
    conn: psycopg.Connection, source: SourceRelation, source_key: int, definition: str, monday: dt.date
) -> int:
    """Aggregate the UTC week starting ``monday`` from the source and keep it as a new version of the week,
    in one transaction; returns the version. One scan of the week gives both the per-student counts and the
    week's fingerprint, so they agree (a concurrent late attempt is in both or in neither, and then seen by
    the next run). Attempts with a NULL user or answer are not counted (as in ``weekly_counts_query``); they
    are in the fingerprint. An empty week is kept too. Versions kept before stay as they are (partitions
    may read them)."""
    _require_no_transaction(conn)
    counts = sql.SQL(
        """
        WITH per_user AS MATERIALIZED (
            SELECT a.{user}::text AS user_id, count(*) AS n_rows, count(*) FILTER (WHERE a.{correct}) AS n_true,
                   count(a.{correct}) AS n_answered, max(a.{time}) AS max_time
            FROM {relation} AS a
            WHERE a.{time} >= %(start_ts)s AND a.{time} < %(end_ts)s
            GROUP BY a.{user}::text
        ),
        counted AS (
            INSERT INTO weekly_attempt_counts (source_id, week_start, version, user_id, n_attempts, n_correct)
            SELECT %(source_id)s, %(monday)s, %(version)s, user_id, n_answered, n_true
            FROM per_user
            WHERE user_id IS NOT NULL AND n_answered > 0
            ORDER BY user_id  -- the primary key's order: its index is filled left to right
            RETURNING n_attempts
        )
        INSERT INTO weekly_attempt_weeks
            (source_id, week_start, version, source_rows, source_correct, source_max_time, source_definition,
             n_students, n_attempts, aggregated_at)
        SELECT %(source_id)s, %(monday)s, %(version)s, f.n_rows, f.n_true, f.max_time, %(definition)s,
               k.n_students, k.n_attempts, now()
        FROM (SELECT coalesce(sum(n_rows), 0) AS n_rows, coalesce(sum(n_true), 0) AS n_true,
                     max(max_time) AS max_time
              FROM per_user) AS f,
             (SELECT count(*) AS n_students, coalesce(sum(n_attempts), 0) AS n_attempts FROM counted) AS k
        """
    ).format(
        user=sql.Identifier(source.user_column),
        correct=sql.Identifier(source.correct_column),
        time=sql.Identifier(source.time_column),
        relation=relation_sql(source.relation),
    )
    start = _utc_midnight(monday)
    with conn.transaction():
        conn.execute("SELECT set_config('work_mem', %s, true)", (WORK_MEM,))
        [version] = fetch_one(conn, "SELECT nextval('weekly_attempt_version_seq')")
        conn.execute(
            counts,
            {
                "source_id": source_key,
                "monday": monday,
                "version": version,
                "start_ts": start,
                "end_ts": start + dt.timedelta(weeks=1),
                "definition": definition,
            },
        )
    return version


def assign_partition_weeks(
    conn: psycopg.Connection, source_key: int, window: ScoreWindow, versions: dict[dt.date, int]
) -> int:
    """Make the partition of ``window`` read, for each week of the window, the kept version ``versions``
    names, in one transaction: what it read before (kept weeks, or rows stored in weekly_scores_rows) is
    replaced as a whole. Then delete the versions of the window's weeks that no partition reads and that
    are not the latest of their week. Returns the partition's rows."""
    _require_no_transaction(conn)
    mondays = window.mondays
    missing = [m for m in mondays if m not in versions]
    if missing:
        raise ValueError(f"no kept version given for the weeks {[m.isoformat() for m in missing]}")
    with conn.transaction():
        # two runs of one partition (a retry beside a backfill) replace it one after the other; readers
        # see the partition before or after, never half replaced
        conn.execute("LOCK TABLE weekly_score_weeks IN SHARE ROW EXCLUSIVE MODE")
        scores_sql.delete_partition(conn, window.as_of_week)
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO weekly_score_weeks (as_of_week, week, week_start, lookback_weeks, source_id, version)
                   VALUES (%s, %s, %s, %s, %s, %s)""",
                [
                    (window.as_of_week, i, m, window.lookback_weeks, source_key, versions[m])
                    for i, m in enumerate(mondays)
                ],
            )
        drop_unread_versions(conn, source_key, mondays)
        # the planner must count the partition's weeks right (see extract_weekly_scores): autovacuum would
        # leave these few rows unanalyzed for long
        conn.execute("ANALYZE weekly_score_weeks")
        [rows] = fetch_one(
            conn,
            """SELECT coalesce(sum(k.n_students), 0) FROM weekly_score_weeks AS w
               JOIN weekly_attempt_weeks AS k USING (source_id, week_start, version)
               WHERE w.as_of_week = %s""",
            (window.as_of_week,),
        )
    return int(rows)


def drop_unread_versions(conn: psycopg.Connection, source_key: int, mondays: Sequence[dt.date]) -> None:
    """Delete the kept versions of ``mondays`` that no partition reads, but the latest of each week (the
    one the next run reuses), in the caller's transaction."""
    conn.execute(
        """WITH unread AS (
               DELETE FROM weekly_attempt_weeks AS k
               WHERE k.source_id = %(source)s AND k.week_start = ANY(%(mondays)s::date[])
                 AND k.version < (SELECT max(l.version) FROM weekly_attempt_weeks AS l
                                  WHERE l.source_id = k.source_id AND l.week_start = k.week_start)
                 AND NOT EXISTS (SELECT 1 FROM weekly_score_weeks AS w
                                 WHERE w.source_id = k.source_id AND w.week_start = k.week_start
                                   AND w.version = k.version)
               RETURNING k.week_start, k.version
           )
           DELETE FROM weekly_attempt_counts AS c USING unread AS u
           WHERE c.source_id = %(source)s AND c.week_start = u.week_start AND c.version = u.version""",
        {"source": source_key, "mondays": list(mondays)},
    )


# ------------------------------------------------------------------------------------------ a partition


def extract_weekly_scores(
    conn: psycopg.Connection,
    source: SourceRelation,
    window: ScoreWindow,
    *,
    recent_weeks: int,
    rebuild: bool = False,
    aggregating: psycopg.Connection | None = None,
) -> Extraction:
    """The partition's rows from the kept weeks, aggregating from the source only the weeks that need it
    (see the module's docstring). ``conn`` must be outside a transaction (autocommit): each week is written
    in a transaction of its own, then the partition in one.

    With a second connection ``aggregating`` (autocommit), the newer half of the weeks aggregated whatever
    the source says (new, recent, rebuilt, under another definition) is aggregated on it while ``conn`` runs
    the stale detection and then aggregates the rest: the two database processes use two cores."""
    if recent_weeks < 0:
        raise ValueError(f"recent_weeks must be >= 0, got {recent_weeks}")
    _require_no_transaction(conn)
    if aggregating is not None:
        _require_no_transaction(aggregating)
    key = source_id(conn, source)
    with _source_lock(conn, key), ThreadPoolExecutor(max_workers=1) as pool:
        started = time.perf_counter()
        definition = source_definition(conn, source)
        kept = kept_weeks(conn, key, window)
        checked = weeks_to_check(window, kept, definition, recent_weeks=recent_weeks, rebuild=rebuild)
        known = [m for m in window.mondays if m not in checked]
        aggregate = functools.partial(aggregate_weeks, source=source, source_key=key, definition=definition)
        # the weeks aggregated whatever the source says: the newer half meanwhile on the second connection
        # and the rest on the first after detection, else all of them first
        ahead, after = (known[len(known) // 2 :], known[: len(known) // 2]) if aggregating else (known, [])
        pending = pool.submit(aggregate, aggregating, ahead) if aggregating else _done(aggregate(conn, ahead))
        detecting = time.perf_counter()
        fingerprints = source_fingerprints(conn, source, checked)
        plans = plan_weeks(window, kept, fingerprints, definition, recent_weeks=recent_weeks, rebuild=rebuild)
        detected = time.perf_counter()
        stale = [p.week_start for p in plans if p.action == AGGREGATE and p.week_start not in known]
        stale_seconds, stale_versions = aggregate(conn, [*after, *stale])
        assembling = time.perf_counter()
        known_seconds, known_versions = pending.result()  # raises what the other connection raised
        versions = {p.week_start: kept[p.week_start].version for p in plans if p.action == REUSE}
        rows = assign_partition_weeks(conn, key, window, {**versions, **known_versions, **stale_versions})
        if known_versions or stale_versions:
            # autovacuum analyzes a table only a minute or more after a tenth of it changed: readers planned
            # before that, on no statistics or old ones, join and group a partition's rows by nested loop
            # and sort instead of parallel hashing (the metadata's and checks' queries 2.5x slower, measured)
            conn.execute("ANALYZE weekly_attempt_counts")
        assembled = time.perf_counter()
    return Extraction(
        rows,
        tuple(plans),
        detect_seconds=detected - detecting,
        aggregate_seconds=known_seconds + stale_seconds,
        assemble_seconds=assembled - assembling,
        seconds=assembled - started,
    )


def aggregate_weeks(
    conn: psycopg.Connection, mondays: Sequence[dt.date], *, source: SourceRelation, source_key: int, definition: str
) -> Aggregated:
    """:func:`aggregate_week` each of ``mondays`` in turn; returns the seconds it took and the versions."""
    started = time.perf_counter()
    versions = {monday: aggregate_week(conn, source, source_key, definition, monday) for monday in mondays}
    return time.perf_counter() - started, versions


def _done(value: Aggregated) -> Future[Aggregated]:
    future: Future[Aggregated] = Future()
    future.set_result(value)
    return future


@contextmanager
def _source_lock(conn: psycopg.Connection, key: int) -> Iterator[None]:
    """Wait for, then hold, the session-level advisory lock of one source's kept weeks."""
    name = f"seed_growth.kept_weeks/{key}"
    conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (name,))
    try:
        yield
    finally:
        if not conn.closed:
            try:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (name,))
            except psycopg.Error:
                pass  # the session is gone, and its locks with it


def _require_no_transaction(conn: psycopg.Connection) -> None:
    if not conn.autocommit or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise RuntimeError(
            "the kept-weeks extraction writes in transactions of its own: call it on an autocommit "
            "connection, outside a transaction"
        )


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.UTC)


def _iso(moment: dt.datetime | None) -> str:
    return "none" if moment is None else moment.astimezone(dt.UTC).isoformat(timespec="microseconds")
