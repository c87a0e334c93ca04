"""Issue 15 item 10: a run killed mid-flight does not stay STARTED for ever. dagster.yaml enables the
daemon's run monitoring; a command-line run killed with SIGKILL is marked failed by the daemon. To keep
the test short it runs the repository's dagster.yaml with only the two waits shortened."""

import os
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest
import yaml

from seed_growth_tests.support.graph import WEEK, load_cohort
from seed_growth_tests.support.ui import REPO, wait_for
from seed_growth_tests.test_ops_cli_checks import dagster_storage_url  # noqa: F401 - a fixture

REPO_CONFIG = yaml.safe_load((REPO / "dagster.yaml").read_text())


def test_the_instance_config_enables_run_monitoring(dagster_storage_url, monkeypatch):  # noqa: F811
    monitoring = REPO_CONFIG["run_monitoring"]
    assert monitoring["enabled"] is True
    assert 0 < monitoring["max_runtime_seconds"] and monitoring["max_resume_run_attempts"] == 0
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_storage_url)
    instance = dg.DagsterInstance.from_config(str(REPO))
    try:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_runtime_seconds == monitoring["max_runtime_seconds"]
        assert "MONITORING" in instance.get_required_daemon_types()
    finally:
        instance.dispose()


def _group(args: list[str], env: dict[str, str], log) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def test_a_killed_run_is_marked_failed_by_run_monitoring(
    clean_database,
    plumber_url,
    dagster_storage_url,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    config = {**REPO_CONFIG, "run_monitoring": {**REPO_CONFIG["run_monitoring"]}}
    config["run_monitoring"].update(max_runtime_seconds=5, poll_interval_seconds=2)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    load_cohort(clean_database)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKBACK", "BRMS_", "METRICS_", "GOAL_"))}
    env.update(
        DAGSTER_HOME=str(tmp_path),
        DAGSTER_PG_URL=dagster_storage_url,
        DATABASE_URL=clean_database,
        BRMS_PLUMBER_URL=plumber_url,
        BRMS_ITER="4000",  # a fit long enough to be killed in
    )
    monkeypatch.setenv("DAGSTER_PG_URL", dagster_storage_url)
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    log = (tmp_path / "processes.log").open("w")
    cli = _group([sys.executable, "-m", "seed_growth.jobs.fit_bayesian_growth", "--week", WEEK.isoformat()], env, log)
    daemon = None
    try:
        started = wait_for(
            "the command-line run to start",
            lambda: instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])),
            timeout_s=180,
            interval_s=0.5,
        )
        run_id = started[0].run_id
        _kill(cli)  # kill -9, mid-flight
        time.sleep(1)
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.STARTED  # what used to stay for ever

        daemon = _group([sys.executable, "-m", "dagster._daemon", "run", "-w", "workspace.yaml"], env, log)
        failed = wait_for(
            "run monitoring to mark the killed run failed",
            lambda: (r := instance.get_run_by_id(run_id)) is not None and r.status == dg.DagsterRunStatus.FAILURE,
            timeout_s=180,
            interval_s=2,
        )
        assert failed
    except AssertionError:
        log.flush()
        pytest.fail((tmp_path / "processes.log").read_text()[-4000:])
    finally:
        _kill(cli)
        if daemon is not None:
            _kill(daemon)
        log.close()
        instance.dispose()
