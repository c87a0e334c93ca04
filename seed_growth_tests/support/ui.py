"""The Dagster UI as the tests start it: ``dagster dev`` (webserver and daemon) in a process group of its
own, a fresh instance (DAGSTER_HOME) and the test's database and fitting service; helpers that ask its
GraphQL API what the UI asks."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
LOCATION = "seed_growth"
REPOSITORY = "__repository__"
REPOSITORY_LABEL = f"{REPOSITORY}@{LOCATION}"  # the tag value the UI filters a job's runs by

# a check's executions, newest first (one partition, or every one with partition null)
CHECK_EXECUTIONS = """
query Executions($assetKey: AssetKeyInput!, $checkName: String!, $partition: String, $limit: Int!) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, partition: $partition, limit: $limit) {
    runId status partition
    evaluation { partition success metadataEntries { label ... on TextMetadataEntry { text } } }
  }
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, probe, timeout_s: float, interval_s: float = 1.0):
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@dataclasses.dataclass
class DagsterUI:
    home: Path
    database_url: str
    plumber_url: str
    port: int = dataclasses.field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOKBACK", "BRMS_", "METRICS_", "GOAL_"))}
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "DATABASE_URL": self.database_url,
                "BRMS_PLUMBER_URL": self.plumber_url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self, timeout_s: float = 240) -> None:
        (self.home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.log = self.home / "dagster-dev.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=REPO,
            env=self.env,
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for("the webserver to serve the code location", self._location_loaded, timeout_s, 2)

    def _location_loaded(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited: {self.log.read_text()[-3000:]}")
        try:
            return bool(self.graphql("{ assetNodes { id } }")["assetNodes"])
        except (httpx.HTTPError, KeyError, TypeError, ValueError, AssertionError):
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        body = answer.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def run_cli(self, module: str, *args: str, timeout_s: float = 900) -> subprocess.CompletedProcess:
        """A command-line entry point against this UI's instance, database and service."""
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def launch_partition(self, job: str, partition: str) -> str:
        """Launch ``job`` for one partition as the UI's Materialize dialog does; the run's id."""
        data = self.graphql(
            LAUNCH_RUN,
            {
                "executionParams": {
                    "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "pipelineName": job},
                    "mode": "default",
                    "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition}]},
                }
            },
        )["launchPipelineExecution"]
        assert data["__typename"] == "LaunchRunSuccess", data
        return data["run"]["runId"]

    def wait_run(self, run_id: str, timeout_s: float = 900) -> str:
        """Wait until the run has finished; its status."""

        def finished():
            status = self.graphql(RUN_STATUS, {"runId": run_id})["runOrError"]["status"]
            return status if status in {"SUCCESS", "FAILURE", "CANCELED"} else None

        return wait_for(f"run {run_id} to finish", finished, timeout_s, 3)


LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}"""

RUN_STATUS = "query Status($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"


# AssetChecksQuery (ui-core assets/asset-checks/AssetChecksQuery.tsx), trimmed to what ExecuteChecksButton reads
ASSET_CHECKS = """
query AssetChecksQuery($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      jobNames
      repository { name location { name } }
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name jobNames canExecuteIndividually partitionDefinition { description }
            executionForLatestMaterialization { runId status partition evaluation { partition } }
          }
        }
      }
    }
  }
}"""

RUN_FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events { __typename ... on ExecutionStepFailureEvent { stepKey error { message } }
                             ... on RunFailureEvent { message } }
    }
  }
}"""


def asset_checks(ui: DagsterUI, asset: str) -> dict[str, Any]:
    """The asset node as the asset's Checks tab loads it (its jobs, repository and checks)."""
    return ui.graphql(ASSET_CHECKS, {"assetKey": {"path": [asset]}})["assetNodeOrError"]


def execute_checks(ui: DagsterUI, asset: str) -> str:
    """Launch the asset's checks as the Checks tab's "Execute all" button does (ExecuteChecksButton.tsx's
    onClick, with the tag useLaunchWithTelemetry adds): the checks' common job, no asset, every check that
    can execute on its own, and no partition. The run's id."""
    node = asset_checks(ui, asset)
    checks = node["assetChecksOrError"]["checks"]
    common = [name for name in checks[0]["jobNames"] if all(name in c["jobNames"] for c in checks)]
    job = common[0] if common else node["jobNames"][0]
    selector = {
        "jobName": job,
        "repositoryLocationName": node["repository"]["location"]["name"],
        "repositoryName": node["repository"]["name"],
        "assetSelection": [],
        "assetCheckSelection": [
            {"assetKey": {"path": [asset]}, "name": c["name"]}
            for c in checks
            if c["canExecuteIndividually"] == "CAN_EXECUTE"
        ],
    }
    params = {
        "mode": "default",
        "runConfigData": "{}",
        "selector": selector,
        "executionMetadata": {"tags": [{"key": "dagster/from_ui", "value": "true"}]},
    }
    data = ui.graphql(LAUNCH_RUN, {"executionParams": params})["launchPipelineExecution"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return data["run"]["runId"]


def run_failures(ui: DagsterUI, run_id: str) -> list[str]:
    """The run's step and run failure messages (what its event log shows in red)."""
    events = ui.graphql(RUN_FAILURES, {"runId": run_id})["logsForRun"]["events"]
    return [
        f"{e.get('stepKey', 'run')}: {(e.get('error') or {}).get('message') or e.get('message')}"
        for e in events
        if e["__typename"] in {"ExecutionStepFailureEvent", "RunFailureEvent"}
    ]
