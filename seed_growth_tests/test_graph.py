"""The whole graph, materialized with real resources: the real PostgreSQL and the real r-brms-plumber."""

import datetime as dt
import json

import dagster as dg
import psycopg
import pytest

from seed_growth import demo_data
from seed_growth.assets import weekly_kpi_P
from seed_growth.resources import GrowthSettingsResource, PlumberResource, PostgresResource
from seed_growth.sql import calibration as calibration_sql
from seed_growth.sql import fits as fits_sql
from seed_growth_tests.support.graph import ASSETS, CHECKS, UNREACHABLE, WEEK, check_results, load_cohort, run_graph


def metadata(result, asset: str) -> dict:
    [event] = [m for m in result.get_asset_materialization_events() if m.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def kpis(url: str) -> dict[str, dict]:
    with psycopg.connect(url) as conn:
        return dict(conn.execute("SELECT user_id, kpis FROM weekly_kpi WHERE week_start = %s", (WEEK,)).fetchall())


def seed_other_kpi(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO weekly_kpi (user_id, week_start, kpis) VALUES ('stu-00001', %s, %s)",
            (WEEK, json.dumps({"streak": 4})),
        )


def test_falls_back_to_the_normal_approximation_when_the_service_is_down(clean_database, growth_env):
    load_cohort(clean_database)
    seed_other_kpi(clean_database)
    result = run_graph(clean_database, UNREACHABLE, lookback_weeks=8)
    assert result.success  # the KPI is there on Monday
    assert metadata(result, "brms_posterior")["fit_status"] == "unavailable"
    assert check_results(result) == {
        "weekly_scores_valid": True,
        "brms_posterior_converged": False,
        "weekly_kpi_P_valid": True,
    }
    kpi_meta = metadata(result, "weekly_kpi_P")
    assert kpi_meta["method"] == "normal_approximation" and "no fit stored" in kpi_meta["fallback_reason"]
    stored = kpis(clean_database)
    assert len(stored) == kpi_meta["students"] > 100
    assert all(0 <= k["P"] <= 1 and k["P_method"] == "normal_approximation" for k in stored.values())
    assert stored["stu-00001"]["streak"] == 4  # other KPIs survive


def test_empty_window_fails_the_blocking_check_and_writes_nothing(clean_database, growth_env):
    demo_data.load(clean_database, demo_data.DemoCohort(students=20, weeks=4, last_week=WEEK - dt.timedelta(weeks=30)))
    seed_other_kpi(clean_database)
    result = run_graph(clean_database, UNREACHABLE, raise_on_error=False)
    assert check_results(result) == {"weekly_scores_valid": False}
    materialized = {m.asset_key.to_user_string() for m in result.get_asset_materialization_events()}
    assert materialized == {"weekly_scores"}  # brms_posterior and weekly_kpi_P were skipped
    assert kpis(clean_database) == {"stu-00001": {"streak": 4}}


def test_bad_settings_fail_the_run_naming_the_variable(clean_database, growth_env):
    growth_env.setenv("BRMS_ITER", "abc")
    result = run_graph(clean_database, UNREACHABLE, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.event_specific_data.error
    assert error.cause.cls_name == "SettingsError"
    assert "BRMS_ITER (or BRMS_N_SAMPLES)='abc' is not an integer" in error.cause.message


@pytest.mark.service
def test_whole_graph_with_the_real_service(clean_database, plumber_url, growth_env):
    load_cohort(clean_database, students=300, weeks=14)
    seed_other_kpi(clean_database)
    result = run_graph(clean_database, plumber_url, lookback_weeks=12)
    assert result.success
    assert check_results(result) == {
        "weekly_scores_valid": True,
        "brms_posterior_converged": True,
        "weekly_kpi_P_valid": True,
    }

    fit_meta = metadata(result, "brms_posterior")
    assert fit_meta["fit_status"] == "converged" and fit_meta["engine"] == "collapsed"
    assert 0.004 < fit_meta["population_slope_per_week"] < 0.02  # DemoCohort.slope_mean = 0.012
    assert "data:image/png;base64" in fit_meta["growth_curve"]
    with psycopg.connect(clean_database) as conn:
        row = conn.execute(
            "SELECT run_id, lookback_weeks, converged, posterior_summary->'week', n_students FROM growth_brms_meta "
            "WHERE as_of_week = %s",
            (WEEK,),
        ).fetchone()
        assert row[0] == fit_meta["run_id"] and row[1] == 12 and row[2] is True
        assert set(row[3]) >= {"estimate", "error", "q2.5", "q97.5"}
        assert fits_sql.read_student_posterior(conn, row[0]).shape[0] == row[4]

    kpi_meta = metadata(result, "weekly_kpi_P")
    assert kpi_meta["method"].startswith("bayesian_") and kpi_meta["run_id"] == fit_meta["run_id"]
    stored = kpis(clean_database)
    assert len(stored) == row[4]
    assert all(k["P_run_id"] == row[0] and 0 <= k["P"] <= 1 for k in stored.values())
    assert stored["stu-00001"]["streak"] == 4

    # predict_prob unreachable later: P from the stored per-student summaries, close to the service's
    by_service = {s: k["P"] for s, k in stored.items()}
    again = dg.materialize(
        [weekly_kpi_P],
        partition_key=WEEK.isoformat(),
        resources={
            "postgres": PostgresResource(database_url=clean_database),
            "plumber": PlumberResource(base_url=UNREACHABLE, max_attempts=1),
            "growth_settings": GrowthSettingsResource(),
        },
    )
    assert metadata(again, "weekly_kpi_P")["method"] == "bayesian_summaries"
    by_summaries = {s: k["P"] for s, k in kpis(clean_database).items()}
    assert max(abs(by_service[s] - by_summaries[s]) for s in by_service) < 0.05

    # METRICS_USE_BAYESIAN=false: the normal approximation even though a good fit exists
    growth_env.setenv("METRICS_USE_BAYESIAN", "false")
    normal = dg.materialize(
        [weekly_kpi_P],
        partition_key=WEEK.isoformat(),
        resources={
            "postgres": PostgresResource(database_url=clean_database),
            "plumber": PlumberResource(base_url=plumber_url),
            "growth_settings": GrowthSettingsResource(),
        },
    )
    assert metadata(normal, "weekly_kpi_P")["method"] == "normal_approximation"
    assert len(kpis(clean_database)) == row[4]  # reruns of the partition replaced P, added no rows


@pytest.mark.service
def test_a_fit_that_fails_its_convergence_check_is_not_used(clean_database, plumber_url, growth_env):
    """brms with 100 warm-up iterations cannot reach R-hat <= 1.01 and ESS >= 100 per chain: the check
    fails (visibly), P comes from the normal approximation and says why, and the fit stays on record."""
    load_cohort(clean_database, students=60, weeks=8)
    seed_other_kpi(clean_database)
    result = run_graph(clean_database, plumber_url, lookback_weeks=8, engine="brms", iter=200, chains=2)
    assert result.success
    assert check_results(result) == {
        "weekly_scores_valid": True,
        "brms_posterior_converged": False,
        "weekly_kpi_P_valid": True,
    }
    fit_meta = metadata(result, "brms_posterior")
    assert fit_meta["fit_status"] == "not converged" and fit_meta["engine"] == "brms"
    kpi_meta = metadata(result, "weekly_kpi_P")
    assert kpi_meta["method"] == "normal_approximation" and "did not converge" in kpi_meta["fallback_reason"]
    stored = kpis(clean_database)
    assert len(stored) == kpi_meta["students"]
    assert all(k["P_method"] == "normal_approximation" and k["P_run_id"] is None for k in stored.values())
    assert stored["stu-00001"]["streak"] == 4
    with psycopg.connect(clean_database) as conn:
        assert conn.execute(
            "SELECT converged FROM growth_brms_meta WHERE run_id = %s", (fit_meta["run_id"],)
        ).fetchone() == (False,)


@pytest.mark.service
def test_backtest_scores_past_weeks_against_what_happened(clean_database, plumber_url, growth_env):
    """Two past as-of weeks whose target week (4 weeks on) is in the data, then p_calibration: scores for
    both methods per week and overall, ten reliability bins that hold every student-week, a plot."""
    from seed_growth.assets import p_calibration

    load_cohort(clean_database, students=300, weeks=14)
    resources = {
        "postgres": PostgresResource(database_url=clean_database),
        "plumber": PlumberResource(base_url=plumber_url, max_attempts=1, read_timeout_s=1800),
        "growth_settings": GrowthSettingsResource(lookback_weeks=8),
    }
    as_of_weeks = [WEEK - dt.timedelta(weeks=5), WEEK - dt.timedelta(weeks=4)]
    for week in as_of_weeks:
        assert dg.materialize([*ASSETS, *CHECKS], partition_key=week.isoformat(), resources=resources).success

    result = dg.materialize([p_calibration], resources=resources)
    meta = metadata(result, "p_calibration")
    assert meta["as_of_weeks"] == 2 and meta["student_weeks"] > 300
    assert 0 < meta["brier_bayesian"] < 0.25 and 0 < meta["brier_normal"] < 0.25  # better than a coin
    assert "data:image/png;base64" in meta["reliability"]
    with psycopg.connect(clean_database) as conn:
        summary = calibration_sql.read_calibration(conn)
        bins = conn.execute(
            "SELECT method, sum(count) FROM p_calibration_bins GROUP BY method ORDER BY method"
        ).fetchall()
    assert sorted(set(summary["as_of_week"])) == sorted([w.isoformat() for w in as_of_weeks] + ["overall"])
    assert set(summary["method"]) == {"P_bayesian", "P_normal"}
    overall = summary[summary["as_of_week"] == "overall"].set_index("method")
    assert bins == [("P_bayesian", meta["student_weeks"]), ("P_normal", meta["student_weeks"])]
    # the metadata shows 4 decimals; the table keeps full precision
    assert overall.loc["P_bayesian", "brier"] == pytest.approx(meta["brier_bayesian"], abs=5e-5)
