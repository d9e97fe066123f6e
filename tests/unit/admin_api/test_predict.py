"""``POST /api/predict`` and the monitors: HTTP rows stay out of the stream's drift window, and anonymous callers
are rate-limited per client (429 with a JSON body and Retry-After); a caller with the admin key is not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.ratelimit import RateLimiter
from config.settings import Settings, SettingsError, load_settings
from consumer.core.features import FeatureColumns, row_count
from consumer.core.handle import ModelHandle
from consumer.state import ScorerState
from schemas.examples import EXAMPLE_RECORD

KEY = {"Authorization": "Bearer unit-key"}
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def settings(**overrides: Any) -> Settings:
    return load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False,
                          "admin.api_key": "unit-key", **overrides}, env={}, config_path=None)


class Constant:
    def predict(self, frame: Any) -> np.ndarray:
        return np.full(len(frame), 2.5)


class DriftSpy:
    """Stands for the stream's drift window: remembers every batch of rows it is given."""

    def __init__(self) -> None:
        self.observed: list[int] = []

    def observe(self, features: FeatureColumns | None) -> None:
        self.observed.append(0 if features is None else row_count(features))

    def snapshot(self) -> dict[str, Any]:
        return {}


class LoggerSpy:
    def __init__(self) -> None:
        self.added: list[int] = []

    def add(self, predictions: np.ndarray, handle: ModelHandle, processing_ms: float | None = None) -> bool:
        self.added.append(len(predictions))
        return True

    def describe(self) -> dict[str, Any]:
        return {"enabled": True}


def serving_state(config: Settings) -> tuple[ScorerState, DriftSpy, LoggerSpy]:
    state = ScorerState(config, model=ModelHandle(model=Constant(), name="m", version="1", alias="champion"))
    drift, log = DriftSpy(), LoggerSpy()
    state.drift_monitor, state.prediction_logger = drift, log
    return state, drift, log


async def test_http_predictions_never_reach_the_stream_drift_window(aiohttp_client: ClientFactory) -> None:
    config = settings()
    state, drift, log = serving_state(config)
    client = await aiohttp_client(create_app(config, state=state))
    one = await client.post("/api/predict", json=dict(EXAMPLE_RECORD))
    assert one.status == 200 and (await one.json())["prediction"] == 2.5
    many = await client.post("/api/predict", json=[dict(EXAMPLE_RECORD)] * 50, headers=KEY)
    assert many.status == 200 and (await many.json())["count"] == 50
    # Crafted rows sent over HTTP cannot move the stream's drift verdict (nor /health through it) ...
    assert drift.observed == []
    # ... while prediction logging (the original API's mlflow_logged) still counts them.
    assert log.added == [1, 50]


async def test_anonymous_predict_calls_are_limited_per_client_with_429(aiohttp_client: ClientFactory) -> None:
    config = settings(**{"admin.predict_rate_limit": 3})
    state, _, _ = serving_state(config)
    client = await aiohttp_client(create_app(config, state=state))
    for _ in range(3):
        assert (await client.post("/api/predict", json=dict(EXAMPLE_RECORD))).status == 200
    refused = await client.post("/api/predict", json=dict(EXAMPLE_RECORD))
    assert refused.status == 429 and refused.content_type == "application/json"
    body = await refused.json()
    assert body["error"] == "rate_limited" and "ADMIN_PREDICT_RATE_LIMIT" in body["message"]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 60 and body["retry_after_seconds"] == retry_after
    # A wrong key is still anonymous; the admin key is not limited.
    wrong = await client.post("/api/predict", json=dict(EXAMPLE_RECORD), headers={"X-API-Key": "nope"})
    assert wrong.status == 429
    for _ in range(5):
        assert (await client.post("/api/predict", json=dict(EXAMPLE_RECORD), headers=KEY)).status == 200
    # Other endpoints are not affected.
    assert (await client.get("/api/model/info")).status == 200


async def test_a_limit_of_zero_turns_the_rate_limit_off(aiohttp_client: ClientFactory) -> None:
    config = settings(**{"admin.predict_rate_limit": 0})
    state, _, _ = serving_state(config)
    client = await aiohttp_client(create_app(config, state=state))
    for _ in range(20):
        assert (await client.post("/api/predict", json=dict(EXAMPLE_RECORD))).status == 200


def test_the_rate_limit_setting_is_checked() -> None:
    assert settings().admin.predict_rate_limit == 60
    with pytest.raises(SettingsError, match="ADMIN_PREDICT_RATE_LIMIT"):
        load_settings(env={"ADMIN_PREDICT_RATE_LIMIT": "-1"})


def test_each_client_has_its_own_budget_that_refills_over_the_minute() -> None:
    limiter = RateLimiter(per_minute=2)
    assert limiter.acquire("10.0.0.1", now=0.0) is None
    assert limiter.acquire("10.0.0.1", now=0.0) is None
    wait = limiter.acquire("10.0.0.1", now=0.0)
    assert wait is not None and wait == pytest.approx(30.0)  # one call back every 30 s at 2 per minute
    assert limiter.acquire("10.0.0.2", now=0.0) is None  # another client is not affected
    assert limiter.acquire("10.0.0.1", now=15.0) == pytest.approx(15.0)
    assert limiter.acquire("10.0.0.1", now=30.0) is None
    assert limiter.acquire("10.0.0.1", now=30.0) is not None


def test_the_limiter_remembers_a_bounded_number_of_clients() -> None:
    limiter = RateLimiter(per_minute=1, max_clients=100)
    for i in range(10_000):
        limiter.acquire(f"10.0.{i // 256}.{i % 256}", now=float(i) / 1000)
    assert len(limiter) <= 100
    # The most recent clients are still held to their budget.
    assert limiter.acquire("10.0.39.15", now=10.0) is not None


def test_a_limit_of_zero_lets_every_call_through() -> None:
    limiter = RateLimiter(per_minute=0)
    assert all(limiter.acquire("c", now=0.0) is None for _ in range(1000))
    assert len(limiter) == 0
