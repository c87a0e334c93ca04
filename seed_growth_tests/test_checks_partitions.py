"""The asset checks are partitioned like their assets (a result per week), and a check run without a
partition (the UI's "Execute" on a check) judges the latest week in the tables and names it."""

import dagster as dg

from seed_growth.assets import weekly_scores
from seed_growth.checks import brms_posterior_converged, weekly_kpi_P_valid, weekly_scores_valid
from seed_growth.definitions import defs
from seed_growth.partitions import weekly_partitions
from seed_growth.resources import GrowthSettingsResource, PostgresResource
from seed_growth_tests.support.graph import WEEK, load_cohort

CHECKS = [weekly_scores_valid, brms_posterior_converged, weekly_kpi_P_valid]


def test_every_check_is_partitioned_like_its_asset():
    graph = defs.resolve_asset_graph()
    for check in CHECKS:
        for key in check.check_keys:
            assert graph.get(key).partitions_def == weekly_partitions
            assert graph.get(key.asset_key).partitions_def == weekly_partitions


def _resources(url: str) -> dict:
    return {"postgres": PostgresResource(database_url=url), "growth_settings": GrowthSettingsResource(lookback_weeks=8)}


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_a_check_run_without_a_partition_judges_the_latest_week_and_names_it(clean_database):
    load_cohort(clean_database, students=40, weeks=6)
    earlier = WEEK.replace(day=WEEK.day - 7)
    for week in (earlier, WEEK):
        result = dg.materialize(
            [weekly_scores, weekly_scores_valid], partition_key=week.isoformat(), resources=_resources(clean_database)
        )
        evaluation = _evaluations(result)["weekly_scores_valid"]
        assert evaluation.passed and evaluation.partition == week.isoformat()
        assert evaluation.metadata["week"].value == week.isoformat()

    # the check alone, no partition: what the UI's Execute button launches
    result = dg.materialize(
        [weekly_scores, weekly_scores_valid],
        selection=dg.AssetSelection.checks(weekly_scores_valid),
        resources=_resources(clean_database),
        raise_on_error=False,
    )
    assert result.success, "a check run without a partition must not crash"
    evaluation = _evaluations(result)["weekly_scores_valid"]
    assert evaluation.passed
    assert evaluation.metadata["week"].value == WEEK.isoformat()
    assert "latest week in the tables" in evaluation.metadata["week_from"].value


def test_checks_without_a_partition_fail_truthfully_when_nothing_was_written(clean_database):
    resources = {"postgres": PostgresResource(database_url=clean_database)}
    for check in CHECKS:
        evaluation = check(dg.build_asset_check_context(resources=resources))
        assert not evaluation.passed
        assert evaluation.metadata["week"].value == "none"
        assert "has written no week yet" in evaluation.metadata["problems"].value
