"""What the command-line entry points share: settings and reachability checked before a run is
recorded (exit 2 or 3 naming the problem), and one of the code location's jobs executed in this process,
recorded in the Dagster instance at DAGSTER_HOME when there is one."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

import dagster as dg

from seed_growth.resources import DatabaseUnavailable, PlumberError, PlumberResource, PostgresResource
from seed_growth.settings import GrowthSettings, SettingsError


def monday(value: str) -> dt.date:
    """argparse type: an ISO date that is a Monday."""
    day = dt.date.fromisoformat(value)
    if day.weekday() != 0:
        raise argparse.ArgumentTypeError(f"{value} is not a Monday")
    return day


def _required_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SettingsError(f"{name} is not set")
    return value


class Exit(Exception):
    """Stop with an exit code, having said why on stderr."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


def prepare(prog: str) -> GrowthSettings:
    """Settings from the environment, and the database and fitting service reachable (exit 2 or 3 if not):
    fail fast, and say what is missing, before a run is recorded."""
    try:
        settings = GrowthSettings.from_env()
        postgres = PostgresResource(database_url=_required_env("DATABASE_URL"))
        plumber = PlumberResource(base_url=_required_env("BRMS_PLUMBER_URL"), max_attempts=2, backoff_initial_s=1.0)
    except SettingsError as exc:
        print(f"{prog}: bad settings: {exc}", file=sys.stderr)
        raise Exit(2) from exc
    for warning in settings.warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    try:
        with postgres.connect() as conn:
            conn.execute("SELECT 1")
        plumber.health()
    except (DatabaseUnavailable, PlumberError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        raise Exit(3) from exc
    print(
        f"{prog}: lookback {settings.lookback_weeks}, family {settings.family}, engine {settings.fit_engine}, "
        f"iter {settings.iter}, chains {settings.chains}, db {postgres.display_url}"
    )
    return settings


# The code location as workspace.yaml names it: runs recorded under it show on their job's Runs tab and
# on the Overview timeline like runs launched from the UI.
LOCATION_NAME = "seed_growth"
DEFINITIONS_MODULE = "seed_growth.definitions"


def remote_job_origin(job_name: str):
    """The origin the webserver gives a run of ``job_name`` launched from the workspace (its repository
    ``__repository__`` in location ``seed_growth``). The UI finds a job's runs by the tag
    ``.dagster/repository`` (``__repository__@seed_growth``), and places runs on the timeline by this
    origin; ``execute_in_process`` records neither."""
    from dagster._core.definitions.repository_definition.valid_definitions import SINGLETON_REPOSITORY_NAME
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(executable_path=sys.executable, module_name=DEFINITIONS_MODULE),
        location_name=LOCATION_NAME,
    )
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME), job_name)


def origin_tags(job_name: str) -> dict[str, str]:
    """The tags that put a run under its job in the UI (as a run launched from the workspace has)."""
    from dagster._core.storage.tags import REPOSITORY_LABEL_TAG

    return {REPOSITORY_LABEL_TAG: remote_job_origin(job_name).repository_origin.get_label()}


def run_job(prog: str, job_name: str, partition_key: str | None = None) -> bool:
    """Execute one of the code location's jobs in this process, recorded in the Dagster instance at
    DAGSTER_HOME when there is one; print its checks and failures."""
    from seed_growth.definitions import defs  # loading the definitions is the slow part

    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    # step-level DEBUG events stay in the instance (and the UI); the terminal gets INFO and up
    log_level = os.environ.get("SEED_GROWTH_LOG_LEVEL", "INFO")
    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        partition_key=partition_key,
        instance=instance,
        raise_on_error=False,
        tags={**origin_tags(job_name), "seed_growth/trigger": prog},
    )
    # the tag lists the run on its job's Runs tab while it runs; the origin places it on the timeline
    stored = instance.get_run_by_id(result.run_id)
    if stored is not None and stored.remote_job_origin is None:
        instance.run_storage.replace_job_origin(stored, remote_job_origin(job_name))
    for event in result.get_asset_check_evaluations():
        status = "passed" if event.passed else "FAILED"
        print(f"  check {event.asset_key.to_user_string()}:{event.check_name} {status}")
    for step in result.get_step_failure_events():
        error = step.step_failure_data.error
        print(
            f"  step {step.step_key} FAILED: {error.message.strip() if error else 'no error recorded'}", file=sys.stderr
        )
    label = f"{job_name} {partition_key}" if partition_key else job_name
    print(f"{prog}: {label}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
    return result.success


def parser_for(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose usage names the module path and whose help is the module's docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m seed_growth.cli.{prog}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
