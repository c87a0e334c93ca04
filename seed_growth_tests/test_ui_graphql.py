"""What the Dagster UI shows, asked the way the UI asks (its GraphQL queries, copied from dagster-webserver's
ui-core: PipelineRunsFeedRoot.tsx / useRunsFeedEntries.tsx for a job's Runs tab, useRunsForTimeline.tsx for
the Overview timeline, the asset check executions per partition): runs of the command-line entry point
listed under weekly_growth_job, and check results kept per week."""

from __future__ import annotations

import re

import pytest

from seed_growth.partitions import DEFAULT_FIRST_WEEK
from seed_growth_tests.support.graph import WEEK
from seed_growth_tests.support.ui import CHECK_EXECUTIONS, LOCATION, REPOSITORY, REPOSITORY_LABEL

# PipelineRunsFeedRoot: {...runsFilterForSearchTokens(tokens), pipelineName}, the tokens including
# `tag:.dagster/repository=<repoAddressAsTag>`; the feed's query (RUNS_FEED_ROOT_QUERY), trimmed to what we read
RUNS_FEED = """
query RunsFeedRootQuery($limit: Int!, $cursor: String, $filter: RunsFilter, $view: RunsFeedView!) {
  runsFeedOrError(limit: $limit, cursor: $cursor, filter: $filter, view: $view) {
    ... on RunsFeedConnection { results { id ... on Run { runId pipelineName status } } }
    ... on PythonError { message }
  }
}"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId pipelineName status tags { key value }
                            repositoryOrigin { repositoryName repositoryLocationName } } }
    ... on PythonError { message }
  }
}"""

JOB_FILTER = {"pipelineName": "weekly_growth_job", "tags": [{"key": ".dagster/repository", "value": REPOSITORY_LABEL}]}
OLD_WEEK = DEFAULT_FIRST_WEEK  # before the demo cohort's attempts: no scores, its checks fail


def _run_id(stdout: str) -> str:
    match = re.search(r"run ([0-9a-f-]{36}) (succeeded|FAILED)", stdout)
    assert match, stdout
    return match.group(1)


@pytest.fixture(scope="module")
def cli_runs(dagster_ui) -> dict[str, str]:
    """The CronJob's entry point for the current week (passes), then for an old week without data (fails)."""
    current = dagster_ui.run_cli("seed_growth.cli.fit_bayesian_growth", "--week", WEEK.isoformat())
    assert current.returncode == 0, current.stdout + current.stderr
    old = dagster_ui.run_cli("seed_growth.cli.fit_bayesian_growth", "--week", OLD_WEEK.isoformat())
    assert old.returncode == 1, old.stdout + old.stderr
    return {"current": _run_id(current.stdout), "old": _run_id(old.stdout)}


def test_cli_runs_appear_under_their_job(dagster_ui, cli_runs):
    feed = dagster_ui.graphql(RUNS_FEED, {"limit": 30, "filter": JOB_FILTER, "view": "RUNS"})["runsFeedOrError"]
    listed = {r["runId"] for r in feed["results"]}
    assert set(cli_runs.values()) <= listed, feed

    runs = {r["runId"]: r for r in dagster_ui.graphql(RUNS, {"filter": JOB_FILTER})["runsOrError"]["results"]}
    run = runs[cli_runs["current"]]
    assert run["status"] == "SUCCESS" and run["pipelineName"] == "weekly_growth_job"
    # the timeline places a run by its repository origin: runs without one are not drawn
    assert run["repositoryOrigin"] == {"repositoryName": REPOSITORY, "repositoryLocationName": LOCATION}
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == WEEK.isoformat() and tags["seed_growth/trigger"] == "fit_bayesian_growth"


def _executions(dagster_ui, asset: str, check: str, partition: str | None) -> list[dict]:
    return dagster_ui.graphql(
        CHECK_EXECUTIONS, {"assetKey": {"path": [asset]}, "checkName": check, "partition": partition, "limit": 5}
    )["assetCheckExecutions"]


def test_check_results_are_kept_per_week(dagster_ui, cli_runs):
    """After a failed old week, the current week's check still shows its own passed result."""
    old = _executions(dagster_ui, "weekly_scores", "weekly_scores_valid", OLD_WEEK.isoformat())
    assert old and old[0]["status"] == "FAILED" and old[0]["runId"] == cli_runs["old"]
    current = _executions(dagster_ui, "weekly_scores", "weekly_scores_valid", WEEK.isoformat())
    assert current and current[0]["status"] == "SUCCEEDED" and current[0]["runId"] == cli_runs["current"]
    assert current[0]["evaluation"]["partition"] == WEEK.isoformat()
    metadata = {m["label"]: m.get("text") for m in current[0]["evaluation"]["metadataEntries"]}
    assert metadata["week"] == WEEK.isoformat()
    converged = _executions(dagster_ui, "brms_posterior", "brms_posterior_converged", WEEK.isoformat())
    assert converged and converged[0]["status"] == "SUCCEEDED"
    fit = {m["label"]: m.get("text") for m in converged[0]["evaluation"]["metadataEntries"]}
    assert fit["week"] == WEEK.isoformat() and fit["fit_run_id"] not in (None, "none")
