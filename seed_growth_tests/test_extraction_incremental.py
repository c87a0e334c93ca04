"""Incremental extraction (seed_growth/sql/kept_weeks.py), against the real PostgreSQL: kept weeks are
reused, only what is needed is read from the source, stale weeks are detected and re-aggregated, and the
result is always what a full aggregation from scratch gives."""

import datetime as dt
import random

import dagster as dg
import psycopg
import pytest

from seed_growth.settings import GrowthSettings, SettingsError, SourceRelation
from seed_growth.sql import kept_weeks as kept_sql
from seed_growth.sql import scores as scores_sql
from seed_growth.window import ScoreWindow

WINDOW = ScoreWindow(dt.date(2026, 11, 16), lookback_weeks=4)  # weeks of Oct 26, Nov 2, Nov 9, Nov 16
MONDAYS = WINDOW.mondays
OLD_WEEK, RECENT_WEEK = MONDAYS[0], MONDAYS[-1]


def add_attempts(conn, rows, relation="attempt"):
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {relation} (user_id, is_correct, attempted_at) VALUES (%s, %s, %s)", rows)


def at(monday: dt.date, hours: float = 10.0) -> dt.datetime:
    return dt.datetime.combine(monday, dt.time(0), tzinfo=dt.UTC) + dt.timedelta(hours=hours)


def extract(conn, window=WINDOW, source=None, recent_weeks=1, rebuild=False, aggregating=None) -> kept_sql.Extraction:
    return kept_sql.extract_weekly_scores(
        conn, source or SourceRelation(), window, recent_weeks=recent_weeks, rebuild=rebuild, aggregating=aggregating
    )


@pytest.fixture
def second_conn(clean_database):
    """Another autocommit session of the test database (the weeks aggregated while the kept ones are checked)."""
    with psycopg.connect(clean_database, autocommit=True) as connection:
        yield connection


def partition_rows(conn, window=WINDOW) -> set[tuple]:
    """The partition's weekly_scores rows (every column but the partition key)."""
    rows = conn.execute(
        """SELECT user_id, week, week_start, n_attempts, n_correct, score, lookback_weeks FROM weekly_scores
           WHERE as_of_week = %s""",
        (window.as_of_week,),
    ).fetchall()
    return set(rows)


def from_scratch(conn, window=WINDOW, source=None) -> set[tuple]:
    """What a full aggregation of the source gives for the window (the pre-incremental query)."""
    query = scores_sql.weekly_counts_query(source or SourceRelation())
    rows = conn.execute(query, {"start_ts": window.start_utc, "end_ts": window.end_utc}).fetchall()
    return {
        (user, (week - window.start).days // 7, week, n, correct, correct / n, window.lookback_weeks)
        for user, week, n, correct in rows
    }


def actions(extraction: kept_sql.Extraction) -> dict[dt.date, str]:
    return {plan.week_start: plan.action for plan in extraction.weeks}


def reasons(extraction: kept_sql.Extraction) -> dict[dt.date, str]:
    return {plan.week_start: plan.reason for plan in extraction.weeks}


def some_attempts(conn):
    add_attempts(
        conn,
        [
            ("old-only", True, at(MONDAYS[0])),
            ("old-only", False, at(MONDAYS[0], 30)),
            ("both", True, at(MONDAYS[1])),
            ("both", True, at(MONDAYS[3])),
            ("recent-only", False, at(MONDAYS[3], 50)),
        ],
    )


def test_first_run_aggregates_every_week_and_keeps_the_empty_ones(conn):
    some_attempts(conn)  # week 2 (Nov 9) has no attempts at all
    first = extract(conn)
    assert set(actions(first).values()) == {kept_sql.AGGREGATE}
    assert reasons(first)[OLD_WEEK] == "not kept yet"
    assert reasons(first)[RECENT_WEEK] == "recent week (REAGGREGATE_RECENT_WEEKS=1)"
    assert partition_rows(conn) == from_scratch(conn) and first.rows == 4
    kept = conn.execute(
        "SELECT week_start, source_rows, n_students, n_attempts FROM weekly_attempt_weeks ORDER BY 1"
    ).fetchall()
    assert kept == [(MONDAYS[0], 2, 1, 2), (MONDAYS[1], 1, 1, 1), (MONDAYS[2], 0, 0, 0), (MONDAYS[3], 2, 2, 2)]


def test_second_run_reads_only_the_recent_weeks_from_the_source(conn):
    """Proof by the source itself: the view's user column says (as a NOTICE) whenever a row's user is read.
    Change detection reads only the time and answer columns, so on the second run only the recent week's
    users are read; the kept rows of the old weeks are not rewritten either (same xmin)."""
    conn.execute(
        """CREATE OR REPLACE FUNCTION noting_user(u text) RETURNS text LANGUAGE plpgsql STABLE AS
           $$ BEGIN RAISE NOTICE 'user read: %', u; RETURN u; END $$"""
    )
    conn.execute(
        "CREATE VIEW noted_attempt AS SELECT noting_user(user_id) AS user_id, is_correct, attempted_at FROM attempt"
    )
    source = SourceRelation(relation="noted_attempt")
    some_attempts(conn)
    read: list[str] = []
    conn.add_notice_handler(lambda notice: read.append(notice.message_primary or ""))
    extract(conn, source=source)
    assert {"user read: old-only", "user read: both", "user read: recent-only"} <= set(read)
    xmins = dict(conn.execute("SELECT user_id || '@' || week_start, xmin::text FROM weekly_attempt_counts").fetchall())

    read.clear()
    second = extract(conn, source=source)
    assert actions(second) == {m: kept_sql.REUSE for m in MONDAYS[:3]} | {RECENT_WEEK: kept_sql.AGGREGATE}
    assert set(read) == {"user read: both", "user read: recent-only"}  # the users of the recent week only
    after = dict(conn.execute("SELECT user_id || '@' || week_start, xmin::text FROM weekly_attempt_counts").fetchall())
    assert {k: v for k, v in after.items() if not k.endswith(str(RECENT_WEEK))} == {
        k: v for k, v in xmins.items() if not k.endswith(str(RECENT_WEEK))
    }
    assert partition_rows(conn) == from_scratch(conn, source=source)


def planned_rows(conn, table: str) -> float:
    """The rows the planner believes ``table`` holds (pg_class.reltuples: -1 until it is first analyzed)."""
    return conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass(%s)", (table,)).fetchone()[0]


def test_a_run_leaves_the_planner_statistics_of_what_it_wrote(conn):
    """Readers are planned on the partition's weeks and counts as they are after the run, not as autovacuum
    last saw them (a planner that counts one week per partition groups its rows by sorting, 2-3x slower)."""
    some_attempts(conn)
    extract(conn)
    assert planned_rows(conn, "weekly_score_weeks") == len(MONDAYS)
    assert planned_rows(conn, "weekly_attempt_counts") == 4
    add_attempts(conn, [(f"new-{i}", True, at(RECENT_WEEK)) for i in range(20)])
    extract(conn)  # the recent week again, as a new version (the one it replaces is read no more: deleted)
    assert planned_rows(conn, "weekly_attempt_counts") == 2 + 22


def test_a_late_attempt_in_an_old_week_is_detected_and_reaggregated(conn):
    some_attempts(conn)
    extract(conn)
    add_attempts(conn, [("late", True, at(OLD_WEEK, 5))])  # earlier than the week's latest time
    second = extract(conn)
    stale = second.weeks_with(kept_sql.AGGREGATE, stale=True)
    assert [p.week_start for p in stale] == [OLD_WEEK]
    assert stale[0].reason == "stale: rows 2 -> 3, correct 1 -> 2"
    assert partition_rows(conn) == from_scratch(conn)
    assert actions(extract(conn))[OLD_WEEK] == kept_sql.REUSE  # kept again, unchanged since


def test_a_deleted_attempt_and_a_later_one_are_detected(conn):
    some_attempts(conn)
    extract(conn)
    conn.execute("DELETE FROM attempt WHERE user_id = 'both' AND attempted_at < %s", (at(MONDAYS[2], 0),))
    add_attempts(conn, [("late", False, at(MONDAYS[0], 100))])  # after the week's latest attempt
    stale = reasons(extract(conn))
    assert (
        stale[MONDAYS[1]]
        == "stale: rows 1 -> 0, correct 1 -> 0, latest attempt 2026-11-02T10:00:00.000000+00:00 -> none"
    )
    assert stale[MONDAYS[0]].startswith("stale: rows 2 -> 3, latest attempt 2026-10-27T06:00:00.000000+00:00 -> ")
    assert partition_rows(conn) == from_scratch(conn)


def test_a_corrected_answer_is_detected(conn):
    some_attempts(conn)
    extract(conn)
    conn.execute("UPDATE attempt SET is_correct = true WHERE user_id = 'old-only' AND NOT is_correct")
    second = extract(conn)
    assert reasons(second)[OLD_WEEK] == "stale: correct 1 -> 2"
    assert partition_rows(conn) == from_scratch(conn)


def test_what_the_fingerprint_cannot_see_and_the_rebuild_that_fixes_it(conn):
    """Documented limits: an attempt moved to another student, or one answer corrected to right and another
    to wrong in the same week, keep the week's rows, correct answers and latest time: the kept week is
    reused. The recent weeks and the rebuild re-read them."""
    some_attempts(conn)
    extract(conn)
    conn.execute("UPDATE attempt SET user_id = 'someone-else' WHERE user_id = 'old-only' AND is_correct")
    second = extract(conn)
    assert actions(second)[OLD_WEEK] == kept_sql.REUSE
    assert partition_rows(conn) != from_scratch(conn)  # stale, as documented

    rebuilt = extract(conn, rebuild=True)
    assert set(reasons(rebuilt).values()) == {"rebuild (REBUILD_KEPT_WEEKS)"}
    assert partition_rows(conn) == from_scratch(conn)


def test_rebuild_reaggregates_every_week_of_the_window_only(conn):
    some_attempts(conn)
    earlier = ScoreWindow(OLD_WEEK - dt.timedelta(weeks=1), 2)  # the week before the window, and OLD_WEEK
    add_attempts(conn, [("before", True, at(earlier.start))])
    extract(conn, window=earlier)
    extract(conn)
    latest = "SELECT week_start, max(aggregated_at) FROM weekly_attempt_weeks GROUP BY week_start"
    before = dict(conn.execute(latest).fetchall())
    rebuilt = extract(conn, rebuild=True)
    assert set(actions(rebuilt).values()) == {kept_sql.AGGREGATE}
    after = dict(conn.execute(latest).fetchall())
    assert after[earlier.start] == before[earlier.start]  # outside the window: untouched
    assert all(after[m] > before[m] for m in MONDAYS)
    assert partition_rows(conn) == from_scratch(conn)


def test_an_empty_week_is_kept_then_checked_cheaply(conn):
    some_attempts(conn)
    gap = MONDAYS[2]
    extract(conn)
    assert actions(extract(conn))[gap] == kept_sql.REUSE  # not rescanned as "not kept yet"
    add_attempts(conn, [("newcomer", True, at(gap))])
    third = extract(conn)
    assert (
        reasons(third)[gap]
        == "stale: rows 0 -> 1, correct 0 -> 1, latest attempt none -> 2026-11-09T10:00:00.000000+00:00"
    )
    assert ("newcomer", 2, gap, 1, 1, 1.0, 4) in partition_rows(conn)


def test_a_window_without_any_attempt(conn):
    empty = extract(conn)
    assert empty.rows == 0 and partition_rows(conn) == set()
    assert actions(extract(conn))[OLD_WEEK] == kept_sql.REUSE


def test_week_boundaries_are_utc_whatever_the_session_time_zone(conn):
    conn.execute("SET TIME ZONE 'America/Los_Angeles'")
    add_attempts(
        conn,
        [
            ("edge", True, "2026-10-25 23:59:59.999999+00"),  # Sunday before the window: not in it
            ("edge", False, "2026-10-26 00:00:00+00"),  # Monday 00:00 UTC: week 0
            ("edge", True, "2026-11-01 23:59:59.999+00"),  # Sunday 23:59:59.999 UTC: still week 0
            ("edge", True, "2026-11-02 00:00:00+00"),  # Monday 00:00 UTC: week 1
            ("edge", True, "2026-11-02 01:30:00+02"),  # = Nov 1 23:30 UTC: week 0
            ("edge", False, "2026-11-22 23:59:59.999999+00"),  # the window's last instant: week 3
            ("edge", True, "2026-11-23 00:00:00+00"),  # after the window
        ],
    )
    extract(conn)
    assert partition_rows(conn) == from_scratch(conn)
    got = {(week, n, correct) for _, week, _, n, correct, _, _ in partition_rows(conn)}
    assert got == {(0, 3, 2), (1, 1, 1), (3, 1, 0)}
    assert actions(extract(conn))[OLD_WEEK] == kept_sql.REUSE  # detection uses the same UTC bounds


def test_odd_user_ids_and_null_rows(conn):
    conn.execute("CREATE SCHEMA odd_platform")
    conn.execute("CREATE TABLE odd_platform.loose (learner text, ok boolean, at timestamptz)")
    source = SourceRelation(relation="odd_platform.loose", user_column="learner", correct_column="ok", time_column="at")
    odd = ["O'Brien", 'say "hi"', "two  spaces ", "Zoë", "学生", "back\\slash", "tab\there", "", "%s"]
    rows = [(u, i % 2 == 0, at(MONDAYS[i % 4], i)) for i, u in enumerate(odd)]
    rows += [(None, True, at(OLD_WEEK)), ("nulled", None, at(OLD_WEEK))]  # not counted, as before
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO odd_platform.loose VALUES (%s, %s, %s)", rows)
    extract(conn, source=source)
    assert partition_rows(conn) == from_scratch(conn, source=source)
    assert {r[0] for r in partition_rows(conn)} == set(odd)
    conn.execute("UPDATE odd_platform.loose SET learner = 'named' WHERE learner IS NULL")  # a NULL user filled in
    assert actions(extract(conn, source=source))[OLD_WEEK] == kept_sql.REUSE  # documented: not seen
    conn.execute("DROP SCHEMA odd_platform CASCADE")


def test_a_longer_lookback_reuses_the_kept_weeks(conn):
    some_attempts(conn)
    add_attempts(conn, [("early", True, at(OLD_WEEK - dt.timedelta(weeks=2)))])
    extract(conn)
    longer = ScoreWindow(WINDOW.as_of_week, 6)
    second = extract(conn, window=longer)
    assert actions(second) == {
        longer.monday_of(0): kept_sql.AGGREGATE,
        longer.monday_of(1): kept_sql.AGGREGATE,
        **{m: kept_sql.REUSE for m in MONDAYS[:3]},
        RECENT_WEEK: kept_sql.AGGREGATE,
    }
    assert partition_rows(conn, longer) == from_scratch(conn, longer)
    shorter = ScoreWindow(WINDOW.as_of_week, 2)
    assert set(actions(extract(conn, window=shorter)).values()) == {kept_sql.REUSE, kept_sql.AGGREGATE}
    assert partition_rows(conn, shorter) == from_scratch(conn, shorter)


def test_another_source_never_reuses_kept_weeks_and_a_redefined_view_is_stale(conn):
    some_attempts(conn)
    extract(conn)
    conn.execute("CREATE VIEW attempt_v AS SELECT user_id, is_correct, attempted_at FROM attempt")
    view = SourceRelation(relation="attempt_v")
    first = extract(conn, source=view)
    assert reasons(first)[OLD_WEEK] == "not kept yet"
    # redefined: the same rows in the old week, so only the view's definition tells
    conn.execute(
        """CREATE OR REPLACE VIEW attempt_v AS SELECT user_id, is_correct, attempted_at FROM attempt
           WHERE user_id <> 'recent-only'"""
    )
    second = extract(conn, source=view)
    assert reasons(second)[OLD_WEEK] == "stale: the source's definition changed (view text or column types)"
    assert partition_rows(conn) == from_scratch(conn, source=view)
    assert actions(extract(conn, source=view))[OLD_WEEK] == kept_sql.REUSE


def test_refuses_to_run_inside_a_transaction(conn):
    with conn.transaction(), pytest.raises(RuntimeError, match="autocommit connection, outside a transaction"):
        extract(conn)


@pytest.mark.parametrize("connections", [1, 2])
def test_results_equal_a_full_aggregation_on_random_data(conn, second_conn, connections):
    """Property-style, seeded: random students and attempts, then rounds of random changes (late attempts in
    any week, deleted attempts, corrected answers, the as-of week moving on, another lookback); after each
    round the partition equals a full aggregation from scratch, on one connection or with the new weeks
    aggregated on a second one."""
    aggregating = second_conn if connections == 2 else None
    rng = random.Random(20261127)
    users = [f"u{i}" for i in range(30)] + ["O'Neil", "Zoë", " "]
    first_monday = dt.date(2026, 9, 7)

    def random_attempts(n: int, first: dt.date, weeks: int) -> list[tuple]:
        return [
            (
                rng.choice(users),
                rng.random() < 0.6,
                dt.datetime.combine(first, dt.time(0), tzinfo=dt.UTC)
                + dt.timedelta(seconds=rng.randrange(weeks * 7 * 86400)),
            )
            for _ in range(n)
        ]

    add_attempts(conn, random_attempts(600, first_monday, 14))
    as_of = dt.date(2026, 11, 16)
    for round_ in range(20):
        change = rng.choice(["late", "delete", "correct", "advance", "lookback", "none"])
        if change == "late":
            add_attempts(conn, random_attempts(rng.randint(1, 3), first_monday, 14))
        elif change == "delete":
            conn.execute(
                "DELETE FROM attempt WHERE attempt_id IN (SELECT attempt_id FROM attempt ORDER BY 1 OFFSET %s LIMIT 2)",
                (rng.randrange(500),),
            )
        elif change == "correct":
            conn.execute(
                "UPDATE attempt SET is_correct = NOT is_correct"
                " WHERE attempt_id = (SELECT attempt_id FROM attempt ORDER BY 1 OFFSET %s LIMIT 1)",
                (rng.randrange(500),),
            )
        elif change == "advance":
            as_of += dt.timedelta(weeks=1)
        window = ScoreWindow(as_of, rng.choice([4, 6, 8]) if change == "lookback" else 6)
        extraction = extract(conn, window=window, recent_weeks=rng.choice([0, 1, 2]), aggregating=aggregating)
        assert partition_rows(conn, window) == from_scratch(conn, window), f"round {round_}: {change}"
        assert extraction.rows == len(from_scratch(conn, window))


def test_the_asset_records_which_weeks_were_reused_aggregated_and_stale(clean_database, conn):
    from seed_growth.assets import weekly_scores
    from seed_growth.resources import GrowthSettingsResource, PostgresResource

    some_attempts(conn)

    def materialize(**settings) -> dict:
        resources = {
            "postgres": PostgresResource(database_url=clean_database),
            "growth_settings": GrowthSettingsResource(lookback_weeks=4, **settings),
        }
        result = dg.materialize([weekly_scores], partition_key=WINDOW.as_of_week.isoformat(), resources=resources)
        [event] = result.asset_materializations_for_node("weekly_scores")
        return {k: v.value for k, v in event.metadata.items()}

    materialize()
    add_attempts(conn, [("late", True, at(OLD_WEEK))])
    metadata = materialize()
    assert metadata["weeks_reused"] == [str(MONDAYS[1])]
    assert metadata["weeks_aggregated"] == [str(MONDAYS[2]), str(MONDAYS[3])]  # the 2 recent weeks (default)
    assert metadata["weeks_stale"] == {str(OLD_WEEK): "stale: rows 2 -> 3, correct 1 -> 2"}
    assert metadata["settings"]["reaggregate_recent_weeks"] == 2 and metadata["rows"] == 5
    assert set(metadata["extraction_seconds"]) == {"detect", "aggregate", "assemble", "total"}
    rebuilt = materialize(rebuild_kept_weeks=True, reaggregate_recent_weeks=0)
    assert rebuilt["weeks_reused"] == [] and len(rebuilt["weeks_aggregated"]) == 4
    assert partition_rows(conn) == from_scratch(conn)


def test_the_settings_of_the_kept_weeks(growth_env):
    assert GrowthSettings.from_env({}).reaggregate_recent_weeks == 2
    settings = GrowthSettings.from_env({"REAGGREGATE_RECENT_WEEKS": "0", "REBUILD_KEPT_WEEKS": "true"})
    assert settings.reaggregate_recent_weeks == 0 and settings.rebuild_kept_weeks
    assert settings.as_record()["rebuild_kept_weeks"] is True
    with pytest.raises(SettingsError, match=r"REAGGREGATE_RECENT_WEEKS=-1 is out of range"):
        GrowthSettings.from_env({"REAGGREGATE_RECENT_WEEKS": "-1"})
    with pytest.raises(SettingsError, match=r"REBUILD_KEPT_WEEKS='maybe' is not a boolean"):
        GrowthSettings.from_env({"REBUILD_KEPT_WEEKS": "maybe"})


def test_the_rebuild_flag_of_the_command_line():
    from seed_growth.cli.run import add_rebuild_flag, job_run_config, parser_for, rebuild_config

    parser = parser_for("fit_bayesian_growth", None)
    add_rebuild_flag(parser)
    assert rebuild_config(parser.parse_args([])) is None
    config = job_run_config("INFO", rebuild_config(parser.parse_args(["--rebuild-kept-weeks"])))
    assert config["resources"] == {"growth_settings": {"config": {"rebuild_kept_weeks": True}}}


def versions(conn, monday) -> list[int]:
    """The kept versions of a week, oldest first."""
    rows = conn.execute("SELECT version FROM weekly_attempt_weeks WHERE week_start = %s ORDER BY 1", (monday,))
    return [v for (v,) in rows.fetchall()]


def partition_weeks(conn, window=WINDOW) -> dict[dt.date, int]:
    """The kept version each week of the partition reads."""
    rows = conn.execute(
        "SELECT week_start, version FROM weekly_score_weeks WHERE as_of_week = %s", (window.as_of_week,)
    ).fetchall()
    return dict(rows)


def test_a_partition_reads_its_weeks_and_never_changes_afterwards(conn):
    some_attempts(conn)
    earlier = ScoreWindow(dt.date(2026, 11, 9), lookback_weeks=4)  # its newest week, Nov 9, is in WINDOW too
    extract(conn, window=earlier)
    first = extract(conn)
    assert first.rows == len(partition_rows(conn)) == 4
    assert partition_weeks(conn)[MONDAYS[2]] == partition_weeks(conn, earlier)[MONDAYS[2]]  # one kept week, read twice
    before_earlier = partition_rows(conn, earlier)

    add_attempts(conn, [("late", True, at(MONDAYS[2], 30))])  # Nov 9 changes after both partitions read it
    extract(conn)
    assert partition_rows(conn) == from_scratch(conn)  # "late" in
    assert partition_rows(conn, earlier) == before_earlier  # the earlier partition as it was written
    old, new = versions(conn, MONDAYS[2])  # both kept: each is read by a partition
    assert partition_weeks(conn, earlier)[MONDAYS[2]] == old and partition_weeks(conn)[MONDAYS[2]] == new

    extract(conn, window=earlier, recent_weeks=0)  # extracted again, it reuses the latest: the old is read no more
    assert versions(conn, MONDAYS[2]) == [new]
    assert partition_rows(conn, earlier) == from_scratch(conn, earlier)
    assert conn.execute("SELECT count(*) FROM weekly_attempt_counts WHERE version = %s", (old,)).fetchone() == (0,)


def test_rows_written_directly_are_stored_and_replaced_by_the_extraction(conn):
    some_attempts(conn)
    later = ScoreWindow(dt.date(2026, 11, 23), lookback_weeks=4)
    stray = """INSERT INTO weekly_scores (as_of_week, user_id, week, week_start, n_attempts, n_correct, score,
                   lookback_weeks) VALUES (%s, 'stray', 0, '2026-11-02', 1, 1, 1.0, 4)"""
    conn.execute(stray, (later.as_of_week,))  # as into a table
    assert conn.execute("SELECT user_id FROM weekly_scores_rows").fetchall() == [("stray",)]
    assert scores_sql.read_weekly_scores(conn, later.as_of_week)["student"].tolist() == ["stray"]
    extract(conn, window=later)
    assert partition_rows(conn, later) == from_scratch(conn, later)  # the stray row replaced with the rest
    assert conn.execute("SELECT count(*) FROM weekly_scores_rows").fetchone() == (0,)
    # a partition read from kept weeks is not written row by row: the error says how to replace it
    with pytest.raises(psycopg.errors.RaiseException, match="2026-11-23 is assembled from kept weeks"):
        conn.execute(stray, (later.as_of_week,))
    with pytest.raises(psycopg.errors.RaiseException, match="assembled from kept weeks"):
        conn.execute("DELETE FROM weekly_scores WHERE as_of_week = %s", (later.as_of_week,))
    with conn.transaction():
        scores_sql.delete_partition(conn, later.as_of_week)
    assert partition_rows(conn, later) == set()
    conn.execute(stray, (later.as_of_week,))  # a stored partition again
    conn.execute("DELETE FROM weekly_scores WHERE as_of_week = %s", (later.as_of_week,))
    assert partition_rows(conn, later) == set()


def test_a_failed_assignment_leaves_the_partition_as_it_was(conn, monkeypatch):
    some_attempts(conn)
    extract(conn)
    before, weeks = partition_rows(conn), partition_weeks(conn)
    add_attempts(conn, [("late", True, at(RECENT_WEEK, 60))])

    def server_gone(*args):
        raise psycopg.OperationalError("the server went away")

    monkeypatch.setattr(kept_sql, "drop_unread_versions", server_gone)  # after the partition's weeks were replaced
    with pytest.raises(psycopg.OperationalError, match="went away"):
        extract(conn)
    monkeypatch.undo()
    assert partition_rows(conn) == before and partition_weeks(conn) == weeks
    extract(conn)
    assert partition_rows(conn) == from_scratch(conn)


def test_new_weeks_are_aggregated_on_the_second_connection_and_stale_ones_after_detection(
    conn, second_conn, monkeypatch
):
    some_attempts(conn)
    extract(conn, aggregating=second_conn)
    add_attempts(conn, [("late", True, at(OLD_WEEK, 40))])  # makes the oldest kept week stale
    sessions: dict[dt.date, int] = {}
    real_aggregate = kept_sql.aggregate_week

    def spy(connection, source, key, definition, monday):
        sessions[monday] = connection.info.backend_pid
        return real_aggregate(connection, source, key, definition, monday)

    monkeypatch.setattr(kept_sql, "aggregate_week", spy)
    second = extract(conn, aggregating=second_conn)
    assert sessions == {RECENT_WEEK: second_conn.info.backend_pid, OLD_WEEK: conn.info.backend_pid}
    assert [p.week_start for p in second.weeks_with(kept_sql.AGGREGATE, stale=True)] == [OLD_WEEK]
    assert partition_rows(conn) == from_scratch(conn)
    assert second.seconds >= second.assemble_seconds > 0


def test_a_failed_aggregation_on_the_second_connection_leaves_the_week_as_it_was(conn, second_conn, monkeypatch):
    some_attempts(conn)
    extract(conn, aggregating=second_conn)
    before = partition_rows(conn)
    add_attempts(conn, [("late", True, at(RECENT_WEEK, 60))])
    real_aggregate = kept_sql.aggregate_week

    def fail_on_the_second(connection, *args):
        if connection is second_conn:
            raise psycopg.OperationalError("the connection was lost")
        return real_aggregate(connection, *args)

    monkeypatch.setattr(kept_sql, "aggregate_week", fail_on_the_second)
    with pytest.raises(psycopg.OperationalError, match="connection was lost"):
        extract(conn, aggregating=second_conn)
    assert partition_rows(conn) == before
