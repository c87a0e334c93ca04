"""The database contract and the SQL aggregation, against the real PostgreSQL."""

import datetime as dt
import json

import pytest

from seed_growth.settings import SourceRelation
from seed_growth.sql import demo as demo_sql
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
    assert scores_sql._student_weeks_unique(conn)  # the schema's primary key
    conn.execute("ALTER TABLE weekly_scores DROP CONSTRAINT weekly_scores_pkey")  # a table made otherwise
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


def test_a_weekly_scores_of_one_table_is_converted_to_a_table_per_week(conn):
    conn.execute("DROP TABLE weekly_scores CASCADE")
    conn.execute(
        """CREATE TABLE weekly_scores (as_of_week date NOT NULL, user_id text NOT NULL,
               week integer NOT NULL CHECK (week >= 0), week_start date NOT NULL,
               n_attempts integer NOT NULL CHECK (n_attempts > 0),
               n_correct integer NOT NULL CHECK (n_correct >= 0 AND n_correct <= n_attempts),
               score double precision NOT NULL CHECK (score >= 0 AND score <= 1),
               lookback_weeks integer NOT NULL CHECK (lookback_weeks > 0),
               PRIMARY KEY (as_of_week, user_id, week))"""
    )  # as earlier versions created it
    rows = [
        (dt.date(2026, 11, 9), "a", 0, dt.date(2026, 10, 26), 2, 1, 0.5, 3),
        (dt.date(2026, 11, 16), "a", 1, dt.date(2026, 11, 9), 4, 3, 0.75, 3),
        (dt.date(2026, 11, 16), "b", 2, dt.date(2026, 11, 16), 1, 0, 0.0, 3),
    ]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO weekly_scores VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    schema_sql.apply_schema(conn)
    schema_sql.apply_schema(conn)  # idempotent
    [kind] = conn.execute("SELECT relkind FROM pg_class WHERE oid = 'weekly_scores'::regclass").fetchone()
    tables = conn.execute(
        """SELECT c.relname, (SELECT count(*) FROM weekly_scores AS w WHERE w.tableoid = c.oid) FROM pg_inherits AS i
           JOIN pg_class AS c ON c.oid = i.inhrelid WHERE i.inhparent = 'weekly_scores'::regclass"""
    ).fetchall()
    assert kind == "p"
    assert dict(tables) == {"weekly_scores_default": 0, "weekly_scores_p20261109": 1, "weekly_scores_p20261116": 2}
    assert sorted(conn.execute("SELECT * FROM weekly_scores").fetchall()) == sorted(rows)
    assert scores_sql._student_weeks_unique(conn)
