"""POST /api/model/rollback with a fake registry and publisher: the alias is moved, then a ``rollback`` event
names the version; a pinned scorer, a scorer with nothing to go back to and a wrong body are refused (JSON)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.keys import publisher_key
from config.settings import Settings, load_settings
from consumer.core.handle import ModelHandle
from consumer.state import ScorerState
from schemas.control import ModelUpdateEvent

KEY = {"Authorization": "Bearer unit-key"}

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


class Registry:
    """Aliases in a dict; ``rollback`` moves one as RegistryOps.rollback does."""

    client = None

    def __init__(self) -> None:
        self.aliases = {"champion": "2"}
        self.calls: list[tuple[str, str, str | None, str | None]] = []

    def rollback(self, name: str, version: str, *, alias: str | None, stage: str | None) -> dict[str, Any]:
        self.calls.append((name, version, alias, stage))
        assert alias is not None
        previous, self.aliases[alias] = self.aliases.get(alias), version
        return {"name": name, "alias": alias, "version": version, "previous_version": previous, "stage": None}


class NoLoop:
    """A service without a scoring loop or reloader: the app starts no monitoring hooks of its own."""

    reloader = None


class Publisher:
    def __init__(self) -> None:
        self.events: list[ModelUpdateEvent] = []

    def publish(self, **fields: Any) -> ModelUpdateEvent:
        self.events.append(ModelUpdateEvent.new(**fields))
        return self.events[-1]

    def close(self) -> None:
        pass


def handle(version: str) -> ModelHandle:
    return ModelHandle(model=None, name="m", version=version, alias="champion",  # type: ignore[arg-type]
                       source="registry")


def settings_for(tmp_path: Path, **extra: Any) -> Settings:
    return load_settings({"scorer.instance_id": "unit", "monitoring.track_drift": False, "admin.api_key": "unit-key",
                          "model.name": "m", "mlflow.tracking_uri": f"sqlite:///{tmp_path}/mlflow.db", **extra},
                         env={}, config_path=None)


async def app_client(aiohttp_client: ClientFactory, settings: Settings, state: ScorerState, registry: Registry,
                     publisher: Publisher) -> TestClient[Any, Any]:
    app = create_app(settings, state=state, service=NoLoop(), registry=registry)  # type: ignore[arg-type]
    app[publisher_key] = publisher  # type: ignore[assignment]
    return await aiohttp_client(app)


async def test_a_rollback_moves_the_alias_then_announces_the_version(
        aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    state = ScorerState(settings, model=handle("1"))
    state.on_model_loaded(handle("2"))  # v1 served before v2: the default target
    registry, publisher = Registry(), Publisher()
    client = await app_client(aiohttp_client, settings, state, registry, publisher)
    response = await client.post("/api/model/rollback", json={}, headers=KEY)
    assert response.status == 200, await response.text()
    body = await response.json()
    assert (body["status"], body["version"], body["previous_version"], body["announced"]) == (
        "rolled_back", "1", "2", True)
    assert registry.calls == [("m", "1", "champion", None)] and registry.aliases["champion"] == "1"
    [event] = publisher.events
    assert (event.type, event.version, event.alias, event.model_name, event.source) == (
        "rollback", "1", "champion", "m", "admin_api")
    assert body["event"]["event_id"] == event.event_id


async def test_refusals_are_json(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    registry, publisher = Registry(), Publisher()
    client = await app_client(aiohttp_client, settings, ScorerState(settings, model=handle("2")), registry, publisher)
    response = await client.post("/api/model/rollback", json={}, headers=KEY)
    assert response.status == 409 and (await response.json())["error"] == "nothing_to_roll_back_to"
    response = await client.post("/api/model/rollback", json={"version": "1", "alias": "x"}, headers=KEY)
    assert response.status == 400 and (await response.json())["error"] == "unknown_field"
    response = await client.post("/api/model/rollback", json={"version": "one"}, headers=KEY)
    assert response.status == 400 and (await response.json())["error"] == "invalid_version"
    assert (await client.post("/api/model/rollback", json={"version": "1"})).status == 401
    assert registry.calls == [] and publisher.events == []

    pinned = settings_for(tmp_path, **{"model.version": "2"})
    client = await app_client(aiohttp_client, pinned, ScorerState(pinned, model=handle("2")), registry, publisher)
    response = await client.post("/api/model/rollback", json={"version": "1"}, headers=KEY)
    body = await response.json()
    assert response.status == 409 and body["error"] == "pinned_version" and "MLFLOW_MODEL_VERSION" in body["message"]
    assert registry.calls == [] and publisher.events == []
