"""Issue 15 item 7: the convergence check and weekly_kpi_P judge the fit of brms_posterior's latest
materialization of the week, not the latest fit stored for it. Re-running a week that has a converged
fit, with the service gone during the fit, must fail the check and fall back, naming why."""

import dagster as dg
import psycopg

from seed_growth.assets.week import FIT_RUN_ID
from seed_growth_tests.support.graph import UNREACHABLE, WEEK, load_cohort, run_graph


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _materialization(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetMaterialization:
    [materialization] = [m for m in result.asset_materializations_for_node(asset)]
    return materialization


def test_a_rerun_whose_fit_failed_is_not_judged_by_the_earlier_fit(clean_database, plumber_url):
    load_cohort(clean_database)
    instance = dg.DagsterInstance.ephemeral()

    first = run_graph(clean_database, plumber_url, instance=instance, lookback_weeks=8)
    earlier_fit = _materialization(first, "brms_posterior").metadata[FIT_RUN_ID].value
    assert _checks(first)["brms_posterior_converged"].passed
    assert _checks(first)["brms_posterior_converged"].metadata["fit_run_id"].value == earlier_fit

    # the same week again, the service gone while it fits (nothing answers: the fit fails as when killed)
    second = run_graph(clean_database, UNREACHABLE, instance=instance, lookback_weeks=8)
    assert _materialization(second, "brms_posterior").metadata[FIT_RUN_ID].value == "none"
    converged = _checks(second)["brms_posterior_converged"]
    assert not converged.passed
    assert converged.metadata["fit_run_id"].value == "none"
    assert "produced none" in converged.metadata["problems"].value
    assert second.run_id in converged.metadata["fit_source"].value

    kpi = _materialization(second, "weekly_kpi_P").metadata
    assert kpi["method"].value == "normal_approximation"
    assert kpi["run_id"].value == "none"
    assert "produced none" in kpi["fit_source"].value
    with psycopg.connect(clean_database) as conn:
        methods = conn.execute(
            "SELECT DISTINCT kpis->>'P_method', kpis->>'P_run_id' FROM weekly_kpi WHERE week_start = %s", (WEEK,)
        ).fetchall()
        stored = conn.execute("SELECT run_id FROM growth_brms_meta WHERE as_of_week = %s", (WEEK,)).fetchall()
    assert methods == [("normal_approximation", None)]
    assert stored == [(earlier_fit,)]  # the earlier fit is still stored, and no longer used for this week
    assert _checks(second)["weekly_kpi_P_valid"].metadata["fit_run_id"].value == "none"
