"""The asset checks are partitioned like their assets (a result per week), and a check run without a
partition (the UI's "Execute all" on an asset's checks) judges the latest week in the tables and names it.

The runs share one Dagster instance, as in the UI: Dagster 1.13 fails a partitioned check's result in a run
without a partition only when the instance holds a materialization of its asset (see seed_growth.checks.judge).
"""

import datetime as dt

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from seed_growth.assets import brms_posterior, weekly_kpi_P, weekly_scores
from seed_growth.checks import brms_posterior_converged, weekly_kpi_P_valid, weekly_scores_valid
from seed_growth.definitions import defs
from seed_growth.partitions import weekly_partitions
from seed_growth.resources import GrowthSettingsResource, PlumberResource, PostgresResource
from seed_growth_tests.support.graph import UNREACHABLE, WEEK, load_cohort

ASSETS = [weekly_scores, brms_posterior, weekly_kpi_P]
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
    earlier = WEEK - dt.timedelta(weeks=1)
    weeks = []
    with dg.instance_for_test() as instance:
        for week in (earlier, WEEK):
            result = dg.materialize(
                [weekly_scores, weekly_scores_valid],
                partition_key=week.isoformat(),
                resources=_resources(clean_database),
                instance=instance,
            )
            evaluation = _evaluations(result)["weekly_scores_valid"]
            assert evaluation.passed and evaluation.partition == week.isoformat()
            assert evaluation.metadata["week"].value == week.isoformat()
            weeks.append((result.run_id, week))

        # the check alone, no partition: what the UI's "Execute all" on the asset's checks launches
        result = dg.materialize(
            [weekly_scores, weekly_scores_valid],
            selection=dg.AssetSelection.checks(weekly_scores_valid),
            resources=_resources(clean_database),
            instance=instance,
            raise_on_error=False,
        )
        assert result.success, "a check run without a partition must not crash"
        evaluation = _evaluations(result)["weekly_scores_valid"]
        assert evaluation.passed and evaluation.partition is None
        assert evaluation.metadata["week"].value == WEEK.isoformat()
        assert evaluation.metadata["week_from"].value == "latest week in the tables (run without a partition)"
        # recorded: the weeks' own results, and this run's (no partition, no stray planned record)
        history = instance.event_log_storage.get_asset_check_execution_history(evaluation.asset_check_key, limit=10)
        recorded = {(r.run_id, r.partition): r.status for r in history}
        assert recorded == {
            **{(run_id, week.isoformat()): AssetCheckExecutionRecordStatus.SUCCEEDED for run_id, week in weeks},
            (result.run_id, None): AssetCheckExecutionRecordStatus.SUCCEEDED,
        }


def test_checks_without_a_partition_fail_truthfully_when_nothing_was_written(clean_database):
    resources = {**_resources(clean_database), "plumber": PlumberResource(base_url=UNREACHABLE)}
    for asset, check in zip(ASSETS, CHECKS, strict=True):
        result = dg.materialize(
            [asset, check], selection=dg.AssetSelection.checks(check), resources=resources, raise_on_error=False
        )
        (evaluation,) = result.get_asset_check_evaluations()
        assert not evaluation.passed and evaluation.partition is None
        assert evaluation.metadata["week"].value == "none"
        assert evaluation.metadata["problems"].value == f"{asset.key.to_user_string()} has written no week yet"
