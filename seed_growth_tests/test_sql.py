"""The database contract and the SQL aggregation, against the real PostgreSQL."""

import datetime as dt
import json

import pytest

from seed_growth.settings import SourceRelation
from seed_growth.sql import demo as demo_sql
from seed_growth.sql import kept_weeks as kept_sql
from seed_growth.sql import kpi as kpi_sql
from seed_growth.sql import schema as schema_sql
from seed_growth.sql import scores as scores_sql
from seed_growth.window import ScoreWindow

WINDOW = ScoreWindow(dt.date(2026, 11, 16), lookback_weeks=3)  # weeks of Nov 2, Nov 9, Nov 16


def add_attempts(conn, rows, relation="attempt"):
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {relation} (user_id, is_correct, attempted_at) VALUES (%s, %s, %s)", rows)


def aggregate(conn, source: SourceRelation | None = None, window=WINDOW):
    source = source or SourceRelation()
    with conn.transaction():
        n = scores_sql.replace_weekly_scores(conn, source, window)
    return n, scores_sql.read_weekly_scores(conn, window.as_of_week)


def test_window_bounds():
    assert WINDOW.start == dt.date(2026, 11, 2) and WINDOW.end == dt.date(2026, 11, 23)
    assert WINDOW.as_of_index == 2 and WINDOW.week_index(dt.date(2026, 11, 22)) == 2
    with pytest.raises(ValueError, match="not a Monday"):
        ScoreWindow(dt.date(2026, 11, 17), 3)


def test_aggregation_by_utc_week_with_gaps(conn):
    add_attempts(
        conn,
        [
            ("a", True, "2026-11-01 23:59:59+00"),  # before the window
            ("a", True, "2026-11-02 00:00:00+00"),  # week 0, first second
            ("a", False, "2026-11-08 23:59:59+00"),  # week 0, last second
            ("a", True, "2026-11-09 01:30:00+02"),  # = Nov 8 23:30 UTC: still week 0
            ("a", True, "2026-11-16 00:00:00+00"),  # week 2 (week 1 missed)
            ("a", True, "2026-11-23 00:00:00+00"),  # after the window
            ("b", True, "2026-11-20 10:00:00+00"),
            ("b", False, "2026-11-21 10:00:00+00"),
            ("b", True, "2026-11-22 23:59:59+00"),  # week 2: 2 of 3
            ("c", True, "2026-10-20 10:00:00+00"),  # no attempts in the window: absent, not zero
        ],
    )
    n, scores = aggregate(conn)
    assert n == 3
    got = {(r.student, r.week): (r.score, r.n_attempts, r.week_start) for r in scores.itertuples()}
    assert got == {
        ("a", 0): (pytest.approx(2 / 3), 3, dt.date(2026, 11, 2)),
        ("a", 2): (1.0, 1, dt.date(2026, 11, 16)),
        ("b", 2): (pytest.approx(2 / 3), 3, dt.date(2026, 11, 16)),
    }
    assert scores_sql.weekly_scores_problems(conn, WINDOW.as_of_week) == {
        "rows": 3,
        "scores_outside_0_1": 0,
        "duplicate_student_weeks": 0,
    }


def test_duplicate_student_weeks_counted_when_no_unique_index_rules_them_out(conn):
    add_attempts(conn, [("a", True, "2026-11-10 10:00:00+00")])
    aggregate(conn)
    assert scores_sql._student_weeks_unique(conn)  # the schema's view over stored rows with a primary key
    conn.execute("DROP VIEW weekly_scores")
    conn.execute("ALTER TABLE weekly_scores_rows RENAME TO weekly_scores")  # a table made otherwise
    conn.execute("ALTER TABLE weekly_scores DROP CONSTRAINT weekly_scores_rows_pkey")
    conn.execute("CREATE UNIQUE INDEX ON weekly_scores (as_of_week, user_id, week, n_attempts)")  # not enough
    assert not scores_sql._student_weeks_unique(conn)
    conn.execute("INSERT INTO weekly_scores SELECT as_of_week, user_id, week, week_start, n_attempts + 1, n_correct,"
                 " score, lookback_weeks FROM weekly_scores")  # fmt: skip
    assert scores_sql.weekly_scores_problems(conn, WINDOW.as_of_week)["duplicate_student_weeks"] == 1


def test_rematerializing_replaces_the_partition_only(conn):
    add_attempts(conn, [("a", True, "2026-11-10 10:00:00+00")])
    other = ScoreWindow(dt.date(2026, 11, 9), 3)
    aggregate(conn, window=other)
    aggregate(conn)
    add_attempts(conn, [("a", False, "2026-11-10 11:00:00+00")])
    n, scores = aggregate(conn)
    assert n == 1 and scores["score"].tolist() == [0.5]
    assert scores_sql.read_weekly_scores(conn, other.as_of_week)["score"].tolist() == [1.0]  # untouched


def test_empty_window(conn):
    add_attempts(conn, [("a", True, "2026-10-01 10:00:00+00")])
    n, scores = aggregate(conn)
    assert n == 0 and scores.empty
    assert scores_sql.weekly_scores_problems(conn, WINDOW.as_of_week)["rows"] == 0


def test_configured_relation_and_columns(conn):
    conn.execute("CREATE SCHEMA platform")
    conn.execute("CREATE TABLE platform.raw (learner bigint, ok boolean, at timestamptz)")
    conn.execute("CREATE VIEW platform.answers AS SELECT learner, ok, at FROM platform.raw")
    conn.execute("INSERT INTO platform.raw VALUES (7, true, '2026-11-17 08:00+00'), (7, NULL, '2026-11-17 09:00+00')")
    source = SourceRelation(relation="platform.answers", user_column="learner", correct_column="ok", time_column="at")
    scores_sql.check_source(conn, source)
    n, scores = aggregate(conn, source)
    assert n == 1 and scores.iloc[0]["student"] == "7" and scores.iloc[0]["n_attempts"] == 1  # NULL answers skipped
    conn.execute("DROP SCHEMA platform CASCADE")


def test_missing_relation_and_column_are_named(conn):
    with pytest.raises(LookupError, match=r"source relation 'nowhere' \(ATTEMPT_RELATION\) does not exist"):
        scores_sql.check_source(conn, SourceRelation(relation="nowhere"))
    with pytest.raises(LookupError, match=r"column 'answered_at' \(ATTEMPT_TIME_COLUMN\) is not in 'attempt'"):
        scores_sql.check_source(conn, SourceRelation(time_column="answered_at"))


def test_schema_applies_twice_without_change(conn):
    def snapshot():
        return conn.execute(
            """SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
               WHERE table_schema = 'public' ORDER BY 1, 2"""
        ).fetchall(), conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()

    conn.execute("INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES ('a', '2026-11-16', '{\"streak\": 3}')")
    before = snapshot()
    schema_sql.apply_schema(conn, demo_source=True)
    schema_sql.apply_schema(conn, demo_source=True)
    assert snapshot() == before
    assert demo_sql.count_rows(conn, "weekly_kpi") == 1


def test_kpi_merge_keeps_other_keys_and_is_all_or_nothing(conn):
    import pandas as pd

    week = dt.date(2026, 11, 16)
    conn.execute(
        "INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES ('a', %s, %s), ('b', %s, %s)",
        (week, json.dumps({"streak": 3, "P": 0.1}), week - dt.timedelta(weeks=1), json.dumps({"streak": 1})),
    )
    payloads = pd.DataFrame({"student": ["a", "c"], "P": [0.7, 0.2]})
    with conn.transaction():
        assert kpi_sql.merge_kpis(conn, week, payloads, {"P_method": "x"}) == 2
    rows = dict(conn.execute("SELECT user_id || '@' || week_start, kpis FROM weekly_kpi").fetchall())
    assert rows == {
        "a@2026-11-16": {"streak": 3, "P": 0.7, "P_method": "x"},
        "b@2026-11-09": {"streak": 1},
        "c@2026-11-16": {"P": 0.2, "P_method": "x"},
    }
    bad = pd.DataFrame({"student": ["a", "d"], "P": [0.9, float("nan")]})
    with pytest.raises(ValueError):
        with conn.transaction():
            kpi_sql.merge_kpis(conn, week, bad)
    assert dict(conn.execute("SELECT user_id || '@' || week_start, kpis FROM weekly_kpi").fetchall()) == rows


@pytest.mark.parametrize("partitioned", [False, True], ids=["one table", "a table per week"])
def test_a_weekly_scores_table_of_earlier_versions_becomes_its_stored_rows(conn, partitioned):
    conn.execute("DROP VIEW weekly_scores CASCADE")
    conn.execute("DROP TABLE weekly_scores_rows, weekly_score_weeks, weekly_attempt_counts, weekly_attempt_weeks")
    conn.execute(
        f"""CREATE TABLE weekly_scores (as_of_week date NOT NULL, user_id text NOT NULL,
               week integer NOT NULL CHECK (week >= 0), week_start date NOT NULL,
               n_attempts integer NOT NULL CHECK (n_attempts > 0),
               n_correct integer NOT NULL CHECK (n_correct >= 0 AND n_correct <= n_attempts),
               score double precision NOT NULL CHECK (score >= 0 AND score <= 1),
               lookback_weeks integer NOT NULL CHECK (lookback_weeks > 0),
               PRIMARY KEY (as_of_week, user_id, week)) {"PARTITION BY LIST (as_of_week)" if partitioned else ""}"""
    )  # as earlier versions created it
    if partitioned:
        conn.execute("CREATE TABLE weekly_scores_default PARTITION OF weekly_scores DEFAULT")
        conn.execute("CREATE TABLE weekly_scores_p20261116 PARTITION OF weekly_scores FOR VALUES IN ('2026-11-16')")
    conn.execute(
        """CREATE TABLE weekly_attempt_weeks (source_id integer NOT NULL REFERENCES weekly_attempt_sources
               ON DELETE CASCADE, week_start date NOT NULL, source_rows bigint NOT NULL,
               source_correct bigint NOT NULL, source_max_time timestamptz, source_definition text NOT NULL,
               n_students integer NOT NULL, n_attempts bigint NOT NULL, aggregated_at timestamptz NOT NULL,
               PRIMARY KEY (source_id, week_start))"""
    )
    conn.execute(
        """CREATE TABLE weekly_attempt_counts (source_id integer NOT NULL, week_start date NOT NULL,
               user_id text NOT NULL, n_attempts integer NOT NULL, n_correct integer NOT NULL,
               PRIMARY KEY (source_id, week_start, user_id))"""
    )  # kept weeks as the first incremental version kept them: one per week
    rows = [
        (dt.date(2026, 11, 9), "a", 0, dt.date(2026, 10, 26), 2, 1, 0.5, 3),
        (dt.date(2026, 11, 16), "a", 1, dt.date(2026, 11, 9), 4, 3, 0.75, 3),
        (dt.date(2026, 11, 16), "b", 2, dt.date(2026, 11, 16), 1, 0, 0.0, 3),
    ]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO weekly_scores VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    source = kept_sql.source_id(conn, SourceRelation())
    conn.execute(
        "INSERT INTO weekly_attempt_weeks VALUES (%s, '2026-11-09', 1, 1, '2026-11-10 10:00+00', %s, 1, 1, now())",
        (source, kept_sql.source_definition(conn, SourceRelation())),
    )
    conn.execute("INSERT INTO weekly_attempt_counts VALUES (%s, '2026-11-09', 'a', 1, 1)", (source,))
    schema_sql.apply_schema(conn)
    schema_sql.apply_schema(conn)  # idempotent
    [kind] = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'weekly_scores'::regclass").fetchone()
    assert kind == "v"
    assert sorted(conn.execute("SELECT * FROM weekly_scores").fetchall()) == sorted(rows)
    assert sorted(conn.execute("SELECT * FROM weekly_scores_rows").fetchall()) == sorted(rows)
    assert scores_sql._student_weeks_unique(conn)
    assert conn.execute("SELECT week_start, version, n_students FROM weekly_attempt_weeks").fetchall() == [
        (dt.date(2026, 11, 9), 0, 1)
    ]  # the kept week is version 0 of its week
    assert conn.execute("SELECT user_id, version FROM weekly_attempt_counts").fetchall() == [("a", 0)]
    add_attempts(conn, [("a", True, "2026-11-10 10:00:00+00"), ("c", True, "2026-11-17 10:00:00+00")])
    window = ScoreWindow(dt.date(2026, 11, 16), 3)
    kept_sql.extract_weekly_scores(conn, SourceRelation(), window, recent_weeks=1)
    scores = scores_sql.read_weekly_scores(conn, window.as_of_week)
    assert list(zip(scores["student"], scores["week"], strict=True)) == [("a", 1), ("c", 2)]  # Nov 9 reused
    assert scores_sql.read_weekly_scores(conn, dt.date(2026, 11, 9))["student"].tolist() == ["a"]  # stored rows
