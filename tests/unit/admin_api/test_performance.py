"""GET /api/model/performance without a broker (the evaluation topic's reader faked): the latest snapshot of
the evaluator that published last, the filters, JSON 400/404/503, and the body fits the OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.openapi import openapi_document
from admin_api.views import performance
from config.settings import Settings, load_settings
from consumer.evaluation.join import Joiner
from consumer.evaluation.snapshot import build_snapshot
from consumer.evaluation.stats import LiveStats
from consumer.kafka.evaluation_io import EvaluationKafkaError
from consumer.state import ScorerState
from schemas.clock import now_ms

SETTINGS = load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False},
                         env={}, config_path=None)
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def snapshot(evaluator: str, published_at: int) -> bytes:
    stats = LiveStats(600_000, 10_000)
    joiner = Joiner(stats, 600_000, 100)
    keys = [joiner.keys[joiner.group(k)] for k in (("3", "champion"), ("4", "canary"))]
    stats.add(keys, np.array([0, 0, 1]), np.array([1.0, 3.0, 2.0]), np.array([2.0, 2.0, 2.0]),
              np.array([1_000, 2_000, 3_000]), np.array([0, 0, 0]))
    joiner.watermark = 5_000
    return json.dumps(build_snapshot(joiner, evaluator_id=evaluator, at_ms=published_at,
                                     dead_lettered={"unknown_record_id": 2}, bad_predictions=0)).encode()


@pytest.fixture
def values() -> dict[str, bytes]:
    return {"old": snapshot("old", now_ms() - 60_000), "new": snapshot("new", now_ms()), "junk": b"{nope"}


@pytest.fixture
async def client(aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch,
                 values: dict[str, bytes]) -> TestClient[Any, Any]:
    def latest_values(settings: Settings, topic: str, timeout: float = 5.0, *, purpose: str = "") -> dict[str, bytes]:
        assert topic == SETTINGS.topics.evaluation
        if "fail" in values:
            raise EvaluationKafkaError("broker away")
        return dict(values)

    monkeypatch.setattr(performance, "latest_values", latest_values)
    return await aiohttp_client(create_app(SETTINGS, state=ScorerState(SETTINGS)))


async def test_the_latest_snapshot_per_version_and_role(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/model/performance")
    assert response.status == 200
    body = await response.json()
    assert body["evaluator_id"] == "new" and body["evaluators"] == ["new", "old"]
    by_key = {(v["model_version"], v["role"]): v for v in body["versions"]}
    assert by_key[("3", "champion")]["window"]["count"] == 2
    assert by_key[("3", "champion")]["since_start"]["rmse"] == pytest.approx(1.0)
    assert by_key[("4", "canary")]["window"]["bias"] == 0.0
    assert body["dead_lettered"] == {"unknown_record_id": 2} and body["window_seconds"] == 600.0
    schema = openapi_document()
    component = {**schema["components"]["schemas"]["Performance"], "components": schema["components"]}
    jsonschema.validate(body, component)


async def test_filters(client: TestClient[Any, Any]) -> None:
    body = await (await client.get("/api/model/performance?role=canary")).json()
    assert [(v["model_version"], v["role"]) for v in body["versions"]] == [("4", "canary")]
    body = await (await client.get("/api/model/performance?model_version=3&evaluator=old")).json()
    assert body["evaluator_id"] == "old" and [v["model_version"] for v in body["versions"]] == ["3"]


@pytest.mark.parametrize(("query", "status", "error"), [("?role=boss", 400, "invalid_role"),
                                                       ("?evaluator=nobody", 404, "unknown_evaluator")])
async def test_bad_queries_are_json_errors(client: TestClient[Any, Any], query: str, status: int, error: str) -> None:
    response = await client.get("/api/model/performance" + query)
    assert response.status == status
    assert (await response.json())["error"] == error


async def test_no_evaluator_or_no_kafka_is_503(client: TestClient[Any, Any], values: dict[str, bytes]) -> None:
    values.clear()
    response = await client.get("/api/model/performance")
    assert (response.status, (await response.json())["error"]) == (503, "no_evaluation")
    values["fail"] = b""
    response = await client.get("/api/model/performance")
    assert (response.status, (await response.json())["error"]) == (503, "kafka_unavailable")
