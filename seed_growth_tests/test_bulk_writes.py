"""Issue 13: the partition's scores read by COPY, the per-student posterior and the KPI merge written by
COPY, against the real PostgreSQL: odd ids and doubles come back exactly, the KPI JSON is the one
json.dumps wrote, and a bad row stores nothing."""

import datetime as dt
import json

import numpy as np
import pandas as pd
import psycopg
import pytest

from seed_growth.growth.kpi import kpi_payloads
from seed_growth.sql import fits as fits_sql
from seed_growth.sql import kpi as kpi_sql
from seed_growth.sql import scores as scores_sql

AS_OF = dt.date(2026, 11, 16)
ODD_IDS = [
    'quo"te',
    "com,ma",
    "new\nline",
    "cr\r\nlf",
    "tab\there",
    "back\\slash\\N",
    "ünïcødé 🎓",
    "007",
    "1e3",
    "12",
    "NULL",
    "NA",
    "",
    " padded ",
    "\\.",
]
EDGE_DOUBLES = [0.0, 1.0, 0.1, 1 / 3, 0.1 + 0.2, 5e-324, 2.2250738585072014e-308, 1 - 2**-53, 1e-05]


def bits(values) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.int64).tolist()


def store_scores(conn: psycopg.Connection, students: list[str], scores: np.ndarray) -> None:
    rows = [
        (AS_OF, student, week, dt.date(2026, 11, 2) + dt.timedelta(weeks=week), 10, 3, float(score), 3)
        for (student, week), score in zip(((s, w) for s in students for w in (0, 2)), scores, strict=True)
    ]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO weekly_scores (as_of_week, user_id, week, week_start, n_attempts, n_correct, score,
                                          lookback_weeks) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
            rows,
        )


def test_the_scores_read_by_copy_are_exact(conn):
    conn.execute("SET extra_float_digits = 0")  # a session that prints 15 digits must not round what is read
    scores = np.concatenate([EDGE_DOUBLES, np.random.default_rng(13).random(2 * len(ODD_IDS) - len(EDGE_DOUBLES))])
    store_scores(conn, ODD_IDS, scores)
    frame = scores_sql.read_weekly_scores(conn, AS_OF)
    with conn.cursor(binary=True) as cur:
        expected = cur.execute(
            """SELECT user_id, week, score, n_attempts, n_correct, week_start FROM weekly_scores
               WHERE as_of_week = %s ORDER BY user_id, week""",
            (AS_OF,),
        ).fetchall()
    assert list(frame.columns) == scores_sql.WEEKLY_SCORE_COLUMNS
    assert [tuple(row) for row in frame.itertuples(index=False)] == expected  # ids, order, weeks, dates
    assert bits(frame["score"]) == bits([row[2] for row in expected])
    assert str(frame["student"].dtype) == "str" and frame["week"].dtype == np.int64
    assert frame["week_start"].iloc[0] == dt.date(2026, 11, 2)


def test_an_empty_partition_reads_as_an_empty_frame(conn):
    frame = scores_sql.read_weekly_scores(conn, AS_OF)
    assert frame.empty and list(frame.columns) == scores_sql.WEEKLY_SCORE_COLUMNS


def fit_row(run_id: str = "r1") -> dict:
    return {
        "run_id": run_id,
        "fitted_at": dt.datetime(2026, 11, 23, 4, 31, tzinfo=dt.UTC),
        "as_of_week": AS_OF,
        "window_start": dt.date(2026, 11, 2),
        "lookback_weeks": 3,
        "family": "gaussian",
        "engine": "collapsed",
        "iter": 1000,
        "chains": 2,
        "n_students": len(ODD_IDS),
        "n_rows": 2 * len(ODD_IDS),
        "converged": True,
        "posterior_summary": {},
        "diagnostics": {},
        "model": {},
        "dagster_run_id": "dagster-run",
    }


def student_posterior(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(ODD_IDS)
    wild = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)  # every exponent, full mantissas
    return pd.DataFrame(
        {
            "user_id": pd.Series(ODD_IDS, dtype=str),
            "intercept_mean": wild,
            "intercept_sd": np.concatenate([[5e-324, 1.7976931348623157e308], rng.random(n - 2)]),
            "slope_mean": rng.standard_normal(n) / 7,
            "slope_sd": rng.random(n) / 3,
            "cor": np.concatenate([[-1.0, 1.0, -0.0], rng.uniform(-1, 1, n - 3)]),
            "n_weeks": rng.integers(0, 12, n),
        }
    )


def test_the_student_posterior_is_written_by_copy_exactly(conn):
    conn.execute("SET extra_float_digits = 0")
    students = student_posterior()
    with conn.transaction():
        fits_sql.insert_fit(conn, fit_row(), students)
    read = fits_sql.read_student_posterior(conn, "r1").set_index("student").loc[students["user_id"]]
    assert read.index.tolist() == ODD_IDS
    for column in ["intercept_mean", "intercept_sd", "slope_mean", "slope_sd", "cor"]:
        assert bits(read[column]) == bits(students[column]), column
    assert read["n_weeks"].tolist() == students["n_weeks"].tolist()


def test_a_bad_student_row_stores_nothing_of_the_fit(conn):
    students = student_posterior()
    students.at[3, "user_id"] = ODD_IDS[2]  # a repeated student: the primary key refuses it
    with pytest.raises(psycopg.errors.UniqueViolation):
        with conn.transaction():
            fits_sql.insert_fit(conn, fit_row(), students)
    assert conn.execute("SELECT count(*) FROM growth_brms_meta").fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM growth_student_posterior").fetchone() == (0,)


def old_kpi_json(probabilities: pd.DataFrame, method: str, run_id: str | None) -> dict[str, str]:
    """What weekly_kpi.kpis held before issue 13: json.dumps of a dict per student."""
    return {
        student: json.dumps(
            {
                "P": float(p),
                "P_method": method,
                "P_goal": float(goal),
                "P_target_week_start": target.isoformat(),
                "P_run_id": run_id,
                "P_as_of_week": AS_OF.isoformat(),
            }
        )
        for student, p, goal, target in zip(
            probabilities["student"],
            probabilities["P"],
            probabilities["goal"],
            probabilities["target_week_start"],
            strict=True,
        )
    }


@pytest.mark.parametrize("run_id", ["2f1c-run", None])
def test_the_kpi_json_is_what_json_dumps_wrote_and_other_keys_are_kept(conn, run_id):
    conn.execute("SET extra_float_digits = 0")
    p = np.concatenate([EDGE_DOUBLES, np.random.default_rng(2).random(len(ODD_IDS) - len(EDGE_DOUBLES))])
    probabilities = pd.DataFrame(
        {
            "student": ODD_IDS,
            "P": p,
            "goal": np.where(np.arange(len(ODD_IDS)) % 2, 0.8, 1.0),
            "target_week_start": [dt.date(2026, 12, 14), dt.date(2027, 1, 4)] * 7 + [dt.date(2026, 12, 14)],
        }
    )
    conn.execute(
        "INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES (%s, %s, %s), (%s, %s, %s)",
        ("007", AS_OF, json.dumps({"streak": 3, "P": 0.5}), "007", AS_OF - dt.timedelta(weeks=1), '{"P": 0.2}'),
    )
    payloads = kpi_payloads(probabilities, method="bayesian_rao_blackwell", run_id=run_id, as_of_week=AS_OF)
    with conn.transaction():
        written = kpi_sql.merge_kpis(conn, AS_OF, payloads.per_student, payloads.shared)
    assert written == len(ODD_IDS)
    # jsonb's text keeps each number's digits and scale (1.0 stays 1.0): equal text, equal content
    stored = dict(conn.execute("SELECT user_id, kpis::text FROM weekly_kpi WHERE week_start = %s", (AS_OF,)).fetchall())
    expected = {
        student: conn.execute("SELECT %s::jsonb::text", (text,)).fetchone()[0]
        for student, text in old_kpi_json(probabilities, "bayesian_rao_blackwell", run_id).items()
    }
    expected["007"] = conn.execute(
        """SELECT ('{"streak": 3}'::jsonb || %s::jsonb)::text""", (expected["007"],)
    ).fetchone()[0]
    assert stored == expected
    with conn.cursor(binary=True) as cur:  # binary: exact whatever extra_float_digits says
        read_p = cur.execute("SELECT user_id, (kpis->>'P')::float8 FROM weekly_kpi WHERE week_start = %s", (AS_OF,))
        by_student = dict(read_p.fetchall())
    assert bits([by_student[s] for s in ODD_IDS]) == bits(p)
    previous_week = conn.execute("SELECT kpis FROM weekly_kpi WHERE week_start < %s", (AS_OF,)).fetchone()
    assert previous_week == ({"P": 0.2},)  # other weeks untouched


def test_a_bad_kpi_row_merges_nothing(conn):
    conn.execute("INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES ('a', %s, '{\"streak\": 3}')", (AS_OF,))
    before = conn.execute("SELECT user_id, kpis FROM weekly_kpi ORDER BY 1").fetchall()
    twice = pd.DataFrame({"student": ["a", "b", "a"], "P": [0.1, 0.2, 0.3]})
    with pytest.raises(psycopg.errors.UniqueViolation):
        with conn.transaction():
            kpi_sql.merge_kpis(conn, AS_OF, twice, {"P_method": "x"})
    infinite = pd.DataFrame({"student": ["a", "b"], "P": [0.1, float("inf")]})
    with pytest.raises(ValueError, match="1 values of KPI 'P' are not finite"):
        with conn.transaction():
            kpi_sql.merge_kpis(conn, AS_OF, infinite)
    assert conn.execute("SELECT user_id, kpis FROM weekly_kpi ORDER BY 1").fetchall() == before
