"""GET /api/fleet without a broker (the status topic's reader faked): each instance's state, the ``state`` filter,
and a JSON 400 for a state that does not exist (issue 12, item 6)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.views import control
from config.settings import Settings, load_settings
from consumer.state import ScorerState
from schemas.clock import now_ms
from schemas.control import ScorerStatus

SETTINGS = load_settings({"scorer.instance_id": "unit", "mlflow.enabled": False, "monitoring.track_drift": False,
                          "admin.fleet_stale_after": 90}, env={}, config_path=None)

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def fleet_now() -> dict[str, ScorerStatus]:
    now = now_ms()
    return {
        "a-live": ScorerStatus(instance_id="a-live", model_name="m", model_version="2", result="loaded",
                               at=now - 3_600_000, heartbeat_at=now - 1_000),
        "b-killed": ScorerStatus(instance_id="b-killed", model_name="m", model_version="2", result="loaded",
                                 at=now - 3_600_000, heartbeat_at=now - 600_000),
        "c-crashed": ScorerStatus(instance_id="c-crashed", model_name="m", model_version="1", result="stopped",
                                  detail="stopped after a fatal error: x", at=now - 10_000),
    }


@pytest.fixture
async def client(aiohttp_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> TestClient[Any, Any]:
    statuses = fleet_now()

    def read_fleet(settings: Settings, timeout: float = 5.0) -> dict[str, ScorerStatus]:
        assert settings.topics.scorer_status == SETTINGS.topics.scorer_status
        return dict(statuses)

    monkeypatch.setattr(control, "read_fleet", read_fleet)
    return await aiohttp_client(create_app(SETTINGS, state=ScorerState(SETTINGS)))


async def test_every_instance_says_its_state(client: TestClient[Any, Any]) -> None:
    response = await client.get("/api/fleet")
    assert response.status == 200
    body = await response.json()
    states = {s["instance_id"]: s["state"] for s in body["instances"]}
    assert states == {"a-live": "serving", "b-killed": "stale", "c-crashed": "stopped"}
    assert body["count"] == 3 and body["stale_after_seconds"] == 90.0
    assert body["by_state"] == {"serving": 1, "stale": 1, "stopped": 1}
    killed = next(s for s in body["instances"] if s["instance_id"] == "b-killed")
    assert killed["age_seconds"] >= 600 and killed["result"] == "loaded"  # the last result stays visible


@pytest.mark.parametrize(("query", "expected"), [
    ("serving", ["a-live"]),
    ("stale", ["b-killed"]),
    ("stopped", ["c-crashed"]),
    ("serving,stale", ["a-live", "b-killed"]),
])
async def test_the_state_filter(client: TestClient[Any, Any], query: str, expected: list[str]) -> None:
    response = await client.get("/api/fleet", params={"state": query})
    assert response.status == 200
    body = await response.json()
    assert [s["instance_id"] for s in body["instances"]] == expected
    assert body["count"] == len(expected)
    assert body["by_state"] == {"serving": 1, "stale": 1, "stopped": 1}  # the whole fleet, filter or not


@pytest.mark.parametrize("query", ["dead", "serving,zombie", "", "Serving", "serving,"])
async def test_an_unknown_state_is_a_json_400(client: TestClient[Any, Any], query: str) -> None:
    response = await client.get("/api/fleet", params={"state": query})
    assert response.status == 400
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["error"] == "invalid_state" and body["allowed"] == ["serving", "stale", "stopped"]
    assert "state" in body["message"]

