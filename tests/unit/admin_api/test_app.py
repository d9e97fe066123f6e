"""The assembled admin app, with MLflow disabled and no broker: routes, JSON errors, auth and the handlers that
need neither (probes, OpenAPI, model info and drift, predict's checks, the disabled webhook receiver)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from config.settings import load_settings
from consumer.state import ScorerState
from schemas.examples import EXAMPLE_RECORD

SETTINGS = load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False,
                          "admin.api_key": "unit-key"}, env={}, config_path=None)
KEY = {"Authorization": "Bearer unit-key"}

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(create_app(SETTINGS, state=ScorerState(SETTINGS)))


async def answer(response: Any) -> tuple[int, Any]:
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_probes_say_no_model_is_loaded(client: TestClient[Any, Any]) -> None:
    status, body = await answer(await client.get("/health"))
    assert (status, body["status"], body["kafka_connection"]) == (503, "unhealthy", "not_running")
    assert body["mlflow_connection"] == "disabled" and "no model is loaded" in body["reasons"]
    status, body = await answer(await client.get("/ready"))
    assert (status, body["ready"], body["model_loaded"]) == (503, False, False)
    status, body = await answer(await client.get("/live"))
    assert (status, body) == (200, {"alive": True, "reasons": []})
    metrics = await client.get("/metrics")
    assert metrics.status == 200 and "text/plain" in metrics.headers["Content-Type"]


async def test_the_openapi_document_is_served(client: TestClient[Any, Any]) -> None:
    status, body = await answer(await client.get("/api/openapi.json"))
    assert status == 200 and "/api/model/reload" in body["paths"]


async def test_model_info_and_drift_without_mlflow(client: TestClient[Any, Any]) -> None:
    status, body = await answer(await client.get("/api/model/info"))
    info = body["model_info"]
    assert (status, info["model_loaded"], info["mlflow_enabled"]) == (200, False, False)
    assert info["registry_error"] == "MLflow is disabled (MLFLOW_ENABLED=false)"
    assert info["prediction_logging"] == {"enabled": False}
    status, body = await answer(await client.get("/api/model/drift"))
    assert (status, body["enabled"], body["status"]) == (200, False, "disabled")


async def test_mutating_calls_need_the_key_then_mlflow(client: TestClient[Any, Any]) -> None:
    response = await client.post("/api/model/reload", json={})
    status, body = await answer(response)
    assert (status, body["error"]) == (401, "unauthorized") and "WWW-Authenticate" in response.headers
    status, body = await answer(await client.post("/api/model/reload", json={"stage": "Prod"}, headers=KEY))
    assert (status, body["error"], body["field"]) == (400, "invalid_stage", "stage")  # the body is checked first
    status, body = await answer(await client.post("/api/model/reload", json={}, headers=KEY))
    assert (status, body["error"]) == (503, "mlflow_disabled")
    status, body = await answer(await client.get("/api/mlflow/models"))
    assert (status, body["error"]) == (503, "mlflow_disabled")


async def test_predict_checks_the_body_before_the_model(client: TestClient[Any, Any]) -> None:
    status, body = await answer(await client.post("/api/predict", data=b"{"))
    assert (status, body["error"]) == (400, "malformed_json")
    status, body = await answer(await client.post("/api/predict", json={**EXAMPLE_RECORD, "extra": 1}))
    assert (status, body["error"], body["reason"]) == (400, "invalid_record", "unknown_field")
    status, body = await answer(await client.post("/api/predict", json=dict(EXAMPLE_RECORD)))
    assert (status, body["error"]) == (503, "model_not_loaded")


async def test_errors_are_json_everywhere(client: TestClient[Any, Any]) -> None:
    status, body = await answer(await client.get("/api/nothing-here"))
    assert (status, body["error"]) == (404, "not_found")
    status, body = await answer(await client.delete("/health"))
    assert (status, body["error"]) == (405, "method_not_allowed")
    status, body = await answer(await client.post("/api/webhooks/mlflow", json={}))
    assert (status, body["error"]) == (403, "forbidden") and "MLFLOW_WEBHOOK_SECRET" in body["message"]
