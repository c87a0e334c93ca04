"""What the command-line entry points share: settings and reachability checked before a run is
recorded (exit 2 or 3 with one line naming the problem), and one of the code location's jobs executed in
this process, recorded in the Dagster instance at DAGSTER_HOME when there is one, one run per partition at
a time (exit 4 when another run holds it).

Exit codes: 0 done; 1 the graph failed; 2 bad settings (a variable's value, the source relation or a
column missing, BRMS_PLUMBER_TOKEN refused, the Dagster instance's configuration); 3 the database, the
fitting service or Dagster's storage (DAGSTER_PG_URL) unreachable; 4 another run is computing the same
partition (nothing done).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import re
import sys
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg

from seed_growth.resources import (
    DatabaseUnavailable,
    PlumberAuthError,
    PlumberError,
    PlumberResource,
    PostgresResource,
    redact,
)
from seed_growth.resources.postgres import first_line
from seed_growth.settings import GrowthSettings, SettingsError
from seed_growth.sql import schema as schema_sql
from seed_growth.sql import scores as scores_sql

EXIT_DONE, EXIT_FAILED, EXIT_SETTINGS, EXIT_UNREACHABLE, EXIT_BUSY = 0, 1, 2, 3, 4


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


def _stop(prog: str, code: int, message: str) -> Exit:
    """Say ``message`` (one line, secrets redacted) on stderr; the :class:`Exit` to raise."""
    print(f"{prog}: {redact(' '.join(message.split()))}", file=sys.stderr)
    return Exit(code)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` checked: the settings, the platform database, the Dagster instance."""

    settings: GrowthSettings
    postgres: PostgresResource
    instance: dg.DagsterInstance


def prepare(prog: str) -> Prepared:
    """Settings from the environment, the database (with the source relation and its columns), Dagster's
    storage and the fitting service (and that it accepts BRMS_PLUMBER_TOKEN) reachable: exit 2 or 3 with
    one line naming the problem, before a run is recorded."""
    try:
        settings = GrowthSettings.from_env()
        postgres = PostgresResource(database_url=_required_env("DATABASE_URL"))
        plumber = PlumberResource(base_url=_required_env("BRMS_PLUMBER_URL"), max_attempts=2, backoff_initial_s=1.0)
    except SettingsError as exc:
        raise _stop(prog, EXIT_SETTINGS, f"bad settings: {exc}") from None
    for warning in settings.warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    try:
        with postgres.connect() as conn:
            scores_sql.check_source(conn, settings.source)
        instance = open_instance(prog)
        plumber.health()
        plumber.check_token()
    except (DatabaseUnavailable, PlumberError) as exc:
        raise _stop(prog, EXIT_UNREACHABLE, str(exc)) from None
    except (LookupError, PlumberAuthError) as exc:
        raise _stop(prog, EXIT_SETTINGS, f"bad settings: {exc}") from None
    except psycopg.Error as exc:  # e.g. no permission to read the source relation
        problem = f"bad settings: cannot read {settings.source.relation} (ATTEMPT_RELATION): {first_line(exc)}"
        raise _stop(prog, EXIT_SETTINGS, problem) from None
    print(
        f"{prog}: lookback {settings.lookback_weeks}, family {settings.family}, engine {settings.fit_engine}, "
        f"iter {settings.iter}, chains {settings.chains}, db {postgres.display_url}"
    )
    return Prepared(settings, postgres, instance)


def open_instance(prog: str) -> dg.DagsterInstance:
    """The Dagster instance at DAGSTER_HOME (ephemeral without one). Its PostgreSQL storage
    (DAGSTER_PG_URL, where its dagster.yaml reads it) is tried first, with a timeout, so an unreachable one is
    one line naming the variable (exit 3) rather than Dagster's retries and traceback; any other problem
    opening the instance is one line naming DAGSTER_HOME (exit 2)."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()
    config = Path(home) / "dagster.yaml"
    storage_url = os.environ.get("DAGSTER_PG_URL")
    if storage_url and config.is_file() and "DAGSTER_PG_URL" in config.read_text(errors="replace"):
        try:
            psycopg.connect(storage_url, connect_timeout=10).close()
        except psycopg.Error as exc:
            raise _stop(
                prog,
                EXIT_UNREACHABLE,
                f"cannot connect to Dagster's run storage at DAGSTER_PG_URL={redact(storage_url)}: {first_line(exc)}",
            ) from None
    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # whatever Dagster raises: one line naming where it looked
        problem = instance_problem(exc)
        message = f"cannot open the Dagster instance of DAGSTER_HOME={home}: {problem}"
        raise _stop(prog, EXIT_SETTINGS, message) from None


_UNSET_VARIABLE = re.compile(r'environment variable "(?P<name>[A-Za-z_][A-Za-z0-9_]*)" which is not set')


def instance_problem(exc: BaseException) -> str:
    """What is wrong with the instance's configuration, in one line: an unset variable by its name, a
    config error by its first message, anything else by its first line."""
    errors = getattr(exc, "errors", None) or []
    messages = [getattr(error, "message", "") for error in errors] + [str(exc)]
    for message in messages:
        unset = _UNSET_VARIABLE.search(message)
        if unset:
            return f"{unset['name']} is not set (dagster.yaml reads it)"
    if errors and getattr(errors[0], "message", ""):
        return redact(str(errors[0].message).strip().splitlines()[0])
    return first_line(exc)


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


def run_lock_name(job_name: str, partition_key: str | None) -> str:
    """The advisory lock a command-line run of ``job_name`` holds on the platform database."""
    return f"seed_growth.cli.{job_name}/{partition_key or '-'}"


def run_job(
    prog: str,
    prepared: Prepared,
    job_name: str,
    partition_key: str | None = None,
    *,
    settings_config: dict[str, Any] | None = None,
) -> int:
    """Execute one of the code location's jobs in this process, recorded in the prepared Dagster
    instance, while holding the partition's advisory lock on the platform database: a second run of the
    same partition is refused (EXIT_BUSY) rather than racing the first. ``settings_config`` is run config
    of the growth_settings resource (e.g. ``rebuild_kept_weeks``). Prints its checks and failures; returns
    EXIT_DONE or EXIT_FAILED."""
    label = f"{job_name} {partition_key}" if partition_key else job_name
    lock = run_lock_name(job_name, partition_key)
    with prepared.postgres.connect() as conn, schema_sql.advisory_lock(conn, lock) as locked:
        if not locked:
            print(
                f"{prog}: {label}: another run is computing it right now (PostgreSQL advisory lock {lock!r}); "
                "not starting a second one",
                file=sys.stderr,
            )
            return EXIT_BUSY
        run_config = job_run_config(os.environ.get("SEED_GROWTH_LOG_LEVEL", "INFO"), settings_config)
        succeeded = _execute(prog, prepared.instance, job_name, partition_key, label, run_config)
        return EXIT_DONE if succeeded else EXIT_FAILED


def job_run_config(log_level: str, settings_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A command-line run's config: the terminal's log level (step-level DEBUG events stay in the instance
    and the UI) and, when given, growth_settings fields that override the environment for this run."""
    config: dict[str, Any] = {"loggers": {"console": {"config": {"log_level": log_level}}}}
    if settings_config:
        config["resources"] = {"growth_settings": {"config": dict(settings_config)}}
    return config


def add_rebuild_flag(parser: argparse.ArgumentParser) -> None:
    """``--rebuild-kept-weeks``: re-aggregate every kept week of the window from the source (a full
    rebuild of the extraction; the same as REBUILD_KEPT_WEEKS=true for this run)."""
    parser.add_argument(
        "--rebuild-kept-weeks",
        action="store_true",
        help="re-aggregate every week of the window from the source instead of reusing kept weeks "
        "(REBUILD_KEPT_WEEKS=true for this run)",
    )


def rebuild_config(args: argparse.Namespace) -> dict[str, Any] | None:
    """growth_settings run config for ``--rebuild-kept-weeks`` (None when it was not given)."""
    return {"rebuild_kept_weeks": True} if getattr(args, "rebuild_kept_weeks", False) else None


def _execute(
    prog: str,
    instance: dg.DagsterInstance,
    job_name: str,
    partition_key: str | None,
    label: str,
    run_config: dict[str, Any],
) -> bool:
    from seed_growth.definitions import defs  # loading the definitions is the slow part

    result = defs.resolve_job_def(job_name).execute_in_process(
        run_config=run_config,
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
        message = redact(error.message.strip()) if error else "no error recorded"
        print(f"  step {step.step_key} FAILED: {message}", file=sys.stderr)
    print(f"{prog}: {label}: run {result.run_id} {'succeeded' if result.success else 'FAILED'}")
    return result.success


def parser_for(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser whose usage names the module path and whose help is the module's docstring."""
    return argparse.ArgumentParser(
        prog=f"python -m seed_growth.cli.{prog}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
