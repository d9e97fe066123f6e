"""Webhook replay: a delivery id is remembered for the replay window, and a second delivery of the same id is
refused with 409 (JSON), in bounded memory. A delivery the receiver failed to handle (503) is forgotten, so
MLflow's own retry of it (same id, same signature) goes through."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.keys import publisher_key
from admin_api.webhooks import DEFAULT_TOLERANCE_SECONDS, DeliveryLog, sign_mlflow_webhook
from config.settings import Settings, load_settings
from consumer.errors import ControlPublishError
from consumer.state import ScorerState
from schemas.control import ModelUpdateEvent

SECRET = "unit-webhook-secret"
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def settings() -> Settings:
    return load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False,
                          "admin.webhook_secret": SECRET, "model.name": "m"}, env={}, config_path=None)


def signed(payload: dict[str, Any], delivery_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    delivery_id = delivery_id or str(uuid.uuid4())
    stamp = str(int(time.time()))
    return body, {"Content-Type": "application/json", "X-MLflow-Delivery-Id": delivery_id,
                  "X-MLflow-Timestamp": stamp, "X-MLflow-Signature": sign_mlflow_webhook(SECRET, delivery_id, stamp,
                                                                                         body)}


IGNORED = {"entity": "model_version", "action": "created", "data": {"name": "m", "version": "4"}}
PROMOTED = {"entity": "model_version_alias", "action": "created", "data": {"name": "m", "alias": "champion",
                                                                          "version": "4"}}


class FlakyPublisher:
    """Fails the first publish (broker away), then publishes."""

    def __init__(self) -> None:
        self.calls = 0

    def publish(self, **event: Any) -> ModelUpdateEvent:
        self.calls += 1
        if self.calls == 1:
            raise ControlPublishError("broker not reachable")
        return ModelUpdateEvent.new(**event)

    def close(self) -> None:
        pass


async def test_a_replayed_delivery_is_refused_with_409(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(settings(), state=ScorerState(settings())))
    body, headers = signed(IGNORED)
    first = await client.post("/api/webhooks/mlflow", data=body, headers=headers)
    assert first.status == 200 and (await first.json())["status"] == "ignored"
    again = await client.post("/api/webhooks/mlflow", data=body, headers=headers)
    assert again.status == 409 and again.content_type == "application/json"
    answer = await again.json()
    assert answer["error"] == "webhook_replayed" and answer["delivery_id"] == headers["X-MLflow-Delivery-Id"]
    # A new delivery (MLflow makes a fresh id for every event) is accepted.
    body, headers = signed(IGNORED)
    assert (await client.post("/api/webhooks/mlflow", data=body, headers=headers)).status == 200


async def test_a_delivery_that_failed_can_be_retried_with_the_same_id(aiohttp_client: ClientFactory) -> None:
    app = create_app(settings(), state=ScorerState(settings()))
    publisher = FlakyPublisher()
    app[publisher_key] = publisher  # type: ignore[assignment]
    client = await aiohttp_client(app)
    body, headers = signed(PROMOTED)
    failed = await client.post("/api/webhooks/mlflow", data=body, headers=headers)
    assert failed.status == 503
    retried = await client.post("/api/webhooks/mlflow", data=body, headers=headers)  # MLflow retries 503s as-is
    assert retried.status == 202, await retried.text()
    assert (await client.post("/api/webhooks/mlflow", data=body, headers=headers)).status == 409
    assert publisher.calls == 2


def test_the_delivery_log_remembers_ids_for_the_replay_window() -> None:
    log = DeliveryLog(window=300.0, max_ids=100)
    assert log.claim("d1", sent_at=1000, now=1000.0)
    assert not log.claim("d1", sent_at=1000, now=1200.0)
    # Past the window its timestamp is refused as stale anyway, so the id may be forgotten.
    assert log.claim("d2", sent_at=1400, now=1400.0)
    assert "d1" not in log and "d2" in log
    log.release("d2")
    assert log.claim("d2", sent_at=1400, now=1401.0)
    assert DeliveryLog().window == DEFAULT_TOLERANCE_SECONDS


def test_the_delivery_log_is_bounded() -> None:
    log = DeliveryLog(window=300.0, max_ids=50)
    for i in range(10_000):
        assert log.claim(f"d{i}", sent_at=1000, now=1000.0)
    assert len(log) == 50
    assert not log.claim("d9999", sent_at=1000, now=1000.0)  # the newest ids are still refused again
