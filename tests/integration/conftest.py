"""Fixtures shared by the admin-API integration modules: a throwaway two-version model and app clients."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from admin_api.app import create_app
from config.settings import Settings
from consumer.models.loader import ModelLoader
from consumer.state import ScorerState
from tests.conftest import RegisteredModel, train_quick_model

AdminClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture(scope="module")
def two_version_model(request: pytest.FixtureRequest, mlflow_tracking_uri: str,
                      tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    """A throwaway model per test module, with two versions: v1 (champion, Production), a linear regression, and
    v2 (challenger, Staging), a decision tree, so that which version answered shows in the predictions themselves.

    Named after the module (``test_admin_api`` -> ``admin_api_<hex>``), so modules that change its aliases and
    stages never share it.
    """
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    name = f"{prefix}_{uuid.uuid4().hex[:6]}"
    out = tmp_path_factory.mktemp(f"{prefix}-model")
    train_quick_model(mlflow_tracking_uri, name, out, kinds=("linear_regression",), sample=1000)
    return train_quick_model(mlflow_tracking_uri, name, out, kinds=("decision_tree",), sample=1000, seed=7,
                             promote=False)


def loaded_state(settings: Settings) -> ScorerState:
    """A scorer state with the configured model resolved, loaded and checked (no scoring loop)."""
    state = ScorerState(settings)
    loader = ModelLoader(settings)
    state.on_model_loaded(loader.load(loader.resolve_configured()))
    return state


@pytest.fixture
def admin_client(aiohttp_client: Callable[..., Any]) -> AdminClientFactory:
    """``await admin_client(settings, state=None)``: a test client of the admin app (state: ``loaded_state``)."""

    async def make(settings: Settings, state: ScorerState | None = None) -> TestClient:
        app = create_app(settings, state=state if state is not None else loaded_state(settings))
        return await aiohttp_client(app)

    return make
