"""Alias vs stage against the real MLflow server: after the champion alias is moved through the admin API,
/api/model/info says that @champion and Production name different versions and that this scorer follows the
alias; once the stage is moved too, it says they agree."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.settings import Settings
from tests.conftest import RegisteredModel
from tests.integration.conftest import AdminClientFactory

pytestmark = pytest.mark.integration

KEY = "alias-stage-" + uuid.uuid4().hex[:8]
AUTH = {"X-API-Key": KEY}


@pytest.fixture
def settings(settings_factory: Callable[..., Settings], stream_topics: dict[str, str],
             two_version_model: RegisteredModel) -> Settings:
    return settings_factory(stream_topics, **{**two_version_model.settings_overrides(), "admin.api_key": KEY})


async def alias_stage(client: TestClient) -> dict[str, Any]:
    response = await client.get("/api/model/info")
    assert response.status == 200, await response.text()
    info = (await response.json())["model_info"]
    assert info["registry_error"] is None, info["registry_error"]
    return dict(info["alias_stage"])


async def test_model_info_says_when_the_champion_alias_and_production_disagree(
        admin_client: AdminClientFactory, settings: Settings) -> None:
    client = await admin_client(settings)
    name = settings.model.name
    before = await alias_stage(client)
    assert (before["consistent"], before["alias_version"], before["stage_version"]) == (True, "1", "1")

    moved = await client.put(f"/api/mlflow/models/{name}/aliases/champion", json={"version": "2"}, headers=AUTH)
    assert moved.status == 200, await moved.text()
    after = await alias_stage(client)
    assert (after["consistent"], after["alias"], after["alias_version"], after["stage"], after["stage_version"]) == (
        False, "champion", "2", "Production", "1")
    assert (after["source_of_truth"], after["serving_version"]) == ("alias", "2")
    assert "@champion points at version 2" in after["message"] and "MLFLOW_MODEL_ALIAS" in after["message"]

    transitioned = await client.post(f"/api/mlflow/models/{name}/transition", headers=AUTH,
                                     json={"version": "2", "stage": "Production", "archive_existing": True})
    assert transitioned.status == 200, await transitioned.text()
    agreed = await alias_stage(client)
    assert (agreed["consistent"], agreed["stage_version"], agreed["message"]) == (True, "2", None)
