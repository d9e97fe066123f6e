"""/api/model/info when the served alias and the matching stage point at different versions: it says so, and
says which one this scorer follows (a fake registry; no MLflow server)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from admin_api.registry import alias_stage_agreement
from config.settings import Settings, load_settings
from consumer.core.handle import ModelHandle
from consumer.state import ScorerState

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


class FakeRegistry:
    """The registry right after ``PUT .../aliases/champion {"version": "5"}``: v5 is Staging, v4 still Production."""

    client = None  # no MLflow client: the audit trail sets no tags

    def __init__(self, info: dict[str, Any]) -> None:
        self.info = info

    def registry_info(self, name: str) -> dict[str, Any]:
        return {"name": name, **self.info}


MOVED = {"latest_versions": {"Production": "4", "Staging": "5"}, "aliases": {"champion": "5", "challenger": "5"}}


def settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings({"scorer.instance_id": "unit", "monitoring.track_drift": False, "model.name": "m",
                          "mlflow.tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", **overrides},
                         env={}, config_path=None)


async def info_of(aiohttp_client: ClientFactory, config: Settings, registry: FakeRegistry,
                  handle: ModelHandle) -> dict[str, Any]:
    state = ScorerState(config, model=handle)
    app = create_app(config, state=state, registry=registry)  # type: ignore[arg-type]
    client = await aiohttp_client(app)
    response = await client.get("/api/model/info")
    assert response.status == 200, await response.text()
    info: dict[str, Any] = (await response.json())["model_info"]
    assert info["registry_error"] is None, info["registry_error"]
    return info


async def test_model_info_says_when_the_alias_and_the_stage_disagree(aiohttp_client: ClientFactory,
                                                                     tmp_path: Path) -> None:
    handle = ModelHandle(model=None, name="m", version="5", alias="champion", stage="Staging")  # type: ignore[arg-type]
    info = await info_of(aiohttp_client, settings(tmp_path), FakeRegistry(MOVED), handle)
    agreement = info["alias_stage"]
    assert agreement["consistent"] is False
    assert (agreement["alias"], agreement["alias_version"], agreement["stage"], agreement["stage_version"]) == (
        "champion", "5", "Production", "4")
    assert agreement["source_of_truth"] == "alias" and agreement["serving_version"] == "5"
    message = agreement["message"]
    assert "@champion" in message and "version 5" in message and "Production" in message and "version 4" in message
    assert "MLFLOW_MODEL_ALIAS" in message


async def test_model_info_when_they_agree(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    handle = ModelHandle(model=None, name="m", version="4", alias="champion", stage="Production")  # type: ignore[arg-type]
    agreed = FakeRegistry({"latest_versions": {"Production": "4"}, "aliases": {"champion": "4"}})
    agreement = (await info_of(aiohttp_client, settings(tmp_path), agreed, handle))["alias_stage"]
    assert agreement["consistent"] is True and agreement["message"] is None


def test_a_scorer_serving_by_stage_follows_the_stage() -> None:
    agreement = alias_stage_agreement(MOVED, version=None, alias=None, stage="Production")
    assert (agreement["consistent"], agreement["source_of_truth"], agreement["serving_version"]) == (
        False, "stage", "4")
    assert "MLFLOW_MODEL_STAGE" in agreement["message"]


def test_a_pinned_version_follows_neither() -> None:
    agreement = alias_stage_agreement(MOVED, version="3", alias="champion", stage=None)
    assert (agreement["source_of_truth"], agreement["serving_version"]) == ("version", "3")
    assert "MLFLOW_MODEL_VERSION" in agreement["message"]


@pytest.mark.parametrize("info", [{"latest_versions": {}, "aliases": {}}, {"latest_versions": {"Production": "4"},
                                                                           "aliases": {}}])
def test_a_missing_alias_or_stage_is_said_too(info: dict[str, Any]) -> None:
    agreement = alias_stage_agreement(info, version=None, alias="champion", stage=None)
    assert agreement["consistent"] is False and agreement["alias_version"] is None
    assert "no alias @champion" in agreement["message"]
