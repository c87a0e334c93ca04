"""Each asset check launched as the Dagster UI's check "Execute" launches it (GraphQL, no partition: see
seed_growth_tests.support.ui.execute_checks) succeeds, and its result is the latest materialized week's,
named in the result; the week's own partitioned result stays as it was. Dagster 1.13 alone fails such a run
after the check has run (seed_growth.checks.judge says where and why)."""

from __future__ import annotations

import pytest

from seed_growth_tests.support.graph import WEEK
from seed_growth_tests.support.ui import CHECK_EXECUTIONS, asset_checks, execute_checks, run_failures

CHECKS = {
    "weekly_scores": "weekly_scores_valid",
    "brms_posterior": "brms_posterior_converged",
    "weekly_kpi_P": "weekly_kpi_P_valid",
}


def _executions(dagster_ui, asset: str, partition: str | None = None) -> list[dict]:
    variables = {"assetKey": {"path": [asset]}, "checkName": CHECKS[asset], "partition": partition, "limit": 20}
    return dagster_ui.graphql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"]


@pytest.fixture(scope="module")
def latest_week(dagster_ui) -> str:
    """The growth graph materialized for WEEK, the demo cohort's last week: the latest week in the tables."""
    week = WEEK.isoformat()
    run_id = dagster_ui.launch_partition("weekly_growth_job", week)
    assert dagster_ui.wait_run(run_id, timeout_s=900) == "SUCCESS", run_failures(dagster_ui, run_id)
    return week


@pytest.mark.parametrize("asset", list(CHECKS))
def test_a_check_executed_from_the_ui_judges_the_latest_week_and_names_it(dagster_ui, latest_week, asset):
    before = _executions(dagster_ui, asset, latest_week)
    assert before and before[0]["status"] == "SUCCEEDED", before

    # the launch is the UI's: a partitioned check, launched without a partition
    node = asset_checks(dagster_ui, asset)
    (check,) = node["assetChecksOrError"]["checks"]
    assert check["name"] == CHECKS[asset] and check["partitionDefinition"] is not None
    assert check["canExecuteIndividually"] == "CAN_EXECUTE"
    run_id = execute_checks(dagster_ui, asset)
    status = dagster_ui.wait_run(run_id, timeout_s=300)
    assert status == "SUCCESS", run_failures(dagster_ui, run_id)

    mine = [e for e in _executions(dagster_ui, asset) if e["runId"] == run_id]
    assert len(mine) == 1, mine  # one result, no stray "planned" record
    execution = mine[0]
    assert execution["status"] == "SUCCEEDED" and execution["partition"] is None, execution
    metadata = {m["label"]: m.get("text") for m in execution["evaluation"]["metadataEntries"]}
    assert metadata["week"] == latest_week, metadata
    assert metadata["week_from"] == "latest week in the tables (run without a partition)", metadata
    if asset != "weekly_scores":
        assert metadata["fit_run_id"] not in (None, "none"), metadata

    # the Checks tab shows this result (not "Execution failed"); the week's own result is unchanged
    latest = asset_checks(dagster_ui, asset)["assetChecksOrError"]["checks"][0]["executionForLatestMaterialization"]
    assert latest and latest["runId"] == run_id and latest["status"] == "SUCCEEDED", latest
    assert _executions(dagster_ui, asset, latest_week)[0] == before[0]
