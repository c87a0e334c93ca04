"""Production deployment files: Dockerfile, deploy/k8s (kustomize), deploy/helm/dagster-values.yaml.

Everything here runs offline:
- every Kubernetes object in deploy/k8s (and, when kubectl is installed, the `kubectl kustomize` output)
  is validated in strict mode (unknown fields are errors) against the Kubernetes OpenAPI schemas that
  the `kubernetes-validate` package bundles;
- the Helm values are checked against the key names of the official dagster/dagster chart, and the
  K8sRunLauncher configuration they render to is validated with dagster-k8s itself and turned into the
  real run-pod Job, which is validated like the manifests;
- the CronJob must keep the platform's name, schedule and command; every environment variable the
  manifests set must be one the code (or the plumber service) reads;
- the Dockerfile is linted with hadolint when it is installed, and its key lines are checked always.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
K8S_DIR = ROOT / "deploy" / "k8s"
HELM_VALUES = ROOT / "deploy" / "helm" / "dagster-values.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PLUMBER_DOCKERFILE = ROOT / "r-brms-plumber" / "Dockerfile"
# BuildKit's per-Dockerfile ignore file: the plumber image is built from the root with its own context rules
PLUMBER_DOCKERIGNORE = ROOT / "r-brms-plumber" / "Dockerfile.dockerignore"
# what the plumber image copies from outside r-brms-plumber/: the root project (only its engine is installed)
PLUMBER_ROOT_SOURCES = {"pyproject.toml", "README.md", "constraints.txt", "growth_engine"}

# Schemas bundled by kubernetes-validate: the oldest version we claim and the newest the package ships.
# Everything used (CronJob.spec.timeZone included) is GA since Kubernetes 1.27.
K8S_VERSIONS = ("1.33.0", "1.37.0")

NAMESPACE = "seed-growth"

# ---------------------------------------------------------------------------------------------------
# What the code reads (the project's contract; seed_growth/settings.py and the plumber service).
# ---------------------------------------------------------------------------------------------------
DAGSTER_SIDE_VARS = frozenset(
    {
        "DATABASE_URL",
        "DAGSTER_PG_URL",
        "BRMS_PLUMBER_URL",
        "BRMS_PLUMBER_TOKEN",
        "LOOKBACK_WEEKS",
        "BRMS_LOOKBACK_WEEKS",
        "BRMS_ITER",
        "BRMS_N_SAMPLES",
        "BRMS_CHAINS",
        "BRMS_N_CHAINS",
        "BRMS_FAMILY",
        "BRMS_ENGINE",
        "METRICS_USE_BAYESIAN",
        "GOAL_SCORE",
        "GOAL_HORIZON_WEEKS",
        "ATTEMPT_RELATION",
        "DAGSTER_HOME",
    }
)
PLUMBER_VARS = frozenset(
    {
        "BRMS_PLUMBER_HOST",
        "BRMS_PLUMBER_PORT",
        "BRMS_PLUMBER_TOKEN",
        "BRMS_MODEL_DIR",
        "BRMS_WARMUP_FAMILIES",
    }
)
# Read by the runtime (Python / R / libraries), not by our code: allowed in every container.
PROCESS_VARS = frozenset({"HOME", "TMPDIR"})
SECRET_VARS = frozenset({"DATABASE_URL", "DAGSTER_PG_URL", "BRMS_PLUMBER_TOKEN"})
# documented name -> the platform CronJob's name (both accepted; seed_growth.settings.ALIASES)
ALIASES = {
    "LOOKBACK_WEEKS": "BRMS_LOOKBACK_WEEKS",
    "BRMS_ITER": "BRMS_N_SAMPLES",
    "BRMS_CHAINS": "BRMS_N_CHAINS",
}
FAMILIES = {"gaussian", "binomial"}
ENGINES = {"auto", "collapsed", "brms"}

# The platform's CronJob (the design note this project replaces).
PLATFORM_CRONJOB_NAME = "fit-bayesian-growth"
PLATFORM_SCHEDULE = "30 4 * * 1"  # Mondays 04:30 UTC
PLATFORM_COMMAND = ["python", "-m", "seed_growth.jobs.fit_bayesian_growth"]
PLATFORM_ENV = {
    "BRMS_LOOKBACK_WEEKS": "12",
    "BRMS_N_SAMPLES": "1000",
    "BRMS_N_CHAINS": "2",
    "BRMS_FAMILY": "gaussian",
}
DEFINITIONS_MODULE = "seed_growth.definitions"
CODE_SERVER_PORT = 3030
PLUMBER_PORT = 8000

# ---------------------------------------------------------------------------------------------------
# Key names of the official dagster/dagster Helm chart, from github.com/dagster-io/dagster:
#   helm/dagster/values.yaml (commit 835892b45aaa0917bc97102968fe062155b64e19) and the pydantic models the
#   chart's values.schema.json is generated from, helm/dagster/schema/schema/charts/:
#   dagster/values.py (DagsterHelmValues), dagster/subschema/run_launcher.py (K8sRunLauncherConfig,
#   RunK8sConfig: extra=forbid), dagster/subschema/daemon.py (Daemon: extra=forbid),
#   dagster/subschema/webserver.py (Webserver: extra=forbid), dagster/subschema/postgresql.py,
#   dagster/subschema/global_.py, dagster_user_deployments/subschema/user_deployments.py.
# A key outside these sets is rejected by `helm install` (schema) or silently ignored by the chart.
# ---------------------------------------------------------------------------------------------------
CHART_TOP_LEVEL_KEYS = {
    "global",
    "nameOverride",
    "fullnameOverride",
    "rbacEnabled",
    "imagePullSecrets",
    "dagsterWebserver",
    "dagster-user-deployments",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "generateCeleryConfigSecret",
    "rabbitmq",
    "redis",
    "flower",
    "ingress",
    "computeLogManager",
    "scheduler",
    "runLauncher",
    "pythonLogs",
    "dagsterDaemon",
    "busybox",
    "migrate",
    "telemetry",
    "serviceAccount",
    "retention",
    "additionalInstanceConfig",
    "extraManifests",
}
CHART_GLOBAL_KEYS = {
    "postgresqlSecretName",
    "dagsterHome",
    "serviceAccountName",
    "celeryConfigSecretName",
    "dagsterInstanceConfigMap",
}
CHART_POSTGRESQL_KEYS = {
    "image",
    "enabled",
    "postgresqlHost",
    "postgresqlUsername",
    "postgresqlPassword",
    "postgresqlDatabase",
    "postgresqlParams",
    "postgresqlScheme",
    "service",
}
CHART_K8S_RUN_LAUNCHER_KEYS = {
    "image",
    "imagePullPolicy",
    "jobNamespace",
    "loadInclusterConfig",
    "kubeconfigFile",
    "envConfigMaps",
    "envSecrets",
    "envVars",
    "volumeMounts",
    "volumes",
    "labels",
    "failPodOnRunFailure",
    "resources",
    "schedulerName",
    "securityContext",
    "runK8sConfig",
}
CHART_RUN_K8S_CONFIG_KEYS = {
    "containerConfig",
    "podSpecConfig",
    "podTemplateSpecMetadata",
    "jobSpecConfig",
    "jobMetadata",
}
CHART_USER_DEPLOYMENTS_KEYS = {"enabled", "enableSubchart", "imagePullSecrets", "deployments"}
CHART_USER_DEPLOYMENT_KEYS = {
    "name",
    "image",
    "dagsterApiGrpcArgs",
    "codeServerArgs",
    "includeConfigInLaunchedRuns",
    "deploymentNamespace",
    "port",
    "replicaCount",
    "env",
    "envConfigMaps",
    "envSecrets",
    "annotations",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "labels",
    "volumeMounts",
    "volumes",
    "schedulerName",
    "initContainers",
    "sidecarContainers",
    "deploymentStrategy",
    "service",
}
CHART_DAEMON_KEYS = {
    "enabled",
    "image",
    "runCoordinator",
    "heartbeatTolerance",
    "env",
    "envConfigMaps",
    "envSecrets",
    "deploymentLabels",
    "labels",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "annotations",
    "runMonitoring",
    "runRetries",
    "sensors",
    "schedules",
    "schedulerName",
    "volumeMounts",
    "volumes",
    "initContainerResources",
}
CHART_QUEUED_RUN_COORDINATOR_KEYS = {
    "maxConcurrentRuns",
    "tagConcurrencyLimits",
    "dequeueIntervalSeconds",
    "dequeueNumWorkers",
    "dequeueUseThreads",
}
CHART_WEBSERVER_KEYS = {
    "replicaCount",
    "image",
    "nameOverride",
    "pathPrefix",
    "service",
    "workspace",
    "env",
    "envConfigMaps",
    "envSecrets",
    "deploymentLabels",
    "labels",
    "nodeSelector",
    "affinity",
    "tolerations",
    "podSecurityContext",
    "securityContext",
    "resources",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "annotations",
    "enableReadOnly",
    "dbStatementTimeout",
    "dbPoolRecycle",
    "logLevel",
    "schedulerName",
    "volumeMounts",
    "volumes",
}
# The chart reads the Dagster PostgreSQL password from this key of global.postgresqlSecretName
# (helm/dagster/templates/secret-postgres.yaml, deployment-daemon.yaml: secretKeyRef key).
CHART_PG_PASSWORD_KEY = "postgresql-password"
# DNS-1035 label: the user deployment's name is also its Service's name.
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def load_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as fh:
        return [doc for doc in yaml.safe_load_all(fh) if doc is not None]


def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def all_k8s_docs() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.name}#{i}", doc) for path in k8s_manifest_files() for i, doc in enumerate(load_docs(path))]


def applied_docs() -> list[dict[str, Any]]:
    """The objects `kubectl apply -k deploy/k8s` applies (from the kustomization's resources)."""
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in load_docs(K8S_DIR / name)]


def find(kind: str, name: str, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    docs = applied_docs() if docs is None else docs
    matches = [d for d in docs if d.get("kind") == kind and d.get("metadata", {}).get("name") == name]
    assert len(matches) == 1, f"expected exactly one {kind}/{name} in deploy/k8s, found {len(matches)}"
    return matches[0]


def helm_values() -> dict[str, Any]:
    return yaml.safe_load(HELM_VALUES.read_text())


def user_deployment(values: Mapping[str, Any]) -> dict[str, Any]:
    deployments = values["dagster-user-deployments"]["deployments"]
    assert isinstance(deployments, list) and len(deployments) == 1, "exactly one code location expected"
    return deployments[0]


def k8s_run_launcher(values: Mapping[str, Any]) -> dict[str, Any]:
    return values["runLauncher"]["config"]["k8sRunLauncher"]


def pod_spec_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if doc["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
        return doc["spec"]["template"]["spec"]
    raise AssertionError(f"no pod template in {doc['kind']}")


def containers_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec_of(doc)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_map(env: list[Mapping[str, Any]]) -> dict[str, Any]:
    names = [e["name"] for e in env]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"environment variables set twice: {sorted(duplicates)}"
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in env}


def effective_settings(env: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve the aliases the way seed_growth.settings does (documented name first)."""
    out = {}
    for name, alias in ALIASES.items():
        out[name] = env.get(name, env.get(alias))
    for name in (
        "BRMS_FAMILY",
        "BRMS_ENGINE",
        "BRMS_PLUMBER_URL",
        "METRICS_USE_BAYESIAN",
        "GOAL_SCORE",
        "GOAL_HORIZON_WEEKS",
        "ATTEMPT_RELATION",
    ):
        out[name] = env.get(name)
    return out


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_FACTORS = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: Any) -> float:
    """A Kubernetes resource quantity as a number (bytes or cores). The schemas accept any string."""
    match = _QUANTITY.match(str(value))
    assert match, f"{value!r} is not a Kubernetes quantity"
    return float(match.group(1)) * _FACTORS[match.group(2)]


def check_resources(resources: Mapping[str, Any], where: str) -> None:
    assert set(resources) <= {"requests", "limits", "claims"}, where
    for section in ("requests", "limits"):
        for key, value in resources.get(section, {}).items():
            assert key in {"cpu", "memory", "ephemeral-storage"}, f"{where}: unexpected resource {key}"
            quantity(value)
    for key, limit in resources.get("limits", {}).items():
        if key in resources.get("requests", {}):
            assert quantity(limit) >= quantity(resources["requests"][key]), f"{where}: {key} limit < request"
    assert "memory" in resources.get("requests", {}), f"{where}: no memory request"
    assert "memory" in resources.get("limits", {}), f"{where}: no memory limit"


def check_restricted_security(
    pod_security: Mapping[str, Any], container_security: Mapping[str, Any], where: str
) -> None:
    """What the Pod Security 'restricted' profile asks of a pod we own."""
    run_as_non_root = container_security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
    assert run_as_non_root is True, f"{where}: runAsNonRoot"
    user = container_security.get("runAsUser", pod_security.get("runAsUser"))
    assert isinstance(user, int) and user > 0, f"{where}: numeric non-root runAsUser"
    seccomp = container_security.get("seccompProfile", pod_security.get("seccompProfile", {}))
    assert seccomp.get("type") in {"RuntimeDefault", "Localhost"}, f"{where}: seccompProfile"
    assert container_security.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert container_security.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: drop ALL"
    assert not container_security.get("privileged", False), f"{where}: privileged"


def validate(doc: Mapping[str, Any], version: str) -> None:
    kubernetes_validate.validate(dict(doc), version, strict=True)


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    logical, buf = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)
    out = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern[1:] if negate else pattern
        pattern = pattern.strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]").replace(r"\[", "[").replace(r"\]", "]")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


# ---------------------------------------------------------------------------------------------------
# 1. every Kubernetes object validates (strict) against the bundled schemas
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("label,doc", all_k8s_docs(), ids=[label for label, _ in all_k8s_docs()])
def test_manifest_validates_against_kubernetes_schema(label: str, doc: dict[str, Any], version: str) -> None:
    assert doc.get("apiVersion") and doc.get("kind"), f"{label}: not a Kubernetes object"
    validate(doc, version)


def test_schemas_are_bundled_and_strict_validation_catches_mistakes() -> None:
    """Guard against a vacuous check: the validator must know our versions and reject a typo."""
    bundled = set(kubernetes_validate.utils.all_versions())
    for version in K8S_VERSIONS:
        assert version in bundled
    cronjob = find("CronJob", PLATFORM_CRONJOB_NAME)
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    pod_spec_of(broken)["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, K8S_VERSIONS[-1])
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    broken["spec"]["concurrencyPolicy"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, K8S_VERSIONS[-1])


def test_expected_objects_exist_and_namespace() -> None:
    docs = applied_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Namespace", NAMESPACE),
        ("Deployment", "r-brms-plumber"),
        ("Service", "r-brms-plumber"),
        ("PersistentVolumeClaim", "r-brms-plumber-models"),
        ("CronJob", PLATFORM_CRONJOB_NAME),
    ]:
        assert expected in kinds, f"missing {expected}"
    for doc in docs:
        # kustomize sets the namespace; a hard-coded other one would be a mistake
        assert doc["metadata"].get("namespace") in (None, NAMESPACE)
    assert not any(d["kind"] == "Secret" for d in docs), "Secrets must not be applied from the repository"


# ---------------------------------------------------------------------------------------------------
# 2. kustomization
# ---------------------------------------------------------------------------------------------------
def test_kustomization_ties_the_manifests_together() -> None:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert kustomization["namespace"] == NAMESPACE
    resources = kustomization["resources"]
    for name in resources:
        assert (K8S_DIR / name).is_file(), f"kustomization lists missing file {name}"
    assert "secrets.example.yaml" not in resources, "placeholder Secrets must never be applied"
    expected = {p.name for p in k8s_manifest_files()} - {"secrets.example.yaml"}
    assert set(resources) == expected, "every manifest in deploy/k8s belongs in the kustomization"
    for generator in kustomization.get("configMapGenerator", []):
        for entry in generator["files"]:
            assert (K8S_DIR / entry.split("=", 1)[-1]).is_file()
    image_names = {i["name"] for i in kustomization["images"]}
    used = {c["image"] for d in applied_docs() if d["kind"] in {"Deployment", "CronJob"} for c in containers_of(d)}
    assert used <= image_names, f"images without a kustomize override: {used - image_names}"


def test_cronjob_dagster_instance_config_is_valid_for_dagster() -> None:
    dagster_config = pytest.importorskip("dagster._core.instance.config")
    import importlib

    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    (generator,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "seed-growth-dagster-instance"]
    (entry,) = generator["files"]
    key, path = entry.split("=", 1)
    assert key == "dagster.yaml"
    config, _ = dagster_config.dagster_instance_config(str((K8S_DIR / path).parent), Path(path).name)
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "DAGSTER_PG_URL"}
    compute_logs = config["compute_logs"]
    assert hasattr(importlib.import_module(compute_logs["module"]), compute_logs["class"])
    # the CronJob mounts it where DAGSTER_HOME points
    cronjob = find("CronJob", PLATFORM_CRONJOB_NAME)
    (container,) = pod_spec_of(cronjob)["containers"]
    home = env_map(container["env"])["DAGSTER_HOME"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[f"{home}/dagster.yaml"]["subPath"] == "dagster.yaml"
    volumes = {v["name"]: v for v in pod_spec_of(cronjob)["volumes"]}
    assert volumes[mounts[f"{home}/dagster.yaml"]["name"]]["configMap"]["name"] == generator["name"]
    assert home in mounts, "DAGSTER_HOME must be a writable volume under a read-only root filesystem"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with built-in kustomize) not installed")
def test_kustomize_build_renders_valid_objects() -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S_DIR)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    for doc in docs:
        for version in K8S_VERSIONS:
            validate(doc, version)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["name"].startswith("seed-growth-dagster-instance-")  # content hash
    cronjob = find("CronJob", PLATFORM_CRONJOB_NAME, docs)
    names = {v["configMap"]["name"] for v in pod_spec_of(cronjob)["volumes"] if "configMap" in v}
    assert names == {configmap["metadata"]["name"]}, "kustomize must rewrite the ConfigMap reference"
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    expected_images = {f"{i['newName']}:{i['newTag']}" for i in kustomization["images"]}
    rendered_images = {c["image"] for d in docs if d["kind"] in {"Deployment", "CronJob"} for c in containers_of(d)}
    assert rendered_images == expected_images


# ---------------------------------------------------------------------------------------------------
# 3. the CronJob keeps the platform's contract
# ---------------------------------------------------------------------------------------------------
def test_cronjob_matches_the_platform() -> None:
    cronjob = find("CronJob", PLATFORM_CRONJOB_NAME)
    spec = cronjob["spec"]
    assert spec["schedule"] == PLATFORM_SCHEDULE
    assert spec["timeZone"] in {"Etc/UTC", "UTC"}
    assert spec["concurrencyPolicy"] == "Forbid"
    # `suspend` is free: it is how the schedule moves to Dagster (docs/deployment.md)
    assert isinstance(spec.get("suspend", False), bool)
    job = spec["jobTemplate"]["spec"]
    assert isinstance(job["backoffLimit"], int) and 0 < job["backoffLimit"] <= 5
    assert isinstance(job["activeDeadlineSeconds"], int) and 600 <= job["activeDeadlineSeconds"] <= 6 * 3600
    pod = pod_spec_of(cronjob)
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    (container,) = pod["containers"]
    assert container.get("command", []) + container.get("args", []) == PLATFORM_COMMAND
    env = env_map(container["env"])
    for name, value in PLATFORM_ENV.items():
        assert env.get(name) == value, f"{name} must stay {value!r} as in the platform CronJob"
    assert env["BRMS_PLUMBER_URL"] == f"http://r-brms-plumber:{PLUMBER_PORT}"
    assert container["image"] == "seed-growth-dagster"


def test_cronjob_entry_point_and_definitions_exist_in_the_source_tree() -> None:
    """The commands the manifests run name modules of this repository."""
    for module in (PLATFORM_COMMAND[-1], DEFINITIONS_MODULE):
        relative = Path(*module.split("."))
        assert (ROOT / f"{relative}.py").is_file() or (ROOT / relative / "__init__.py").is_file(), (
            f"{module} (run by the deployment) is not in the source tree"
        )


def test_secrets_come_from_secret_refs_and_exist_in_the_example() -> None:
    example = {d["metadata"]["name"]: d for d in load_docs(K8S_DIR / "secrets.example.yaml")}
    for doc in applied_docs():
        if doc["kind"] not in {"Deployment", "CronJob"}:
            continue
        for container in containers_of(doc):
            for entry in container.get("env", []):
                if entry["name"] in SECRET_VARS:
                    ref = entry.get("valueFrom", {}).get("secretKeyRef")
                    assert ref, f"{entry['name']} must come from a Secret, not a literal value"
                    assert ref["name"] in example, f"Secret {ref['name']} missing from secrets.example.yaml"
                    assert ref["key"] in example[ref["name"]]["stringData"]
                else:
                    assert "secretKeyRef" not in entry.get("valueFrom", {}), f"{entry['name']} is not secret"


def test_secret_example_is_only_placeholders() -> None:
    docs = load_docs(K8S_DIR / "secrets.example.yaml")
    assert "EXAMPLE ONLY" in (K8S_DIR / "secrets.example.yaml").read_text()
    assert docs
    for doc in docs:
        assert doc["kind"] == "Secret"
        assert "data" not in doc, "use stringData placeholders, never encoded values"
        for key, value in doc["stringData"].items():
            assert "CHANGE_ME" in value, f"{doc['metadata']['name']}.{key} is not a placeholder"


# ---------------------------------------------------------------------------------------------------
# 4. environment variables: only names the code reads
# ---------------------------------------------------------------------------------------------------
def dagster_side_envs() -> dict[str, dict[str, Any]]:
    values = helm_values()
    cronjob = find("CronJob", PLATFORM_CRONJOB_NAME)
    (container,) = pod_spec_of(cronjob)["containers"]
    return {
        "CronJob": env_map(container["env"]),
        "helm code server": env_map(user_deployment(values)["env"]),
        "helm run pods": env_map(k8s_run_launcher(values)["runK8sConfig"]["containerConfig"]["env"]),
    }


def test_env_names_are_ones_the_code_reads() -> None:
    for where, env in dagster_side_envs().items():
        unknown = set(env) - DAGSTER_SIDE_VARS - PROCESS_VARS
        assert not unknown, f"{where} sets variables the code does not read: {sorted(unknown)}"
    plumber = find("Deployment", "r-brms-plumber")
    (container,) = pod_spec_of(plumber)["containers"]
    unknown = set(env_map(container["env"])) - PLUMBER_VARS - PROCESS_VARS
    assert not unknown, f"r-brms-plumber sets variables it does not read: {sorted(unknown)}"
    # Secrets injected whole (envFrom) by the Helm chart: each key becomes a variable
    example = {d["metadata"]["name"]: d for d in load_docs(K8S_DIR / "secrets.example.yaml")}
    for secret in user_deployment(helm_values())["envSecrets"]:
        keys = set(example[secret["name"]]["stringData"])
        assert keys <= DAGSTER_SIDE_VARS & SECRET_VARS, f"{secret['name']} has keys {sorted(keys)}"


def test_env_values_are_valid_and_identical_between_cronjob_and_dagster() -> None:
    envs = dagster_side_envs()
    settings = {where: effective_settings(env) for where, env in envs.items()}
    reference = settings["CronJob"]
    for where, values in settings.items():
        assert values == reference, f"{where} would fit with other settings than the CronJob: {values}"
    assert reference["BRMS_FAMILY"] in FAMILIES
    assert reference["BRMS_ENGINE"] in ENGINES
    assert not (reference["BRMS_ENGINE"] == "collapsed" and reference["BRMS_FAMILY"] != "gaussian")
    assert 2 <= int(reference["LOOKBACK_WEEKS"]) <= 104
    assert 200 <= int(reference["BRMS_ITER"]) <= 20000
    assert 1 <= int(reference["BRMS_CHAINS"]) <= 8
    assert 0 < float(reference["GOAL_SCORE"]) <= 1
    assert reference["METRICS_USE_BAYESIAN"] in {"true", "false"}
    for env in envs.values():
        for name, value in env.items():
            if name not in SECRET_VARS:
                assert isinstance(value, str), f"{name}: env values must be strings, got {value!r}"
    cronjob_home = envs["CronJob"]["DAGSTER_HOME"]
    assert cronjob_home == helm_values()["global"]["dagsterHome"]


# ---------------------------------------------------------------------------------------------------
# 5. r-brms-plumber
# ---------------------------------------------------------------------------------------------------
def test_plumber_deployment() -> None:
    deployment = find("Deployment", "r-brms-plumber")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate", "RWO volume: old pod must stop first"
    pod = pod_spec_of(deployment)
    (container,) = pod["containers"]
    env = env_map(container["env"])
    assert env["BRMS_PLUMBER_HOST"] == "0.0.0.0"
    assert env["BRMS_PLUMBER_PORT"] == str(PLUMBER_PORT)
    assert env["BRMS_WARMUP_FAMILIES"] == "gaussian"
    token = env["BRMS_PLUMBER_TOKEN"]["secretKeyRef"]
    assert token["key"] == "BRMS_PLUMBER_TOKEN"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": PLUMBER_PORT}

    # model dir on the PVC
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    claim = volumes[mounts[env["BRMS_MODEL_DIR"]]]["persistentVolumeClaim"]["claimName"]
    pvc = find("PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert quantity(pvc["spec"]["resources"]["requests"]["storage"]) >= 5 * 2**30
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts, "a read-only root filesystem needs a writable /tmp for R"

    # probes: /health on the service port; startup generous enough for the warm-up compile
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/health"
        assert http["port"] in ("http", PLUMBER_PORT)
    startup = container["startupProbe"]
    budget = startup.get("initialDelaySeconds", 0) + startup["periodSeconds"] * startup["failureThreshold"]
    assert budget >= 600, f"startupProbe allows only {budget}s for start-up and warm-up compile"
    liveness = container["livenessProbe"]
    # a fit keeps the CPUs busy: do not restart the pod for one slow answer
    assert liveness["timeoutSeconds"] >= 5 and liveness["failureThreshold"] >= 3

    resources = container["resources"]
    check_resources(resources, "r-brms-plumber")
    assert quantity(resources["requests"]["cpu"]) >= 2
    assert quantity(resources["requests"]["memory"]) >= 4 * 2**30
    assert quantity(resources["limits"]["memory"]) >= 6 * 2**30
    check_restricted_security(pod["securityContext"], container["securityContext"], "r-brms-plumber")


def test_plumber_service_matches_deployment_and_callers() -> None:
    deployment = find("Deployment", "r-brms-plumber")
    service = find("Service", "r-brms-plumber")
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == PLUMBER_PORT and port["targetPort"] in ("http", PLUMBER_PORT)
    url = f"http://{service['metadata']['name']}:{port['port']}"
    for where, env in dagster_side_envs().items():
        assert env["BRMS_PLUMBER_URL"] == url, f"{where} calls {env['BRMS_PLUMBER_URL']}, service is {url}"
    for policy in (d for d in applied_docs() if d["kind"] == "NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        allowed_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
        assert PLUMBER_PORT in allowed_ports


def test_cronjob_pod_is_hardened_and_bounded() -> None:
    cronjob = find("CronJob", PLATFORM_CRONJOB_NAME)
    pod = pod_spec_of(cronjob)
    (container,) = pod["containers"]
    check_resources(container["resources"], "CronJob")
    check_restricted_security(pod["securityContext"], container["securityContext"], "CronJob")
    assert pod.get("automountServiceAccountToken") is False


# ---------------------------------------------------------------------------------------------------
# 6. Helm values for the dagster/dagster chart
# ---------------------------------------------------------------------------------------------------
def test_helm_values_use_only_chart_keys() -> None:
    values = helm_values()
    assert set(values) <= CHART_TOP_LEVEL_KEYS, set(values) - CHART_TOP_LEVEL_KEYS
    assert set(values["global"]) <= CHART_GLOBAL_KEYS
    assert set(values["postgresql"]) <= CHART_POSTGRESQL_KEYS
    assert set(values["dagster-user-deployments"]) <= CHART_USER_DEPLOYMENTS_KEYS
    assert set(user_deployment(values)) <= CHART_USER_DEPLOYMENT_KEYS
    assert set(values["runLauncher"]) <= {"type", "config"}
    assert set(values["runLauncher"]["config"]) <= {"k8sRunLauncher"}
    launcher = k8s_run_launcher(values)
    assert set(launcher) <= CHART_K8S_RUN_LAUNCHER_KEYS, set(launcher) - CHART_K8S_RUN_LAUNCHER_KEYS
    assert set(launcher.get("runK8sConfig", {})) <= CHART_RUN_K8S_CONFIG_KEYS
    assert set(values["dagsterDaemon"]) <= CHART_DAEMON_KEYS
    assert set(values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]) <= (
        CHART_QUEUED_RUN_COORDINATOR_KEYS
    )
    assert set(values["dagsterWebserver"]) <= CHART_WEBSERVER_KEYS


def test_helm_values_external_postgres_with_precreated_secret() -> None:
    values = helm_values()
    pg = values["postgresql"]
    assert pg["enabled"] is False
    assert pg["postgresqlHost"] and pg["postgresqlUsername"] and pg["postgresqlDatabase"]
    assert isinstance(pg["service"]["port"], int)
    assert "postgresqlPassword" not in pg, "the password comes from global.postgresqlSecretName"
    assert values["generatePostgresqlPasswordSecret"] is False
    secret_name = values["global"]["postgresqlSecretName"]
    example = {d["metadata"]["name"]: d for d in load_docs(K8S_DIR / "secrets.example.yaml")}
    assert CHART_PG_PASSWORD_KEY in example[secret_name]["stringData"]


def test_helm_values_code_location() -> None:
    values = helm_values()
    assert values["dagster-user-deployments"]["enabled"] is True
    assert values["dagster-user-deployments"]["enableSubchart"] is True
    deployment = user_deployment(values)
    assert DNS_LABEL.match(deployment["name"]), "the name is also a Service name"
    image = deployment["image"]
    assert image["repository"] and isinstance(image["tag"], str) and image["tag"] not in ("", "latest")
    assert image["pullPolicy"] in {"IfNotPresent", "Always"}
    args = deployment.get("codeServerArgs") or deployment.get("dagsterApiGrpcArgs")
    assert args == ["-m", DEFINITIONS_MODULE]
    assert deployment["port"] == CODE_SERVER_PORT
    # same image as the CronJob
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    (dagster_image,) = [i for i in kustomization["images"] if i["name"] == "seed-growth-dagster"]
    assert (image["repository"], image["tag"]) == (dagster_image["newName"], dagster_image["newTag"])
    check_resources(deployment["resources"], "code server")
    check_restricted_security(deployment["podSecurityContext"], deployment["securityContext"], "code server")
    example = {d["metadata"]["name"] for d in load_docs(K8S_DIR / "secrets.example.yaml")}
    assert {s["name"] for s in deployment["envSecrets"]} <= example
    assert values["global"]["dagsterHome"].startswith("/")


def test_helm_values_runs_get_their_own_pod_env_secrets_and_resources() -> None:
    values = helm_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = k8s_run_launcher(values)
    deployment = user_deployment(values)
    include = deployment.get("includeConfigInLaunchedRuns", {"enabled": True})["enabled"]
    run_env = launcher.get("runK8sConfig", {}).get("containerConfig", {}).get("env", [])
    if not include:
        # everything the run needs must then come from the run launcher
        assert env_map(run_env) == env_map(deployment["env"])
        assert launcher["envSecrets"] == deployment["envSecrets"]
    check_resources(launcher["resources"], "run pods")
    assert launcher.get("jobNamespace") in (None, "", NAMESPACE)
    assert values["dagsterDaemon"]["enabled"] is True, "schedules need the daemon"
    assert values.get("scheduler", {}).get("type", "DagsterDaemonScheduler") == "DagsterDaemonScheduler"
    assert values["dagsterDaemon"]["runCoordinator"]["enabled"] is True


def _rendered_run_launcher_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The `run_launcher.config` the chart writes into dagster.yaml for these values
    (mirrors helm/dagster/templates/helpers/instance/_run-launcher.tpl, "dagsterYaml.runLauncher.k8s")."""
    launcher = k8s_run_launcher(values)
    run_k8s = launcher.get("runK8sConfig") or {}
    snake = {
        "containerConfig": "container_config",
        "podSpecConfig": "pod_spec_config",
        "podTemplateSpecMetadata": "pod_template_spec_metadata",
        "jobSpecConfig": "job_spec_config",
        "jobMetadata": "job_metadata",
    }
    config = {
        "load_incluster_config": launcher.get("loadInclusterConfig", True),
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher.get("imagePullPolicy", "Always"),
        "service_account_name": "dagster",
        "dagster_home": values["global"]["dagsterHome"],
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
        "env_config_maps": [c["name"] for c in launcher.get("envConfigMaps", [])] or None,
        "env_secrets": [s["name"] for s in launcher.get("envSecrets", [])] or None,
        "env_vars": launcher.get("envVars") or None,
        "volume_mounts": launcher.get("volumeMounts") or None,
        "volumes": launcher.get("volumes") or None,
        "labels": launcher.get("labels") or None,
        "resources": launcher.get("resources") or None,
        "fail_pod_on_run_failure": True if launcher.get("failPodOnRunFailure") else None,
        "scheduler_name": launcher.get("schedulerName") or None,
        "security_context": launcher.get("securityContext") or None,
        "run_k8s_config": {snake[k]: v for k, v in run_k8s.items() if v} or None,
    }
    return {k: v for k, v in config.items() if v is not None}


def test_helm_run_launcher_config_is_valid_and_renders_a_valid_run_job() -> None:
    """dagster-k8s validates the run launcher config and builds the run's Job exactly as in the cluster."""
    pytest.importorskip("dagster_k8s")
    import kubernetes
    from dagster._config import process_config, resolve_to_config_type
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    from dagster_k8s.launcher import K8sRunLauncher

    values = helm_values()
    config = _rendered_run_launcher_config(values)
    result = process_config(resolve_to_config_type(K8sRunLauncher.config_type()), config)
    assert result.success, [e.message for e in result.errors or []]

    image = user_deployment(values)["image"]
    context = K8sContainerContext(
        image_pull_policy=config["image_pull_policy"],
        service_account_name=config["service_account_name"],
        env_secrets=config.get("env_secrets"),
        env_vars=config.get("env_vars"),
        labels=config.get("labels"),
        namespace=config["job_namespace"],
        resources=config.get("resources"),
        security_context=config.get("security_context"),
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(config.get("run_k8s_config", {})),
    )
    job = construct_dagster_k8s_job(
        DagsterK8sJobConfig(
            job_image=f"{image['repository']}:{image['tag']}",
            dagster_home=config["dagster_home"],
            instance_config_map=config["instance_config_map"],
            postgres_password_secret=config["postgres_password_secret"],
        ),
        ["dagster", "api", "execute_run", "{}"],
        "dagster-run-0123456789abcdef",
        user_defined_k8s_config=context.run_k8s_config,
        pod_name="dagster-run-0123456789abcdef",
        component="run_worker",
    )
    rendered = kubernetes.client.ApiClient().sanitize_for_serialization(job)
    for version in K8S_VERSIONS:
        validate(rendered, version)
    pod = rendered["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = env_map(container["env"])
    assert "DAGSTER_PG_PASSWORD" in env
    assert set(env) - {"DAGSTER_PG_PASSWORD"} <= DAGSTER_SIDE_VARS | PROCESS_VARS
    assert effective_settings(env) == effective_settings(dagster_side_envs()["CronJob"])
    assert {s["secretRef"]["name"] for s in container["envFrom"]} == {
        s["name"] for s in user_deployment(values)["envSecrets"]
    }
    assert container["resources"] == k8s_run_launcher(values)["resources"]
    check_restricted_security(pod["securityContext"], container["securityContext"], "run pod")
    assert 0 < rendered["spec"]["activeDeadlineSeconds"] <= 6 * 3600


def test_helm_values_chart_components_render_as_valid_pod_fragments() -> None:
    """The Kubernetes-typed fragments of the values (security contexts, resources, env) are valid."""
    values = helm_values()
    deployment = user_deployment(values)
    pods = {
        "code server": (
            deployment.get("podSecurityContext", {}),
            {
                "name": "dagster-user-deployments",
                "image": f"{deployment['image']['repository']}:{deployment['image']['tag']}",
                "args": [
                    "dagster",
                    "code-server",
                    "start",
                    "-h",
                    "0.0.0.0",
                    "-p",
                    str(deployment["port"]),
                    *deployment["codeServerArgs"],
                ],
                "env": deployment["env"],
                "envFrom": [{"secretRef": s} for s in deployment["envSecrets"]],
                "resources": deployment["resources"],
                "securityContext": deployment.get("securityContext", {}),
            },
        ),
    }
    for component in ("dagsterWebserver", "dagsterDaemon"):
        section = values[component]
        pods[component] = (
            section.get("podSecurityContext", {}),
            {
                "name": component.lower(),
                "image": "docker.io/dagster/dagster-celery-k8s",
                "resources": section.get("resources", {}),
                "securityContext": section.get("securityContext", {}),
            },
        )
        check_resources(section["resources"], component)
    for pod_security, container in pods.values():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "check"},
            "spec": {"securityContext": pod_security, "containers": [container]},
        }
        for version in K8S_VERSIONS:
            validate(pod, version)


# ---------------------------------------------------------------------------------------------------
# 7. Dockerfiles
# ---------------------------------------------------------------------------------------------------
def test_dockerfile_key_lines() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    by = lambda name: [args for ins, args in instructions if ins == name]  # noqa: E731
    froms = by("FROM")
    args = " ".join(by("ARG"))
    assert "python:3.11-slim-bookworm" in args or any("python:3.11-slim-bookworm" in f for f in froms)
    assert len(froms) >= 1
    runs = " ".join(by("RUN"))
    assert re.search(r"pip install [^&]*(?<=\s)\.[\s\[]", runs), "the project (pip install .) must be installed"
    assert "import seed_growth, growth_engine" in runs, "growth_engine comes with the project"
    assert "dagster-k8s" in runs and "dagster-postgres" in runs
    users = by("USER")
    assert users, "the image must not run as root"
    final_user = users[-1].split(":")[0]
    assert final_user not in {"root", "0"}
    assert re.fullmatch(r"\d+", final_user), "numeric USER, so runAsNonRoot can verify it"
    assert final_user == str(pod_spec_of(find("CronJob", PLATFORM_CRONJOB_NAME))["securityContext"]["runAsUser"])
    exposes = " ".join(by("EXPOSE")).split()
    assert str(CODE_SERVER_PORT) in exposes
    assert not by("ENTRYPOINT"), "the Helm chart sets `args`; an ENTRYPOINT would be prepended to them"
    (cmd,) = by("CMD")[-1:]
    assert cmd.startswith("["), "exec-form CMD (signals reach the server)"
    cmd_list = yaml.safe_load(cmd)
    assert cmd_list[:3] == ["dagster", "code-server", "start"]
    assert cmd_list[cmd_list.index("-m") + 1] == DEFINITIONS_MODULE
    assert cmd_list[cmd_list.index("-p") + 1] == str(CODE_SERVER_PORT)
    assert cmd_list[cmd_list.index("-h") + 1] == "0.0.0.0"
    env = " ".join(by("ENV"))
    assert f"DAGSTER_HOME={helm_values()['global']['dagsterHome']}" in env


def test_dockerignore_keeps_what_the_build_needs_and_drops_the_rest() -> None:
    patterns = dockerignore_patterns()
    needed = [
        "pyproject.toml",
        "README.md",
        "seed_growth/definitions.py",
        "seed_growth/sql/schema.sql",
        "growth_engine/__init__.py",
        "growth_engine/sampler.py",
    ]
    for path in needed:
        assert not dockerignore_excludes(patterns, path), f".dockerignore drops {path}, needed by the build"
    dropped = [
        ".git/config",
        ".venv/bin/python",
        ".env",
        "seed_growth_tests/test_manifests.py",
        "seed_growth/__pycache__/x.pyc",
        "r-brms-plumber/Dockerfile",
        "r-brms-plumber/R/api.R",
        "seed_growth.egg-info/PKG-INFO",
        "growth_engine_tests/test_cli.py",
        "benchmarks/engine.py",
        "deploy/k8s/secrets.example.yaml",
    ]
    for path in dropped:
        assert dockerignore_excludes(patterns, path), f".dockerignore should drop {path}"


def test_dockerignore_matcher_follows_docker_rules() -> None:
    assert dockerignore_excludes(["a/*", "!a/b"], "a/c/d")
    assert not dockerignore_excludes(["a/*", "!a/b"], "a/b/c")
    assert dockerignore_excludes(["**/*.pyc"], "x/y/z.pyc")
    assert not dockerignore_excludes(["build"], "seed_growth/build/x.py")


def test_plumber_dockerfile_key_lines() -> None:
    if not PLUMBER_DOCKERFILE.is_file():
        pytest.skip("r-brms-plumber/Dockerfile is not there yet")
    instructions = dockerfile_instructions(PLUMBER_DOCKERFILE)
    assert any(ins == "FROM" for ins, _ in instructions)
    text = PLUMBER_DOCKERFILE.read_text()
    assert str(PLUMBER_PORT) in text, "the plumber image must serve on the port the manifests use"
    exposes = " ".join(args for ins, args in instructions if ins == "EXPOSE")
    if exposes and "$" not in exposes:
        assert str(PLUMBER_PORT) in exposes.split()
    # built from the repository root (the engine is the root project's growth_engine): every COPY source is
    # a path from the root, and the engine comes without the Dagster side's dependencies
    copies = [args for ins, args in instructions if ins == "COPY"]
    sources = [src for args in copies for src in args.split()[:-1] if not src.startswith("--")]
    assert "r-brms-plumber/R" in sources and "r-brms-plumber/inst" in sources and "growth_engine" in sources
    assert all(src.startswith("r-brms-plumber/") or src in PLUMBER_ROOT_SOURCES for src in sources), sources
    runs = " ".join(args for ins, args in instructions if ins == "RUN")
    assert re.search(r"pip install [^&]*--no-deps [^&]*/src", runs), "the root project, without dagster"
    assert re.search(r"pip install [^&]*-c [^&]*constraints\.txt[^&]*scipy", runs), "the engine's own deps, pinned"
    assert "R CMD INSTALL" in runs, "the service is installed as an R package"
    users = [args for ins, args in instructions if ins == "USER"]
    assert users and re.fullmatch(r"\d+", users[-1]) and users[-1] != "0", "numeric non-root USER"


def plumber_dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in PLUMBER_DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_plumber_dockerignore_keeps_what_the_build_needs_and_drops_the_rest() -> None:
    patterns = plumber_dockerignore_patterns()
    needed = [
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "growth_engine/__init__.py",
        "r-brms-plumber/DESCRIPTION",
        "r-brms-plumber/NAMESPACE",
        "r-brms-plumber/R/app.R",
        "r-brms-plumber/inst/plumber/growth/plumber.R",
        "r-brms-plumber/run.R",
        "r-brms-plumber/start.sh",
        "r-brms-plumber/install.sh",
    ]
    for path in needed:
        assert not dockerignore_excludes(patterns, path), f"Dockerfile.dockerignore drops {path}, needed by the build"
    dropped = [
        ".git/config",
        ".venv/bin/python",
        ".env",
        "seed_growth/definitions.py",
        "deploy/k8s/secrets.example.yaml",
        "seed_growth_tests/test_manifests.py",
        "r-brms-plumber/tests/testthat/test-validate.R",
        "r-brms-plumber/Dockerfile",
        "growth_engine/__pycache__/x.pyc",
        "r-brms-plumber/engine/pyproject.toml",
    ]
    for path in dropped:
        assert dockerignore_excludes(patterns, path), f"Dockerfile.dockerignore should drop {path}"


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (key lines are tested)")
@pytest.mark.parametrize("dockerfile", [DOCKERFILE, PLUMBER_DOCKERFILE], ids=["Dockerfile", "r-brms-plumber"])
def test_hadolint(dockerfile: Path) -> None:
    if not dockerfile.is_file():
        pytest.skip(f"{dockerfile} missing")
    result = subprocess.run(
        ["hadolint", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
