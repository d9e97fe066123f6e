"""deploy/kubernetes cannot run here (no cluster): render it with kustomize, validate every object against the
Kubernetes schemas, and check it agrees with the code: settings, admin API routes, metrics, drain time, sizing."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import mlflow.environment_variables
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.metrics import MetricWrapperBase

from admin_api.app import create_app
from admin_api.health import KAFKA_UNHEALTHY_SECONDS
from admin_api.keys import health_key
from config.settings import CONFIG_PATH_ENV, SETTINGS, Settings, load_settings
from consumer.core.handle import ModelHandle
from consumer.kafka.clients import producer_config
from consumer.metrics import ScorerMetrics
from consumer.state import ScorerState
from consumer.workers import Worker
from tests.unit.deploy.manifests import (
    KUSTOMIZATION,
    ROOT,
    Document,
    containers,
    load_documents,
    of_kind,
    one,
    promql_selectors,
    render,
    schema_errors,
    yaml_leaf_paths,
)

DRAIN_SLACK_SECONDS = 20
"""ScorerService.stop (consumer/service.py) waits for the scoring thread up to SHUTDOWN_TIMEOUT_SECONDS + 20 s."""
CLOSE_MARGIN_SECONDS = 10
"""Then the clients close and the status tombstone is flushed: the grace period leaves this much beyond the wait."""
EXTERNAL_METRICS = {"up": set(), "kube_pod_container_status_ready": {"container", "pod", "namespace"},
                    "kube_pod_container_status_restarts_total": {"container", "pod", "namespace"}}
"""Metrics of Prometheus itself and of kube-state-metrics the alerts use, with the labels they match on."""
TARGET_LABELS = {"job", "namespace", "pod", "instance", "service", "container", "endpoint"}
"""Labels Prometheus adds to every scraped series of a ServiceMonitor's targets."""
MLFLOW_CLIENT_VARIABLES = {name for name in dir(mlflow.environment_variables) if name.startswith("MLFLOW_")}
"""The MLflow client's own variables (README, Security) are honoured as they are, outside the settings table."""


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return render()


@pytest.fixture(scope="module")
def scorer(documents: list[Document]) -> Document:
    return one(documents, "StatefulSet", "housing-scorer")


@pytest.fixture(scope="module")
def container(scorer: Document) -> Document:
    (only,) = scorer["spec"]["template"]["spec"]["containers"]
    return dict(only)


@pytest.fixture(scope="module")
def settings(documents: list[Document], container: Document, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The settings a pod named housing-scorer-0 starts with: the ConfigMap's file plus the container's env."""
    return pod_settings(documents, container, "housing-scorer-0", tmp_path_factory.mktemp("pod"))


def pod_settings(documents: list[Document], container: Document, pod: str, tmp: Path) -> Settings:
    config_map = one(documents, "ConfigMap")
    (key, text), = config_map["data"].items()
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / key
    path.write_text(text)
    env = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif var["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = pod  # the downward API; the optional Secrets are absent here
    env[CONFIG_PATH_ENV] = str(path)
    return load_settings(env=env)


def routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path) of every admin API route."""
    app = create_app(settings, state=ScorerState(settings))
    return {(route.method, route.resource.canonical) for route in app.router.routes() if route.resource}


def exposed_metrics() -> dict[str, set[str]]:
    """Every series name the scorer's /metrics can show, with its label names."""
    exposed: dict[str, set[str]] = {}
    for metric in vars(ScorerMetrics()).values():
        if isinstance(metric, MetricWrapperBase):
            kind = str(metric._type)
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(kind, [""])
            for suffix in suffixes:
                exposed[metric._name + suffix] = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
    return exposed


def unknown_settings(documents: list[Document]) -> set[str]:
    """Environment variable names of the workloads that no setting (nor the MLflow client) reads."""
    known = {spec.env for spec in SETTINGS if spec.env} | {CONFIG_PATH_ENV} | MLFLOW_CLIENT_VARIABLES
    return {var["name"] for c in containers(documents) for var in c.get("env", [])} - known


def unknown_config_keys(config: dict[str, Any]) -> set[str]:
    """Keys of a scorer config file that are no setting's YAML path (the scorer would ignore them silently)."""
    paths = {spec.yaml_path: isinstance(spec.default, dict) for spec in SETTINGS if spec.yaml_path}
    unknown = set()
    for path, value in yaml_leaf_paths(config):
        under_a_mapping_setting = any(path.startswith(p + ".") for p, is_map in paths.items() if is_map)
        if path not in paths and not under_a_mapping_setting and not isinstance(value, dict):
            unknown.add(path)
    return unknown


def unknown_metrics(exprs: list[str]) -> set[str]:
    """``metric`` or ``metric{label}`` used by the PromQL ``exprs`` that the scorer (or the cluster) never exports."""
    known = {**exposed_metrics(), **EXTERNAL_METRICS}
    unknown = set()
    for expr in exprs:
        for name, labels in promql_selectors(expr):
            if name not in known:
                unknown.add(name)
                continue
            unknown |= {f"{name}{{{label}}}" for label in labels if label not in known[name] | TARGET_LABELS}
    return unknown


def alert_rules(documents: list[Document]) -> list[dict[str, Any]]:
    return [rule for doc in of_kind(documents, "PrometheusRule") for group in doc["spec"]["groups"]
            for rule in group["rules"]]


def seconds(quantity: str) -> float:
    return float(quantity[:-1]) * {"s": 1, "m": 60, "h": 3600}[quantity[-1]]


def mebibytes(quantity: str) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return float(number) * (1024 if unit == "Gi" else 1)


# --- the objects are valid Kubernetes -----------------------------------------------------------------------
def test_every_rendered_object_is_valid(documents: list[Document]) -> None:
    kinds = {doc["kind"] for doc in documents}
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler",
            "ServiceMonitor", "PrometheusRule"} <= kinds
    assert [error for doc in documents for error in schema_errors(doc)] == []
    assert {doc["metadata"].get("namespace") for doc in documents if doc["kind"] != "Namespace"} == {"housing"}


def test_the_examples_are_valid_and_name_the_secrets_the_pods_read(container: Document) -> None:
    secrets = load_documents(KUSTOMIZATION / "examples" / "secrets.example.yaml")
    assert [error for doc in secrets for error in schema_errors(doc)] == []
    provided = {(doc["metadata"]["name"], key) for doc in secrets for key in doc["stringData"]}
    read = {(var["valueFrom"]["secretKeyRef"]["name"], var["valueFrom"]["secretKeyRef"]["key"])
            for var in container["env"] if "secretKeyRef" in var.get("valueFrom", {})}
    assert read == provided
    assert all(var["name"] == var["valueFrom"]["secretKeyRef"]["key"]  # each key is named as the setting it feeds
               for var in container["env"] if "secretKeyRef" in var.get("valueFrom", {}))
    assert {"ADMIN_API_KEY", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"} <= {key for _, key in read}


@pytest.mark.parametrize("plant", ["misspelt field", "wrong type", "misspelt CRD field", "CRD wrong type"])
def test_the_schema_check_catches_planted_mistakes(documents: list[Document], plant: str) -> None:
    planted = copy.deepcopy(documents)
    pod = one(planted, "StatefulSet")["spec"]["template"]["spec"]
    if plant == "misspelt field":
        pod["containers"][0]["readinesProbe"] = pod["containers"][0].pop("readinessProbe")
    elif plant == "wrong type":
        pod["terminationGracePeriodSeconds"] = "60s"
    elif plant == "misspelt CRD field":
        one(planted, "ServiceMonitor")["spec"]["endpoints"][0]["intervall"] = "15s"
    else:
        one(planted, "PrometheusRule")["spec"]["groups"][0]["rules"][0]["for"] = "one minute"
    assert [error for doc in planted for error in schema_errors(doc)] != []


# --- they use the settings table ----------------------------------------------------------------------------
def test_every_environment_variable_is_a_setting(documents: list[Document]) -> None:
    assert unknown_settings(documents) == set()
    planted = copy.deepcopy(documents)
    one(planted, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "SCORER_INSTANCEID", "value": "x"})
    assert unknown_settings(planted) == {"SCORER_INSTANCEID"}


def test_every_config_map_key_is_a_setting(documents: list[Document], settings: Settings) -> None:
    (text,) = one(documents, "ConfigMap")["data"].values()
    config = yaml.safe_load(text)
    assert unknown_config_keys(config) == set()
    config["scorer"]["shutdown_timeot"] = 10
    assert unknown_config_keys(config) == {"scorer.shutdown_timeot"}
    # Every value parses (load_settings raises SettingsError otherwise) and comes from the file.
    assert settings.sources["admin.host"] == "file" and settings.admin.host == "0.0.0.0"


def test_the_config_file_is_mounted_where_housing_config_points(scorer: Document, container: Document) -> None:
    env = {var["name"]: var.get("value") for var in container["env"]}
    (config_mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in scorer["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"].startswith("housing-scorer-config-")  # kustomize's content hash
    assert env[CONFIG_PATH_ENV] == f"{config_mount['mountPath']}/scorer.yaml"


def test_the_pod_name_is_the_instance_id_so_a_rescheduled_pod_fences_its_predecessor(
        documents: list[Document], container: Document, tmp_path: Path) -> None:
    (instance,) = [var for var in container["env"] if var["name"] == "SCORER_INSTANCE_ID"]
    assert instance["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    first, again, other = (producer_config(pod_settings(documents, container, pod, tmp_path / str(i)))
                           for i, pod in enumerate(["housing-scorer-0", "housing-scorer-0", "housing-scorer-1"]))
    assert first["transactional.id"] == again["transactional.id"] == "housing-scorer-housing-scorer-0"
    assert other["transactional.id"] != first["transactional.id"]


# --- probes, drain, sizing ----------------------------------------------------------------------------------
def test_probes_use_admin_api_routes_on_the_admin_port(container: Document, settings: Settings) -> None:
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/live"
    (port,) = container["ports"]
    assert port["containerPort"] == settings.admin.port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert ("GET", get["path"]) in routes(settings), probe
        assert get["port"] == port["name"], probe


ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class Crashes(Worker):
    """A background worker whose thread dies at once."""

    def _run(self) -> None:
        raise RuntimeError("boom")


async def test_liveness_keeps_a_degraded_scorer_and_restarts_a_dead_one(
        aiohttp_client: ClientFactory, settings: Settings, container: Document) -> None:
    # The registry away: serving the fallback file, MLflow unreachable (a closed local port, nothing is called).
    config = settings.replace(**{"mlflow.tracking_uri": "http://127.0.0.1:9"})
    state = ScorerState(config, model=ModelHandle(model=None, name="m", version="3", source="fallback"))  # type: ignore[arg-type]
    state.set_mlflow_reachable(False)
    state.kafka_connected = True
    client = await aiohttp_client(create_app(config, state=state))
    liveness, startup = container["livenessProbe"]["httpGet"]["path"], container["startupProbe"]["httpGet"]["path"]
    response = await client.get(liveness)
    assert 200 <= response.status < 400, await response.text()  # the kubelet's success range
    assert (await (await client.get("/health")).json())["status"] == "degraded"
    assert 200 <= (await client.get(startup)).status < 400
    # A long broker outage makes /health unhealthy; the scorer waits it out, so liveness must not restart it.
    monitor = client.app[health_key]
    state.consumer_running, state.kafka_connected = True, False
    monitor.observe(1.0)
    monitor.observe(KAFKA_UNHEALTHY_SECONDS + 2)
    assert monitor.report(now=KAFKA_UNHEALTHY_SECONDS + 2)[0] == 503
    assert 200 <= (await client.get(liveness)).status < 400
    dead = Crashes("model-reloader").start()
    assert dead.join(5)
    state.workers.append(dead)
    assert (await client.get(liveness)).status >= 400


def test_the_grace_period_covers_the_drain(scorer: Document, settings: Settings) -> None:
    grace = scorer["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.scorer.shutdown_timeout + DRAIN_SLACK_SECONDS + CLOSE_MARGIN_SECONDS


def test_resources_cover_the_benchmarked_peak_memory(container: Document) -> None:
    results = json.loads((ROOT / "bench" / "results" / "benchmarks.json").read_text())
    peaks = [float(v) for k, v in yaml_leaf_paths(results) if k.endswith("peak_rss_mb_vmhwm")]
    peak_mib = max(peaks) * 1e6 / 2**20
    resources = container["resources"]
    assert peaks and mebibytes(resources["requests"]["memory"]) >= 1.2 * peak_mib
    assert mebibytes(resources["limits"]["memory"]) >= 2 * peak_mib  # a reload holds two versions, a shadow a third
    assert float(resources["requests"]["cpu"]) >= 1  # the scoring thread's core


# --- disruption budget, autoscaling, services ---------------------------------------------------------------
def pod_labels(scorer: Document) -> dict[str, str]:
    return dict(scorer["spec"]["template"]["metadata"]["labels"])


def test_budget_and_autoscaler_keep_a_scorer_and_fit_the_partitions(
        documents: list[Document], scorer: Document, settings: Settings) -> None:
    budget, hpa = one(documents, "PodDisruptionBudget"), one(documents, "HorizontalPodAutoscaler")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels(scorer).items()
    assert budget["spec"]["maxUnavailable"] == 1
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", scorer["metadata"]["name"])
    assert "replicas" not in scorer["spec"]  # the HPA owns the count; a replicas field would fight it on apply
    assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= settings.topics.partitions


def test_the_autoscaler_and_the_adapter_use_the_lag_metric(documents: list[Document], settings: Settings) -> None:
    (metric,) = one(documents, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metric["type"] == "External"
    name, selector = metric["external"]["metric"]["name"], metric["external"]["metric"]["selector"]
    assert selector["matchLabels"] == {"topic": settings.topics.records}
    assert unknown_metrics([f"{name}{{topic=\"{settings.topics.records}\"}}"]) == set()
    adapter = yaml.safe_load((KUSTOMIZATION / "examples" / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["external"]
    assert rule["name"]["as"] == name
    assert [n for n, _ in promql_selectors(rule["seriesQuery"])] == [name]
    assert unknown_metrics([rule["seriesQuery"]]) == set()


def test_services_reach_the_admin_port(documents: list[Document], scorer: Document, container: Document) -> None:
    port_names = {port["name"] for port in container["ports"]}
    services = of_kind(documents, "Service")
    assert {s["metadata"]["name"] for s in services} >= {"housing-scorer", scorer["spec"]["serviceName"]}
    for service in services:
        assert service["spec"]["selector"].items() <= pod_labels(scorer).items()
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= port_names


# --- monitoring ---------------------------------------------------------------------------------------------
def test_the_service_monitor_scrapes_every_pod_as_the_alerts_job(documents: list[Document], settings: Settings) -> None:
    monitor = one(documents, "ServiceMonitor")
    (service,) = [s for s in of_kind(documents, "Service")
                  if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert service["spec"].get("publishNotReadyAddresses") is True
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert ("GET", endpoint["path"]) in routes(settings)
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    jobs = {labels["job"] for rule in alert_rules(documents) for _, labels in promql_selectors(rule["expr"])
            if "job" in labels}
    assert jobs == {job}


def test_alerts_parse_and_use_exported_metrics(documents: list[Document]) -> None:
    rules = alert_rules(documents)
    assert unknown_metrics([rule["expr"] for rule in rules]) == set()
    assert unknown_metrics(["rate(housing_scorer_records_deadlettered_total[5m]) > 0"]) == {
        "housing_scorer_records_deadlettered_total"}
    assert unknown_metrics(['housing_scorer_reloads_total{outcome="failed"}']) == {
        "housing_scorer_reloads_total{outcome}"}
    assert unknown_metrics(['housing_scorer_reload_total{result="failed"}']) == {"housing_scorer_reload_total"}
    assert all(seconds(rule.get("for", "0s")) >= 0 and rule["alert"] for rule in rules)


def test_every_alert_the_readme_lists_is_a_rule(documents: list[Document]) -> None:
    readme = (ROOT / "README.md").read_text()
    listed = re.search(r"Alerts worth having:(.*?)\n\n", readme, re.S)
    assert listed
    wanted = set(re.findall(r"(housing_\w+)", listed.group(1)))
    used = {name for rule in alert_rules(documents) for name, _ in promql_selectors(rule["expr"])}
    assert len(wanted) >= 5 and wanted <= used
    assert "up" in used  # "/health not 200": a scorer that does not answer at all


def test_alert_thresholds_match_the_scorers_own(documents: list[Document], settings: Settings) -> None:
    thresholds = settings.monitoring.alert_thresholds
    exprs = {rule["alert"]: rule["expr"] for rule in alert_rules(documents)}
    assert exprs["HousingScorerFeatureDrift"].endswith(f"> {thresholds['drift_psi']}")
    assert exprs["HousingScorerDeadLetterRate"].endswith(f"> {thresholds['error_rate_percent'] / 100}")


# --- the image ----------------------------------------------------------------------------------------------
def test_the_image_is_the_one_the_dockerfile_builds(scorer: Document, container: Document) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert container["image"] == compose["services"]["scorer"]["image"]
    scripts = re.search(r"\[project\.scripts\](.*?)\n\[", (ROOT / "pyproject.toml").read_text(), re.S)
    assert scripts and f'{container["command"][0]} =' in scripts.group(1)
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid and scorer["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid.group(1))
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}  # MLflow downloads artifacts there
