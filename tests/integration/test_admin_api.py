"""The admin API against the real MLflow server and broker: each endpoint's happy path and its bad inputs.

Registry changes use a throwaway model trained for this module (two versions), never the session's shared one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from mlflow.tracking import MlflowClient
from prometheus_client.parser import text_string_to_metric_families

from admin_api.webhooks import sign_mlflow_webhook
from config.settings import Settings
from consumer.kafka.status import StatusPublisher
from consumer.state import ScorerState
from schemas.control import decode_model_update
from schemas.examples import EXAMPLE_RECORD
from tests.conftest import RegisteredModel
from tests.helpers import housing_rows, read_to_end, unused_port, wait_for
from tests.integration.conftest import AdminClientFactory, loaded_state
from tests.integration.reload_support import offline_predict, registry_estimator

pytestmark = pytest.mark.integration

KEY = "test-key-" + uuid.uuid4().hex[:8]
AUTH = {"Authorization": f"Bearer {KEY}"}
WEBHOOK_SECRET = "webhook-secret"
RECORD = dict(EXAMPLE_RECORD)


@pytest.fixture
def admin_settings(settings_factory: Callable[..., Settings], stream_topics: dict[str, str],
                   two_version_model: RegisteredModel) -> Settings:
    return settings_factory(stream_topics, **{
        **two_version_model.settings_overrides(),
        "admin.api_key": KEY,
        "admin.webhook_secret": WEBHOOK_SECRET,
        "experiment.name": f"admin_api_test_{uuid.uuid4().hex[:6]}",
        "experiment.batch_size": 5,
    })


@pytest.fixture
async def client(admin_client: AdminClientFactory, admin_settings: Settings) -> TestClient:
    return await admin_client(admin_settings)


def state_of(client: TestClient) -> ScorerState:
    from admin_api.keys import state_key

    app: web.Application = client.app  # type: ignore[assignment]
    return app[state_key]


def registry(settings: Settings) -> MlflowClient:
    return MlflowClient(settings.mlflow.tracking_uri, registry_uri=settings.mlflow.tracking_uri)


def control_events(settings: Settings, expect: int) -> list[dict[str, Any]]:
    """Every event on the control topic (published before the call answered): exactly ``expect`` of them."""
    messages = read_to_end(settings.kafka.bootstrap_servers, settings.topics.model_updates, timeout=30)
    assert len(messages) == expect, [decode_model_update(m.value) for m in messages]
    return [decode_model_update(m.value) for m in messages]


async def error_body(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, (response.status, await response.text())
    assert response.content_type == "application/json"
    body = await response.json()
    assert isinstance(body["error"], str) and body["error"]
    assert isinstance(body["message"], str) and body["message"]
    return dict(body)


# --- probes and metrics ------------------------------------------------------------------------------------
async def test_health_has_the_original_shape_and_the_new_fields(client: TestClient,
                                                                admin_settings: Settings) -> None:
    response = await client.get("/health")
    assert response.status == 200
    body = await response.json()
    for key in ("status", "model_loaded", "model_version", "model_name", "mlflow_connection", "registry_access",
                "uptime_seconds", "kafka_connection", "consumer_lag", "last_reload", "reasons"):
        assert key in body, key
    assert body["status"] == "healthy", body["reasons"]
    assert body["model_loaded"] is True and body["model_version"] == "1"
    assert body["model_name"] == admin_settings.model.name
    assert body["mlflow_connection"] == "healthy" and body["registry_access"] == "healthy"
    assert body["kafka_connection"] == "not_running"
    # No scoring loop: not ready.
    response = await client.get("/ready")
    assert response.status == 503 and (await response.json())["ready"] is False


async def test_metrics_parse_and_carry_the_original_and_scorer_names(client: TestClient) -> None:
    await client.post("/api/predict", json=RECORD, headers=AUTH)
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(await response.text())}
    for name in ("housing_api_model_version", "housing_api_mlflow_connection_status",
                 "housing_api_predictions_logged", "housing_api_mlflow_batch_logs", "housing_api_mlflow_logs_dropped",
                 "housing_scorer_records_consumed", "housing_scorer_records_scored",
                 "housing_scorer_records_dead_lettered", "housing_scorer_batch_size", "housing_scorer_predict_seconds",
                 "housing_scorer_produce_to_prediction_seconds", "housing_scorer_consumer_lag",
                 "housing_scorer_reloads", "housing_scorer_shadow_abs_difference", "housing_scorer_drift_psi"):
        assert name in families, name
    samples = {s.name for f in families.values() for s in f.samples}
    assert {"housing_api_predictions_logged_total", "housing_api_mlflow_batch_logs_total"} <= samples
    version = [s for s in families["housing_api_model_version"].samples if s.value > 0]
    assert len(version) == 1 and version[0].value == 1.0 and set(version[0].labels) == {"name", "stage"}
    assert families["housing_api_mlflow_connection_status"].samples[0].value == 1.0


# --- model -----------------------------------------------------------------------------------------------
async def test_model_info(client: TestClient, admin_settings: Settings) -> None:
    response = await client.get("/api/model/info")
    assert response.status == 200
    info = (await response.json())["model_info"]
    assert info["model_loaded"] is True and info["mlflow_enabled"] is True
    assert info["model_metadata"]["version"] == "1"
    assert info["model_metadata"]["model_uri"] == f"models:/{admin_settings.model.name}/1"
    assert info["registry_info"]["aliases"]["champion"] == "1"
    assert info["registry_info"]["latest_versions"] == {"Production": "1", "Staging": "2"}


async def test_reload_loads_a_pinned_version_and_rejects_bad_targets(client: TestClient) -> None:
    response = await client.post("/api/model/reload", json={"version": "2", "force_mlflow": True}, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["status"] == "loaded" and body["model_metadata"]["version"] == "2"
    assert state_of(client).models.current.version == "2"
    # The same version again is a no-op.
    response = await client.post("/api/model/reload", json={"version": 2}, headers=AUTH)
    assert (await response.json())["status"] == "ignored"
    await error_body(await client.post("/api/model/reload", json={"version": "99"}, headers=AUTH), 404)
    await error_body(await client.post("/api/model/reload", json={"alias": "nobody"}, headers=AUTH), 404)
    bad = await error_body(await client.post("/api/model/reload", json={"stage": "Prod"}, headers=AUTH), 400)
    assert bad["error"] == "invalid_stage"
    await error_body(await client.post("/api/model/reload", json={"version": "abc"}, headers=AUTH), 400)
    await error_body(await client.post("/api/model/reload", json={"force_mlflow": "yes"}, headers=AUTH), 400)
    await error_body(await client.post("/api/model/reload", json={"bogus": 1}, headers=AUTH), 400)
    await error_body(await client.post("/api/model/reload", data=b"{nope", headers=AUTH), 400)


async def test_reload_broadcast_publishes_an_event(client: TestClient, admin_settings: Settings) -> None:
    response = await client.post("/api/model/reload", json={"broadcast": True, "alias": "champion"}, headers=AUTH)
    assert response.status == 202, await response.text()
    event = (await response.json())["event"]
    [seen] = control_events(admin_settings, 1)
    assert seen["event_id"] == event["event_id"] and seen["type"] == "reload"
    assert seen["model_name"] == admin_settings.model.name and seen["alias"] == "champion"
    assert seen["source"] == "admin_api"


# --- registry ----------------------------------------------------------------------------------------------
async def test_registry_list_and_details(client: TestClient, admin_settings: Settings) -> None:
    name = admin_settings.model.name
    response = await client.get("/api/mlflow/models")
    assert response.status == 200
    body = await response.json()
    assert body["count"] == len(body["registered_models"])
    [ours] = [m for m in body["registered_models"] if m["name"] == name]
    assert ours["latest_versions"] == {"Production": "1", "Staging": "2"}
    assert ours["aliases"] == {"champion": "1", "challenger": "2"}
    assert isinstance(ours["creation_timestamp"], int)

    response = await client.get(f"/api/mlflow/models/{name}")
    assert response.status == 200
    details = await response.json()
    assert [v["version"] for v in details["versions"]] == ["2", "1"]
    v2, v1 = details["versions"]
    assert v1["stage"] == "Production" and v1["aliases"] == ["champion"]
    assert v2["stage"] == "Staging" and v2["aliases"] == ["challenger"]
    assert "rmse" in " ".join(v1["metrics"]), v1["metrics"]

    await error_body(await client.get("/api/mlflow/models/no_such_model_" + uuid.uuid4().hex), 404)
    bad = await error_body(await client.get("/api/mlflow/models/bad'name"), 400)
    assert bad["error"] == "invalid_model_name"


async def test_transition_changes_the_registry_and_announces_it(client: TestClient,
                                                               admin_settings: Settings) -> None:
    name = admin_settings.model.name
    response = await client.post(f"/api/mlflow/models/{name}/transition",
                                 json={"version": "2", "stage": "Production", "archive_existing": True}, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["stage"] == "Production" and body["previous_stage"] == "Staging" and body["announced"] is True
    mlflow = registry(admin_settings)
    assert mlflow.get_model_version(name, "2").current_stage == "Production"
    assert mlflow.get_model_version(name, "1").current_stage == "Archived"
    [event] = control_events(admin_settings, 1)
    assert event["event_id"] == body["event"]["event_id"]
    assert (event["type"], event["model_name"], event["version"], event["stage"]) == ("promoted", name, "2",
                                                                                    "Production")
    # Put the registry back for the other tests of this module.
    mlflow.transition_model_version_stage(name, "1", "Production")
    mlflow.transition_model_version_stage(name, "2", "Staging")


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"version": "1", "stage": "Live"}, 400, "invalid_stage"),
    ({"version": "1", "stage": "production"}, 400, "invalid_stage"),
    ({"version": "1", "stage": None}, 400, "invalid_stage"),
    ({"version": "1"}, 400, "missing_field"),
    ({"stage": "Staging"}, 400, "missing_field"),
    ({"version": "one", "stage": "Staging"}, 400, "invalid_version"),
    ({"version": True, "stage": "Staging"}, 400, "invalid_version"),
    ({"version": "1", "stage": "Staging", "archive_existing": "yes"}, 400, "wrong_type"),
    ({"version": "1", "stage": "Archived", "archive_existing": True}, 400, "invalid_stage"),
    ({"version": "1", "stage": "Staging", "extra": 1}, 400, "unknown_field"),
    (["version", "1"], 400, "invalid_body"),
    ({"version": "999", "stage": "Staging"}, 404, "not_found"),
])
async def test_transition_bad_inputs(client: TestClient, admin_settings: Settings, body: Any, status: int,
                                     error: str) -> None:
    response = await client.post(f"/api/mlflow/models/{admin_settings.model.name}/transition", json=body,
                                 headers=AUTH)
    assert (await error_body(response, status))["error"] == error


async def test_transition_of_an_unknown_model_and_malformed_json(client: TestClient,
                                                                 admin_settings: Settings) -> None:
    response = await client.post("/api/mlflow/models/nobody_" + uuid.uuid4().hex + "/transition",
                                 json={"version": "1", "stage": "Staging"}, headers=AUTH)
    await error_body(response, 404)
    path = f"/api/mlflow/models/{admin_settings.model.name}/transition"
    await error_body(await client.post(path, data=b'{"version": ', headers=AUTH), 400)
    await error_body(await client.post(path, data=b"", headers=AUTH), 400)
    await error_body(await client.post(path, data=b"\xff\xfe", headers=AUTH), 400)


async def test_alias_set_and_delete(client: TestClient, admin_settings: Settings) -> None:
    name = admin_settings.model.name
    path = f"/api/mlflow/models/{name}/aliases/blue-green_1"
    response = await client.put(path, json={"version": "2"}, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["version"] == "2" and body["previous_version"] is None and body["announced"] is True
    mlflow = registry(admin_settings)
    assert mlflow.get_model_version_by_alias(name, "blue-green_1").version == "2"
    response = await client.delete(path, headers=AUTH)
    assert response.status == 200 and (await response.json())["previous_version"] == "2"
    assert "blue-green_1" not in mlflow.get_registered_model(name).aliases
    events = control_events(admin_settings, 2)
    assert [(e["type"], e["alias"], e["version"]) for e in events] == [("promoted", "blue-green_1", "2"),
                                                                       ("reload", "blue-green_1", None)]
    await error_body(await client.delete(path, headers=AUTH), 404)
    for alias in ("latest", "v3", "V12", "bad%20alias", "a.b"):
        bad = await error_body(await client.put(f"/api/mlflow/models/{name}/aliases/{alias}", json={"version": "1"},
                                                headers=AUTH), 400)
        assert bad["error"] == "invalid_alias", alias
    await error_body(await client.put(path, json={"version": "42"}, headers=AUTH), 404)
    await error_body(await client.put(path, json={}, headers=AUTH), 400)
    await error_body(await client.put(path, json={"version": "2", "x": 1}, headers=AUTH), 400)


# --- predictions -------------------------------------------------------------------------------------------
async def test_predict_one_record_in_the_original_shape(client: TestClient, admin_settings: Settings) -> None:
    response = await client.post("/api/predict", json=RECORD, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert set(body) >= {"prediction", "model_version", "model_name", "timestamp", "processing_time_ms",
                         "mlflow_logged"}
    assert body["model_version"] == "1" and body["model_name"] == admin_settings.model.name
    # The registry's v1, loaded by MLflow itself, says what the answer is.
    [expected] = offline_predict(registry_estimator(admin_settings.mlflow.tracking_uri, admin_settings.model.name,
                                                    "1"), [RECORD])
    assert isinstance(body["prediction"], float) and body["prediction"] == pytest.approx(expected, rel=1e-9)
    assert body["mlflow_logged"] is True and body["processing_time_ms"] > 0
    assert body["timestamp"].endswith("Z")


async def test_predict_a_list_and_log_the_summary_to_mlflow(client: TestClient, admin_settings: Settings) -> None:
    rows = housing_rows(6)
    response = await client.post("/api/predict", json=rows, headers=AUTH)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert body["count"] == 6 and len(body["predictions"]) == 6
    # Same answer as predicting one by one.
    single = await (await client.post("/api/predict", json=rows[0], headers=AUTH)).json()
    assert single["prediction"] == pytest.approx(body["predictions"][0])
    metrics = state_of(client).metrics
    assert wait_for(lambda: metrics.mlflow_batch_logs._value.get() >= 1, 30)
    assert metrics.predictions_logged._value.get() >= 5
    mlflow = registry(admin_settings)
    experiment = mlflow.get_experiment_by_name(admin_settings.experiment.name)
    assert experiment is not None
    [run] = mlflow.search_runs([experiment.experiment_id])
    assert run.data.metrics["prediction_count"] >= 5
    assert run.data.tags["model_version"] == "1"


@pytest.mark.parametrize(("body", "reason"), [
    ({**RECORD, "longitude": "-122.2"}, "wrong_type"),
    ({**RECORD, "latitude": 60.0}, "out_of_range"),
    ({**RECORD, "ocean_proximity": "near bay"}, "unknown_category"),
    ({**RECORD, "population": 0}, "negative_count"),
    ({k: v for k, v in RECORD.items() if k != "households"}, "missing_field"),
    ({**RECORD, "median_income": None}, "null_value"),
    ({**RECORD, "colour": "red"}, "unknown_field"),
    ({**RECORD, "total_rooms": True}, "wrong_type"),
])
async def test_predict_rejects_what_the_stream_rejects(client: TestClient, body: dict[str, Any], reason: str) -> None:
    error = await error_body(await client.post("/api/predict", json=body, headers=AUTH), 400)
    assert error["error"] == "invalid_record" and error["reason"] == reason


async def test_predict_bad_bodies(client: TestClient) -> None:
    await error_body(await client.post("/api/predict", data=b"[1, 2", headers=AUTH), 400)
    await error_body(await client.post("/api/predict", data=b"NaN", headers=AUTH), 400)
    await error_body(await client.post("/api/predict", json=[], headers=AUTH), 400)
    await error_body(await client.post("/api/predict", json="record", headers=AUTH), 400)
    error = await error_body(await client.post("/api/predict", json=[RECORD, 3], headers=AUTH), 400)
    assert error["index"] == 1
    await error_body(await client.post("/api/predict", json=[RECORD] * 5001, headers=AUTH), 400)
    await error_body(await client.get("/api/predict"), 405)
    await error_body(await client.get("/api/nothing-here"), 404)


async def test_http_predictions_stay_out_of_the_drift_window(client: TestClient) -> None:
    # The drift window describes the stream: rows anyone can send to /api/predict must not move it.
    monitor = state_of(client).drift_monitor
    assert monitor is not None
    for _ in range(3):
        response = await client.post("/api/predict", json=housing_rows(300))
        assert response.status == 200
    assert monitor.compute() is None  # no rows: no verdict
    body = await (await client.get("/api/model/drift")).json()
    assert body["enabled"] is True and (body["window_rows"], body["rows_seen"]) == (0, 0)
    assert body["alerts"] == []


# --- auth ---------------------------------------------------------------------------------------------------
async def test_auth_no_key_wrong_key_right_key(client: TestClient) -> None:
    reload = "/api/model/reload"
    await error_body(await client.post(reload, json={}), 401)
    wrong = await client.post(reload, json={}, headers={"Authorization": "Bearer nope"})
    assert (await error_body(wrong, 401))["message"] == "the admin API key is wrong"
    assert "WWW-Authenticate" in wrong.headers
    await error_body(await client.post(reload, json={}, headers={"X-API-Key": KEY + "x"}), 401)
    assert (await client.post(reload, json={}, headers=AUTH)).status == 200
    assert (await client.post(reload, json={}, headers={"X-API-Key": KEY})).status == 200
    assert (await client.post(reload, json={}, headers={"Authorization": "Basic " + KEY})).status == 401
    # Reads are open by default, and so is a prediction (it changes nothing), as in the original API.
    assert (await client.get("/api/model/info")).status == 200
    assert (await client.post("/api/predict", json=RECORD)).status == 200


async def test_no_key_configured_disables_mutations(admin_client: AdminClientFactory, admin_settings: Settings) -> None:
    settings = admin_settings.replace(**{"admin.api_key": None})
    client = await admin_client(settings)
    for method, path in (("POST", "/api/model/reload"),
                         ("POST", f"/api/mlflow/models/{settings.model.name}/transition"),
                         ("PUT", f"/api/mlflow/models/{settings.model.name}/aliases/x"),
                         ("DELETE", f"/api/mlflow/models/{settings.model.name}/aliases/x")):
        body = await error_body(await client.request(method, path, json={}, headers=AUTH), 403)
        assert "ADMIN_API_KEY" in body["message"], body
    assert (await client.get("/api/mlflow/models")).status == 200


async def test_protected_reads(admin_client: AdminClientFactory, admin_settings: Settings) -> None:
    settings = admin_settings.replace(**{"admin.protect_reads": True})
    client = await admin_client(settings)
    await error_body(await client.get("/api/model/info"), 401)
    await error_body(await client.get("/metrics"), 401)
    assert (await client.get("/api/model/info", headers=AUTH)).status == 200
    assert (await client.get("/health")).status == 200  # probes stay open
    assert (await client.get("/api/openapi.json")).status == 200


# --- MLflow unreachable ------------------------------------------------------------------------------------
async def test_mlflow_unreachable_is_503_and_health_degraded(admin_client: AdminClientFactory,
                                                            admin_settings: Settings) -> None:
    with unused_port() as port:  # held: nothing can listen there meanwhile
        state = loaded_state(admin_settings)
        settings = admin_settings.replace(**{"mlflow.tracking_uri": f"http://127.0.0.1:{port}"})
        client = await admin_client(settings, state)
        body = await error_body(await client.get("/api/mlflow/models"), 503)
        assert body["error"] == "mlflow_unavailable"
        await error_body(await client.post(f"/api/mlflow/models/{settings.model.name}/transition",
                                           json={"version": "1", "stage": "Staging"}, headers=AUTH), 503)
        health = await client.get("/health")
        assert health.status == 200
        body = await health.json()
        assert body["status"] == "degraded" and body["mlflow_connection"] == "unhealthy"
        assert any("MLflow" in reason for reason in body["reasons"])
        # Predictions go on with the loaded model.
        assert (await client.post("/api/predict", json=RECORD, headers=AUTH)).status == 200


# --- fleet and webhooks -------------------------------------------------------------------------------------
async def test_fleet_shows_the_latest_status_per_instance(client: TestClient, admin_settings: Settings) -> None:
    for instance, version in (("scorer-a", "1"), ("scorer-b", "1"), ("scorer-a", "2")):
        publisher = StatusPublisher(admin_settings.replace(**{"scorer.instance_id": instance}))
        assert publisher.publish("loaded", model_version=version) is not None
    response = await client.get("/api/fleet")
    assert response.status == 200
    body = await response.json()
    assert {(s["instance_id"], s["model_version"]) for s in body["instances"]} == {("scorer-a", "2"),
                                                                                    ("scorer-b", "1")}


def signed(body: bytes, secret: str = WEBHOOK_SECRET, at: float | None = None) -> dict[str, str]:
    delivery, timestamp = str(uuid.uuid4()), str(int(at if at is not None else time.time()))
    return {"X-MLflow-Delivery-Id": delivery, "X-MLflow-Timestamp": timestamp, "Content-Type": "application/json",
            "X-MLflow-Signature": sign_mlflow_webhook(secret, delivery, timestamp, body)}


async def test_webhook_alias_created_is_announced(client: TestClient, admin_settings: Settings) -> None:
    name = admin_settings.model.name
    payload = json.dumps({"entity": "model_version_alias", "action": "created", "timestamp": "2025-01-01T00:00:00Z",
                          "data": {"name": name, "alias": "champion", "version": "2"}}).encode()
    response = await client.post("/api/webhooks/mlflow", data=payload, headers=signed(payload))
    assert response.status == 202, await response.text()
    [event] = control_events(admin_settings, 1)
    assert (event["type"], event["version"], event["alias"], event["source"]) == ("promoted", "2", "champion",
                                                                                  "webhook")
    other = json.dumps({"entity": "model_version", "action": "created",
                        "data": {"name": name, "version": "3"}}).encode()
    response = await client.post("/api/webhooks/mlflow", data=other, headers=signed(other))
    assert response.status == 200 and (await response.json())["status"] == "ignored"


async def test_webhook_refuses_bad_signatures(client: TestClient) -> None:
    payload = b'{"entity": "model_version_alias", "action": "created", "data": {}}'
    await error_body(await client.post("/api/webhooks/mlflow", data=payload, headers=signed(payload, "wrong")), 401)
    await error_body(await client.post("/api/webhooks/mlflow", data=payload,
                                       headers=signed(payload, at=time.time() - 3600)), 401)
    await error_body(await client.post("/api/webhooks/mlflow", data=payload), 401)
    # The API key is not what authenticates a webhook.
    await error_body(await client.post("/api/webhooks/mlflow", data=payload, headers=AUTH), 401)


async def test_webhook_without_a_secret_is_disabled(admin_client: AdminClientFactory, admin_settings: Settings) -> None:
    settings = admin_settings.replace(**{"admin.webhook_secret": None})
    client = await admin_client(settings)
    body = await error_body(await client.post("/api/webhooks/mlflow", data=b"{}"), 403)
    assert "MLFLOW_WEBHOOK_SECRET" in body["message"]


async def test_openapi_document_lists_every_route(client: TestClient) -> None:
    document = await (await client.get("/api/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    app: web.Application = client.app  # type: ignore[assignment]
    routes = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    documented = {(method, path) for path, item in document["paths"].items() for method in item}
    assert routes == documented


async def test_health_answers_while_a_reload_is_running(client: TestClient) -> None:
    """Handlers never block the loop: /health answers fast while a reload downloads a model."""
    import asyncio

    reload = asyncio.ensure_future(client.post("/api/model/reload", json={"version": "2"}, headers=AUTH))
    await asyncio.sleep(0)
    started = time.perf_counter()
    assert (await client.get("/health")).status == 200
    assert time.perf_counter() - started < 0.5
    assert (await reload).status == 200
