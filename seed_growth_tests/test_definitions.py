"""The code location as Dagster loads it: assets, lineage, checks, the job and the schedule."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from seed_growth.definitions import defs
from seed_growth.schedules import weekly_growth_schedule

REPO = Path(__file__).resolve().parents[1]


def test_lineage():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == {"attempt", "weekly_scores", "brms_posterior", "weekly_kpi_P", "p_calibration"}
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    # p_calibration declares what it reads: the fits, weekly_scores and the target weeks' attempts
    assert parents == {
        "attempt": set(),
        "weekly_scores": {"attempt"},
        "brms_posterior": {"weekly_scores"},
        "weekly_kpi_P": {"brms_posterior"},
        "p_calibration": {"weekly_scores", "brms_posterior", "attempt"},
    }
    assert not graph.get(dg.AssetKey("attempt")).is_materializable


def test_assets_are_weekly_partitioned_on_mondays():
    for key in ("weekly_scores", "brms_posterior", "weekly_kpi_P"):
        partitions = defs.resolve_assets_def(key).partitions_def
        assert isinstance(partitions, dg.WeeklyPartitionsDefinition)
        key = partitions.get_partition_key_for_timestamp(dt.datetime(2026, 11, 22, 23, 0, tzinfo=dt.UTC).timestamp())
        assert key == "2026-11-16" and dt.date.fromisoformat(key).weekday() == 0


def test_checks():
    checks = {(c.asset_key.to_user_string(), c.name): c for c in defs.resolve_asset_graph().asset_check_keys}
    assert set(checks) == {
        ("weekly_scores", "weekly_scores_valid"),
        ("brms_posterior", "brms_posterior_converged"),
        ("weekly_kpi_P", "weekly_kpi_P_valid"),
    }


def test_schedule_runs_mondays_0430_utc_with_12_week_lookback():
    schedule = defs.resolve_schedule_def("weekly_growth_schedule")
    assert schedule.cron_schedule == "30 4 * * 1" and schedule.execution_timezone == "UTC"
    assert schedule.job_name == "weekly_growth_job"
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 23, 4, 30, tzinfo=dt.UTC))
    request = weekly_growth_schedule(context)
    assert request.partition_key == "2026-11-16"
    assert request.run_config == {"resources": {"growth_settings": {"config": {"lookback_weeks": 12}}}}


def test_job_selects_the_whole_graph():
    job = defs.resolve_job_def("weekly_growth_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "weekly_scores",
        "brms_posterior",
        "weekly_kpi_P",
    }


def test_dagster_definitions_validate():
    env = {**os.environ, "DAGSTER_HOME": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_code_location_loads_in_the_webserver(tmp_path):
    """dagster-webserver loads the location and its GraphQL API shows the lineage, as the UI does."""
    import time

    import httpx

    port = _free_port()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    query = "{ assetNodes { assetKey { path } dependencyKeys { path } } }"
    try:
        deadline, nodes = time.monotonic() + 180, None
        while time.monotonic() < deadline and nodes is None:
            try:
                answer = httpx.post(f"http://127.0.0.1:{port}/graphql", json={"query": query}, timeout=10).json()
                nodes = answer["data"]["assetNodes"] or None
            except (httpx.HTTPError, KeyError, TypeError, ValueError):
                time.sleep(1)
        assert nodes, "the webserver did not serve the code location"
        lineage = {n["assetKey"]["path"][0]: sorted(d["path"][0] for d in n["dependencyKeys"]) for n in nodes}
        assert lineage == {
            "attempt": [],
            "weekly_scores": ["attempt"],
            "brms_posterior": ["weekly_scores"],
            "weekly_kpi_P": ["brms_posterior"],
            "p_calibration": ["attempt", "brms_posterior", "weekly_scores"],
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_two_runs_never_overlap(monkeypatch):
    """The run queue admits one run at a time, locally (dagster.yaml, loaded as Dagster loads it) and in
    the Helm values."""
    import yaml

    monkeypatch.setenv("DAGSTER_HOME", str(REPO))
    monkeypatch.setenv("DAGSTER_PG_URL", os.environ.get("DAGSTER_PG_URL", "postgresql://localhost/unused"))
    coordinator = dg.DagsterInstance.get().run_coordinator
    assert isinstance(coordinator, dg.QueuedRunCoordinator)
    assert coordinator.get_run_queue_config().max_concurrent_runs == 1
    helm = yaml.safe_load((REPO / "deploy" / "helm" / "dagster-values.yaml").read_text())
    queued = helm["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == 1


def test_the_instance_keeps_runs_and_events_in_postgres(database_url, monkeypatch):
    """dagster.yaml as the scripts use it (DAGSTER_HOME = the repository): a run and its events land in
    PostgreSQL (the session's database standing in for DAGSTER_PG_URL's)."""

    @dg.asset
    def probe() -> int:
        return 1

    monkeypatch.setenv("DAGSTER_HOME", str(REPO))
    monkeypatch.setenv("DAGSTER_PG_URL", database_url)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        result = dg.materialize([probe], instance=instance)
        assert result.success
        stored = instance.get_run_by_id(result.run_id)
        assert stored is not None and stored.is_success
        assert instance.get_latest_materialization_event(dg.AssetKey("probe")) is not None


def test_first_partition_follows_seed_growth_first_week():
    from seed_growth.partitions import DEFAULT_FIRST_WEEK, first_week, weekly_partitions

    assert (
        weekly_partitions.start.date() == DEFAULT_FIRST_WEEK == dt.date(2026, 1, 5)
        and DEFAULT_FIRST_WEEK.weekday() == 0
    )
    assert first_week({"SEED_GROWTH_FIRST_WEEK": "2025-06-02"}) == dt.date(2025, 6, 2)
    keys = defs.resolve_assets_def("weekly_scores").partitions_def.get_partition_keys(  # type: ignore[union-attr]
        current_time=dt.datetime(2026, 11, 27, tzinfo=dt.UTC)
    )
    assert keys[0] == "2026-01-05" and keys[-1] == "2026-11-16" and len(keys) == 46


def _load_with(first_week: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(REPO), "SEED_GROWTH_FIRST_WEEK": first_week}
    code = (
        "from seed_growth.definitions import defs; "
        "print(defs.resolve_assets_def('weekly_scores').partitions_def.start.date())"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_first_week_is_read_when_the_location_loads_and_a_bad_one_is_named():
    assert _load_with("2025-09-01").stdout.strip() == "2025-09-01"
    for bad, message in [
        ("2026-01-06", "SEED_GROWTH_FIRST_WEEK='2026-01-06' is a Tuesday; expected a Monday"),
        ("soon", "SEED_GROWTH_FIRST_WEEK='soon' is not a date"),
    ]:
        result = _load_with(bad)
        assert result.returncode != 0 and message in result.stderr, result.stderr[-2000:]


def test_launchpad_shows_the_effective_settings_as_defaults(monkeypatch):
    """The growth_settings config's default is the environment's value when the location loads (either
    name of a variable); run config still wins; a bad value leaves the fields unset (the run names it)."""
    from seed_growth.resources import GrowthSettingsResource

    monkeypatch.setenv("BRMS_LOOKBACK_WEEKS", "10")
    monkeypatch.setenv("BRMS_N_CHAINS", "3")
    resource = GrowthSettingsResource.from_env()
    assert (resource.lookback_weeks, resource.chains, resource.iter, resource.family) == (10, 3, 1000, "gaussian")
    from seed_growth.assets import weekly_scores
    from seed_growth.resources import PostgresResource

    job = dg.Definitions(
        assets=[weekly_scores],
        jobs=[dg.define_asset_job("j")],
        resources={"growth_settings": resource, "postgres": PostgresResource(database_url="postgresql://unused")},
    ).resolve_job_def("j")
    field = job.run_config_schema.config_type.fields["resources"].config_type.fields["growth_settings"]  # type: ignore[attr-defined]
    assert field.default_value["config"]["lookback_weeks"] == 10
    assert GrowthSettingsResource(**{**resource.model_dump(), "lookback_weeks": 12}).resolve().lookback_weeks == 12
    monkeypatch.setenv("BRMS_N_CHAINS", "many")
    assert GrowthSettingsResource.from_env().lookback_weeks is None


def test_resources_are_described():
    for key, resource in defs.resources.items():  # type: ignore[union-attr]
        assert (type(resource).__doc__ or "").strip(), f"resource {key} has no description"


def test_cli_runs_carry_the_location_of_workspace_yaml():
    import yaml

    from seed_growth.cli.run import origin_tags, remote_job_origin

    location = yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"][0]["python_module"]["location_name"]
    assert origin_tags("weekly_growth_job") == {".dagster/repository": f"__repository__@{location}"}
    assert remote_job_origin("weekly_growth_job").location_name == location


def test_run_script_runs_the_backtest_before_the_current_week():
    script = (REPO / "scripts" / "run.sh").read_text()
    assert script.index("seed_growth.cli.backtest") < script.index("seed_growth.cli.fit_bayesian_growth")
